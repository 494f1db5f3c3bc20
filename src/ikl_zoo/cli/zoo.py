"""Zoo commands: list, download, convert, push, mirror, sample-data."""

from pathlib import Path
from typing import Any

import click

from ikl_zoo.cli import base
from ikl_zoo.threat import DATASETS


@click.command(name="list")
@click.option("--dataset", type=click.Choice(DATASETS), help="Only the models of this dataset.")
def list_command(dataset: str | None) -> None:
    """List the registered models. Each with its threat model and published clean and AutoAttack accuracy."""
    from ikl_zoo.zoo.catalog import format_models_table, models_table
    click.echo(format_models_table(models_table(dataset=dataset)))


@click.command()
@click.argument("model")
@base.DATASET_OPTION
@click.option("--revision", help="Hub branch, tag or commit (default: the pinned one).")
def download(model: str, dataset: str, revision: str | None) -> None:
    """Fetch a model's weights into the cache. MODEL: a registered id or hf-hub:ORG/NAME[@REVISION]."""
    from ikl_zoo.zoo import hub, registry
    if (hub_name := hub.parse_hub_name(model, revision=revision)) is not None:
        weights = hub.fetch_hub_model(*hub_name)
        click.echo(f"commit: {weights.commit}")
    else:
        weights = hub.fetch_weights(registry.get_model_entry(model, dataset=dataset), revision=revision)
    click.echo(f"path: {weights.path}\nsha256: {weights.sha256}")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--model", "model_id", required=True, help="Registered id whose architecture the weights fit.")
@base.DATASET_OPTION
@click.option("-o", "--out", "out_dir", required=True, type=base.FOLDER,
              help="Zoo folder to write: model.safetensors, config.json, README.md.")
@click.option("--overwrite", is_flag=True, help="Replace the zoo files of a folder that is not empty.")
def convert(checkpoint: str, model_id: str, dataset: str, out_dir: str, overwrite: bool) -> None:
    """Turn a checkpoint into a Hub-ready folder. CHECKPOINT: .pt, .pth or .safetensors, any wrapping."""
    from ikl_zoo.publish import PUSHED_FILES, convert_checkpoint
    from ikl_zoo.zoo.checkpoints import read_spec
    folder = convert_checkpoint(checkpoint, out_dir, model_id=model_id, dataset=dataset, overwrite=overwrite)
    click.echo(f"wrote {folder} ({', '.join(PUSHED_FILES)})")
    click.echo(f"sha256: {read_spec(folder).sha256}")


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, help="ORG/NAME on the Hugging Face Hub (created if missing).")
@click.option("--revision", help="Branch to push to (created if missing; default main).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@base.TOKEN_OPTION
def push(folder: str, repo_id: str, revision: str | None, private: bool, token: str | None) -> None:
    """Check a zoo folder and upload it to the Hub. FOLDER: config.json, model.safetensors, README.md."""
    from ikl_zoo.publish import push_zoo_folder
    url = push_zoo_folder(folder, repo_id=repo_id, revision=revision, private=private, token=token)
    click.echo(f"pushed {folder} to {repo_id}: {url}")


@click.command(name="sample-data")
@click.option("-o", "--out", "out_dir", required=True, type=base.FOLDER,
              help="Data dir to write; pass it to `ikl-zoo eval --data-dir`.")
@click.option("--dataset", "datasets", type=click.Choice(DATASETS), multiple=True,
              help="Only these datasets (repeatable; default both).")
def sample_data(out_dir: str, datasets: tuple[str, ...]) -> None:
    """Write a data dir of 20 real CIFAR images. Foolbox's copy of test images 0-19: offline, quick."""
    from ikl_zoo.data import write_sample_data_dir
    root = write_sample_data_dir(out_dir, datasets=datasets or DATASETS)
    click.echo(f"wrote {root} (CIFAR test images 0-19 of {', '.join(datasets or DATASETS)})")


@click.command()
@click.argument("model", required=False)
@click.option("--dataset", type=click.Choice(DATASETS),
              help="MODEL's dataset [cifar10]; with --all, only this dataset's models [both].")
@click.option("--all", "every", is_flag=True, help="Every registered model with a Google Drive checkpoint.")
@click.option("--org", required=True, help="Hub organisation: pushes to ORG/<id>-<dataset>.")
@click.option("--tag", help="Tag the pushed commit (the revision to pin).")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The authors' checkpoint file instead of the Google Drive download.")
@click.option("--dry-run", is_flag=True, help="Download, check and convert, but push nothing.")
@base.TOKEN_OPTION
def mirror(model: str | None, dataset: str | None, every: bool, source: Path | None, **target: Any) -> None:
    """Mirror the authors' checkpoints to the Hub. Checked against RobustBench; prints the registry pins."""
    from ikl_zoo.publish import MirrorTarget, mirror_model
    from ikl_zoo.zoo.registry import get_model_entry, list_models
    if every == bool(model) or (every and source):
        raise click.UsageError("name one MODEL (optionally with --from FILE), or pass --all")
    specs = ([spec for spec in list_models(dataset=dataset) if spec.gdrive_id] if every
             else [get_model_entry(model, dataset=dataset or "cifar10")])
    for spec in specs:
        click.echo("\n".join(mirror_model(spec, MirrorTarget(**target), checkpoint=source).lines()))
