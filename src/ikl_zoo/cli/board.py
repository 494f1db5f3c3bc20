"""Leaderboard and record commands."""

from __future__ import annotations

import click

from ikl_zoo.cli.base import DATASET_OPTION, RECORDS_OPTION, IklZooCommand
from ikl_zoo.threat import parse_eps


def _budget(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    try:
        return None if value is None else parse_eps(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command(cls=IklZooCommand)
@click.argument("models", nargs=-1)
@DATASET_OPTION
@click.option("--threat-model", type=click.Choice(["Linf", "L2"]), default="Linf", show_default=True)
@click.option("--eps", metavar="EPS", callback=_budget, help="Budget, e.g. 4/255 or 0.25 [RobustBench's: "
              "8/255 Linf, 0.5 L2]. RobustBench has no board at other budgets: only records measured at it.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "html", "json"]), default="md",
              show_default=True, help="html is one self-contained page.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the first N rows.")
@click.option("--only-ikl", is_flag=True, help="Only IKL-AT models.")
@click.option("--no-extra-data", is_flag=True, help="Hide models trained with extra real data.")
@click.option("--compare", is_flag=True, help="Show MODELS side by side, with differences from the first.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a clean vs AutoAttack scatter (.png, .pdf or .svg).")
@click.option("--robustbench-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A RobustBench checkout: read its model_info/ instead of the shipped copy.")
@RECORDS_OPTION
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Write the table here instead of printing it.")
def leaderboard(
    models: tuple[str, ...], dataset: str, threat_model: str, eps: float | None, fmt: str, top: int | None,
    only_ikl: bool, no_extra_data: bool, compare: bool, plot: str | None, robustbench_dir: str | None,
    records_root: str, out_file: str | None,
) -> None:
    """RobustBench's leaderboard with ikl-zoo's measurements beside it; or --compare MODEL MODEL ..."""
    from ikl_zoo.atomic import write_text_atomic
    from ikl_zoo.leaderboard.plot import plot_board
    from ikl_zoo.leaderboard.records import output_errors
    from ikl_zoo.leaderboard.render import render_board
    from ikl_zoo.leaderboard.table import build_board, compare_models

    if models and not compare:
        raise click.UsageError("model ids are only taken with --compare, e.g. --compare MODEL_A MODEL_B")
    if compare and (top or only_ikl or no_extra_data):
        raise click.UsageError("--top, --only-ikl and --no-extra-data filter the board, not --compare")
    sources = {"dataset": dataset, "threat_model": threat_model, "robustbench_dir": robustbench_dir,
               "records_root": records_root, "eps": eps}
    board = compare_models(list(models), **sources) if compare else build_board(
        **sources, top=top, only_ikl=only_ikl, no_extra_data=no_extra_data)
    text = render_board(board, fmt)
    if out_file:
        with output_errors(out_file, fix="pass an -o/--out path you can write"):
            written = write_text_atomic(out_file, text)
        click.echo(f"wrote {written}")  # outside: a closed stdout is not the file's fault
    else:
        click.echo(text, nl=False)
    if plot:
        click.echo(f"wrote {plot_board(board, plot)}", err=out_file is None)


@click.command(cls=IklZooCommand)
@click.argument("result", type=click.Path(exists=True, dir_okay=False))
@RECORDS_OPTION
@click.option("--overwrite", is_flag=True, help="Replace a record on more examples or with another attack.")
def record(result: str, records_root: str, overwrite: bool) -> None:
    """Add RESULT (a result.json of `ikl-zoo eval`) to the leaderboard records, or update its record."""
    from ikl_zoo.leaderboard.records import read_result, write_record

    click.echo(f"wrote {write_record(read_result(result), root=records_root, overwrite=overwrite)}")
