"""Card and submit commands."""

from pathlib import Path

import click
from click.core import ParameterSource

from ikl_zoo.cli import base


@click.command()
@click.argument("model", required=False)
@base.DATASET_OPTION
@click.option("--result", type=base.RESULT_FILE, help="A result.json of `ikl-zoo eval` of these weights: its "
              "figures go beside the published ones, naming budget and attack unless they are the standard.")
@click.option("--repo-id", help="Hub repository (ORG/NAME) named in the card's loading snippet.")
@click.option("--all", "all_models", is_flag=True, help="Cards of every IKL-AT registry model.")
@base.RECORDS_OPTION
@click.option("-o", "--out", "out_dir", type=base.FOLDER,
              help="Folder for README.md (--all: one folder per model [cards]; a zoo folder MODEL: itself).")
def card(model: str | None, dataset: str, result: str | None, repo_id: str | None, all_models: bool,
         records_root: str, out_dir: str | None) -> None:
    """Write a Hugging Face model card (README.md). MODEL: a registry id, a zoo folder or hf-hub:ORG/NAME."""
    from ikl_zoo.cards import write_model_card, write_registry_cards
    from ikl_zoo.leaderboard.records import read_result
    if all_models and (model or result):
        raise click.UsageError("--all writes the registry's cards: give no MODEL or --result with it")
    if all_models:
        paths = write_registry_cards(out_dir or "cards", records_root=records_root)
    elif not model:
        raise click.UsageError("give a MODEL (registry id, zoo folder or hf-hub:ORG/NAME), or --all")
    elif click.get_current_context().get_parameter_source("records_root") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--records is read with --all only: give one measurement with --result")
    elif out_dir is None and not Path(model).is_dir():
        raise click.UsageError(f"-o/--out is required unless MODEL is a zoo folder, e.g. -o cards/{model}")
    else:
        paths = [write_model_card(model, out_dir or model, dataset=dataset, repo_id=repo_id,
                                  result=read_result(result) if result else None)]
    click.echo("\n".join(f"wrote {path}" for path in paths))


@click.command()
@click.option("--result", required=True, type=base.RESULT_FILE, help="result.json of a full `ikl-zoo eval`.")
@click.option("--name", help="RobustBench model name: <FirstAuthor><Year><FirstWordOfTitle>[_variant].")
@click.option("-o", "--out", "out_dir", required=True, type=base.FOLDER,
              help="Folder to write model_info/..., new-model-issue.md and model_zoo_entry.py into.")
@click.option("--draft", is_flag=True, help="Write the files even if RobustBench would refuse them.")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False),
              help="The model's zoo folder (config.json) when it is not in the registry.")
@click.option("--paper-title", help="Title of the paper that introduces the model.")
@click.option("--paper-url", "link", help="Link to the paper, e.g. https://arxiv.org/abs/2305.13948.")
@click.option("--authors", help='The paper\'s authors: "First Last, First Last, ...".')
@click.option("--venue", help='Where the paper appeared, e.g. "NeurIPS 2024" or "arXiv, May 2023".')
@click.option("--architecture", help='The network as RobustBench lists it, e.g. "WideResNet-28-10".')
@click.option("--additional-data/--no-additional-data", default=None, help="Trained with extra real data?")
@click.option("--footnote", help="RobustBench's footnote for the row, e.g. 'Uses 1M synthetic images'.")
@click.option("--checkpoint-url", help="Weights link for the issue (default: --gdrive-id's Google Drive).")
@click.option("--gdrive-id", help="Google Drive file id of the checkpoint, for RobustBench's model zoo.")
def submit(result: str, name: str | None, out_dir: str, draft: bool, model_dir: str | None, **info: object
           ) -> None:
    """Write a RobustBench submission for a result. Says every reason RobustBench would refuse it."""
    from ikl_zoo.cards import write_submission
    from ikl_zoo.cards.subject import read_config
    from ikl_zoo.leaderboard.records import read_result
    submission, paths = write_submission(read_result(result), out_dir, name=name, draft=draft, info=info,
                                         config=read_config(model_dir) if model_dir else None)
    click.echo("\n".join(f"wrote {path}" for path in paths))
    for line in [*(f"DRAFT: {p}" for p in submission.problems), *(f"Note: {n}" for n in submission.notes)]:
        click.echo(line, err=True)
