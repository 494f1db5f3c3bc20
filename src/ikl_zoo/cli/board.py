"""Leaderboard and record commands."""

from typing import Any

import click

from ikl_zoo.cli import base


@click.command()
@click.argument("models", nargs=-1)
@base.DATASET_OPTION
@click.option("--threat-model", type=click.Choice(["Linf", "L2"]), default="Linf",
              help="The norm the board's attacks are bounded in.")
@click.option("--eps", metavar="EPS", callback=base.parse_budget, help="Budget, e.g. 4/255 or 0.25 "
              "[RobustBench's: 8/255 Linf, 0.5 L2]; other budgets show only records measured at them.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "html", "json"]), default="md",
              help="Table format; html is one self-contained page.")
@click.option("--top", type=click.IntRange(min=1), help="Only the first N rows.")
@click.option("--only-ikl", is_flag=True, help="Only IKL-AT models.")
@click.option("--no-extra-data", is_flag=True, help="Hide models trained with extra real data.")
@click.option("--compare", is_flag=True, help="Show MODELS side by side, with differences from the first.")
@click.option("--plot", type=base.FILE, help="Also write a clean vs AutoAttack scatter (.png, .pdf or .svg).")
@click.option("--robustbench-dir", type=click.Path(exists=True, file_okay=False),
              help="A RobustBench checkout: read its model_info/ instead of the shipped copy.")
@base.RECORDS_OPTION
@click.option("-o", "--out", "out_file", type=base.FILE, help="Write the table to this file, not stdout.")
def leaderboard(models: tuple[str, ...], compare: bool, top: int | None, only_ikl: bool, no_extra_data: bool,
                fmt: str, plot: str | None, out_file: str | None, **sources: Any) -> None:
    """Show a RobustBench board and ikl-zoo records. --compare MODEL MODEL ...: models side by side."""
    from ikl_zoo.atomic import write_text_atomic
    from ikl_zoo.leaderboard import records, render, table
    from ikl_zoo.leaderboard.plot import plot_board
    if models and not compare:
        raise click.UsageError("model ids are only taken with --compare, e.g. --compare MODEL_A MODEL_B")
    if compare and (top or only_ikl or no_extra_data):
        raise click.UsageError("--compare shows the MODELS given: drop --top, --only-ikl and --no-extra-data")
    board = (table.compare_models(list(models), **sources) if compare
             else table.build_board(**sources, top=top, only_ikl=only_ikl, no_extra_data=no_extra_data))
    text = render.render_board(board, fmt)
    if out_file:
        with records.output_errors(out_file, fix="pass an -o/--out path you can write"):
            written = write_text_atomic(out_file, text)
        click.echo(f"wrote {written}")  # outside: a closed stdout is not the file's fault
    else:
        click.echo(text, nl=False)
    if plot:
        click.echo(f"wrote {plot_board(board, plot)}", err=out_file is None)


@click.command()
@click.argument("result", type=base.RESULT_FILE)
@base.RECORDS_OPTION
@click.option("--overwrite", is_flag=True, help="Replace a record on more examples or with another attack.")
def record(result: str, records_root: str, overwrite: bool) -> None:
    """Add an eval result to the records. RESULT is the result.json that `ikl-zoo eval` wrote."""
    from ikl_zoo.leaderboard.records import read_result, write_record
    click.echo(f"wrote {write_record(read_result(result), root=records_root, overwrite=overwrite)}")
