"""Zoo commands: list, download, convert, push, mirror, sample-data."""

from __future__ import annotations

from pathlib import Path

import click

from ikl_zoo.cli.base import DATASET_OPTION, IklZooCommand
from ikl_zoo.threat import DATASETS


@click.command(cls=IklZooCommand, name="list")
@click.option("--dataset", type=click.Choice(DATASETS), default=None, help="Only this one.")
def list_command(dataset: str | None) -> None:
    """Registered models with their published clean and AutoAttack accuracy (%)."""
    from ikl_zoo.zoo.catalog import format_models_table, models_table

    click.echo(format_models_table(models_table(dataset=dataset)))


@click.command(cls=IklZooCommand)
@click.argument("model")
@DATASET_OPTION
@click.option("--revision", default=None, help="Hub branch, tag or commit (default: the pinned one).")
def download(model: str, dataset: str, revision: str | None) -> None:
    """Fetch MODEL's weights into the cache (Hub, else Google Drive) and print their path and sha256.

    MODEL is a registered id or hf-hub:ORG/NAME[@REVISION], a zoo folder on the Hub."""
    from ikl_zoo.zoo.hub import fetch_hub_model, fetch_weights, parse_hub_name
    from ikl_zoo.zoo.registry import get_model_entry

    hub_name = parse_hub_name(model, revision=revision)
    if hub_name is not None:
        weights = fetch_hub_model(*hub_name)
        click.echo(f"commit: {weights.commit}")
    else:
        weights = fetch_weights(get_model_entry(model, dataset=dataset), revision=revision)
    click.echo(f"path: {weights.path}\nsha256: {weights.sha256}")


@click.command(cls=IklZooCommand)
@click.argument("checkpoint", type=click.Path(exists=True, path_type=str))
@click.option("--model", "model_id", required=True, help="Registered id the checkpoint belongs to.")
@DATASET_OPTION
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Zoo folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace the zoo files of a folder that is not empty.")
def convert(checkpoint: str, model_id: str, dataset: str, out_dir: str, overwrite: bool) -> None:
    """Turn CHECKPOINT (.pt/.pth/.safetensors, any wrapping) into a Hub-ready folder with a model card."""
    from ikl_zoo.publish import convert_checkpoint
    from ikl_zoo.zoo.checkpoints import CONFIG_NAME, read_spec

    folder = convert_checkpoint(checkpoint, out_dir, model_id=model_id, dataset=dataset, overwrite=overwrite)
    click.echo(f"wrote {folder} (model.safetensors, {CONFIG_NAME}, README.md)")
    click.echo(f"sha256: {read_spec(folder).sha256}")


@click.command(cls=IklZooCommand)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--repo-id", required=True, help="ORG/NAME on the Hugging Face Hub (created if missing).")
@click.option("--revision", default=None, help="Branch to push to (created if missing; default main).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--token", default=None, help="Hub write token (default: HF_TOKEN or `hf auth login`).")
def push(folder: str, repo_id: str, revision: str | None, private: bool, token: str | None) -> None:
    """Check FOLDER (config.json, model.safetensors, sha256) and upload it to the Hub."""
    from ikl_zoo.publish import push_zoo_folder

    url = push_zoo_folder(folder, repo_id=repo_id, revision=revision, private=private, token=token)
    click.echo(f"pushed {folder} to {repo_id}: {url}")


@click.command(cls=IklZooCommand, name="sample-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Data dir to write.")
@click.option("--dataset", "datasets", type=click.Choice(DATASETS), multiple=True,
              help="Only these datasets (repeatable; default both).")
def sample_data(out_dir: str, datasets: tuple[str, ...]) -> None:
    """Write the 20 real CIFAR-10 and CIFAR-100 test images foolbox ships as a data dir (test split only)."""
    from ikl_zoo.data import write_sample_data_dir

    root = write_sample_data_dir(out_dir, datasets=datasets or DATASETS)
    click.echo(f"wrote {root} (CIFAR test images 0-19 of {', '.join(datasets or DATASETS)})")


@click.command(cls=IklZooCommand)
@click.argument("model", required=False)
@click.option("--dataset", type=click.Choice(DATASETS), default=None, help="Only this dataset's entry.")
@click.option("--all", "every", is_flag=True, help="Every registered model with a Google Drive checkpoint.")
@click.option("--org", required=True, help="Hub organisation: pushes to ORG/<id>-<dataset>.")
@click.option("--tag", default=None, help="Tag the pushed commit (the revision to pin).")
@click.option("--from", "checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The authors' checkpoint file instead of the Google Drive download.")
@click.option("--dry-run", is_flag=True, help="Download, check and convert, but push nothing.")
@click.option("--token", default=None, help="Hub write token (default: HF_TOKEN or `hf auth login`).")
def mirror(model: str | None, dataset: str | None, every: bool, org: str, tag: str | None,
           checkpoint: Path | None, dry_run: bool, token: str | None) -> None:
    """Move MODEL's authors' checkpoint (or --all) from Google Drive to ORG on the Hub, checked against
    RobustBench, and print the registry pins (repo, revision, sha256)."""
    from ikl_zoo.publish import MirrorTarget, mirror_model
    from ikl_zoo.zoo.registry import get_model_entry, list_models

    if every == bool(model) or (every and checkpoint):
        raise click.UsageError("name one MODEL (optionally with --from FILE), or pass --all")
    specs = ([spec for spec in list_models(dataset=dataset) if spec.gdrive_id] if every
             else [get_model_entry(model, dataset=dataset or "cifar10")])
    target = MirrorTarget(org=org, tag=tag, token=token, dry_run=dry_run)
    for spec in specs:
        click.echo("\n".join(mirror_model(spec, target, checkpoint=checkpoint).lines()))
