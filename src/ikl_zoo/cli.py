"""The ``ikl-zoo`` command line: thin click commands over the library.

Each command parses its options, calls one library function and prints; the logic lives in the
library. Library imports happen inside the commands so ``ikl-zoo --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from ikl_zoo import __version__
from ikl_zoo.errors import IklZooError

DATASET_OPTION = click.option(
    "--dataset", type=click.Choice(["cifar10", "cifar100"]), default="cifar10", show_default=True
)


class IklZooGroup(click.Group):
    """Turns library errors into one line on stderr and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except IklZooError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted: finished work is saved; rerun with --resume to continue.", err=True)
            sys.exit(130)


@click.group(cls=IklZooGroup)
@click.version_option(__version__, prog_name="ikl-zoo")
def main() -> None:
    """IKL-AT robust models: list, load, evaluate, publish and train."""


# --- zoo commands: list, download, convert, push -------------------------------------------------


@main.command("list")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100"]), default=None, help="Only this one.")
def list_command(dataset: str | None) -> None:
    """Registered models with their published clean and AutoAttack accuracy (%)."""
    from ikl_zoo.zoo.catalog import format_models_table, models_table

    click.echo(format_models_table(models_table(dataset=dataset)))


@main.command()
@click.argument("model")
@DATASET_OPTION
@click.option("--revision", default=None, help="Hub branch, tag or commit (default: the pinned one).")
def download(model: str, dataset: str, revision: str | None) -> None:
    """Fetch MODEL's weights into the cache (Hub, else Google Drive) and print their path and sha256."""
    from ikl_zoo.zoo.checkpoints import file_sha256
    from ikl_zoo.zoo.hub import download_checkpoint

    path = download_checkpoint(model, dataset=dataset, revision=revision)
    click.echo(f"path: {path}")
    click.echo(f"sha256: {file_sha256(path)}")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=str))
@click.option("--model", "model_id", required=True, help="Registered id the checkpoint belongs to.")
@DATASET_OPTION
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder.")
def convert(checkpoint: str, model_id: str, dataset: str, out_dir: str) -> None:
    """Turn CHECKPOINT (.pt/.pth/.safetensors, any wrapping) into a Hub-ready folder with a model card."""
    from ikl_zoo.zoo.checkpoints import CONFIG_NAME, read_zoo_config
    from ikl_zoo.zoo.publish import convert_checkpoint

    folder = convert_checkpoint(checkpoint, out_dir, model_id=model_id, dataset=dataset)
    click.echo(f"wrote {folder} (model.safetensors, {CONFIG_NAME}, README.md)")
    click.echo(f"sha256: {read_zoo_config(folder)['sha256']}")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--repo-id", required=True, help="ORG/NAME on the Hugging Face Hub (created if missing).")
@click.option("--revision", default=None, help="Branch to push to (created if missing; default main).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--token", default=None, help="Hub write token (default: HF_TOKEN or `hf auth login`).")
def push(folder: str, repo_id: str, revision: str | None, private: bool, token: str | None) -> None:
    """Check FOLDER (config.json, model.safetensors, sha256) and upload it to the Hub."""
    from ikl_zoo.zoo.publish import push_zoo_folder

    url = push_zoo_folder(folder, repo_id=repo_id, revision=revision, private=private, token=token)
    click.echo(f"pushed {folder} to {repo_id}: {url}")


# --- data and evaluation commands: sample-data, eval ---------------------------------------------


# --- leaderboard, card and submit commands -------------------------------------------------------


# --- training commands: train --------------------------------------------------------------------


if __name__ == "__main__":
    main()
