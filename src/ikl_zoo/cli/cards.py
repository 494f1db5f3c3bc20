"""Card and submit commands."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from ikl_zoo.cli.base import DATASET_OPTION, RECORDS_OPTION, IklZooCommand


@click.command(cls=IklZooCommand)
@click.argument("model", required=False)
@DATASET_OPTION
@click.option("--result", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A result.json of `ikl-zoo eval` of these weights: its figures go beside the published "
                   "ones, with its budget and attack named when they are not the model's standard ones.")
@click.option("--repo-id", default=None, help="Hub repository (ORG/NAME) named in the loading snippet.")
@click.option("--all", "all_models", is_flag=True, help="Cards of every IKL-AT registry model.")
@RECORDS_OPTION
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for README.md (--all: one folder per model; default for a zoo folder: itself).")
def card(model: str | None, dataset: str, result: str | None, repo_id: str | None, all_models: bool,
         records_root: str, out_dir: str | None) -> None:
    """Write the Hugging Face model card (README.md) of MODEL: a registry id or a zoo folder."""
    from ikl_zoo.cards.model_card import write_model_card, write_registry_cards
    from ikl_zoo.leaderboard.records import read_result

    if all_models and (model or result):
        raise click.UsageError("--all writes the registry's cards; give no MODEL or --result with it")
    if all_models:
        paths = write_registry_cards(out_dir or "cards", records_root=records_root)
    elif not model:
        raise click.UsageError("give a MODEL (registry id or zoo folder), or --all")
    elif click.get_current_context().get_parameter_source("records_root") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--records is read with --all only: give one measurement with --result")
    elif out_dir is None and not Path(model).is_dir():
        raise click.UsageError("-o/--out is required unless MODEL is a zoo folder")
    else:
        evaluation = read_result(result) if result else None
        out_dir = out_dir or model
        paths = [write_model_card(model, out_dir, dataset=dataset, result=evaluation, repo_id=repo_id)]
    for path in paths:
        click.echo(f"wrote {path}")


@click.command(cls=IklZooCommand)
@click.option("--result", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The result.json of a full `ikl-zoo eval`.")
@click.option("--name", default=None, help="RobustBench name: <Author><Year><FirstWordOfTitle>[_variant].")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--draft", is_flag=True, help="Write the files even if RobustBench would refuse them.")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="The model's zoo folder (config.json) when it is not in the registry.")
@click.option("--paper-title", default=None)
@click.option("--paper-url", "link", default=None)
@click.option("--authors", default=None, help='"First Last, First Last, ..."')
@click.option("--venue", default=None, help='e.g. "NeurIPS 2024" or "arXiv, May 2023".')
@click.option("--architecture", default=None, help='e.g. "WideResNet-28-10".')
@click.option("--additional-data/--no-additional-data", default=None, help="Extra real training data?")
@click.option("--footnote", default=None)
@click.option("--checkpoint-url", default=None)
@click.option("--gdrive-id", default=None, help="Google Drive id of the checkpoint (for the model zoo).")
def submit(
    result: str, name: str | None, out_dir: str, draft: bool, model_dir: str | None, **info: object
) -> None:
    """Write a RobustBench submission: model_info JSON, the filled [New Model] issue, the model-zoo entry."""
    from ikl_zoo.cards.subject import read_config
    from ikl_zoo.cards.submission import write_submission
    from ikl_zoo.leaderboard.records import read_result

    config = read_config(model_dir) if model_dir else None
    submission, paths = write_submission(read_result(result), out_dir, name=name, draft=draft, info=info,
                                         config=config)
    for path in paths:
        click.echo(f"wrote {path}")
    for problem in submission.problems:
        click.echo(f"DRAFT: {problem}", err=True)
    for note in submission.notes:
        click.echo(f"Note: {note}", err=True)
