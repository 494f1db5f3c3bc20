"""What every ikl-zoo command shares: one-line errors, the command classes, common options and parsers."""

import sys
from typing import IO, Any

import click

from ikl_zoo.errors import IklZooError
from ikl_zoo.threat import DATASETS, parse_eps

FOLDER, FILE = click.Path(file_okay=False), click.Path(dir_okay=False)  # to write
RESULT_FILE = click.Path(exists=True, dir_okay=False)
_RESUME_HINT = ": finished work is saved; rerun the same command with --resume to continue"
DATASET_OPTION = click.option("--dataset", type=click.Choice(DATASETS), default="cifar10",
                              help="CIFAR-10 or CIFAR-100 (a registered id can name a model of each).")
RECORDS_OPTION = click.option("--records", "records_root", default="leaderboard",
                              help="Folder of result records (`ikl-zoo eval --record`, `ikl-zoo record`).")
TOKEN_OPTION = click.option("--token", help="Hub write token (default: HF_TOKEN or `hf auth login`'s).")


def parse_budget(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An --eps such as 8/255 or 0.5 as a number; a bad one is a usage error naming the option."""
    try:
        return None if value is None else parse_eps(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line naming the command's --help, instead of click's usage block."""

    def __init__(self, error: click.UsageError, command_path: str) -> None:
        super().__init__(" ".join(error.format_message().split()).removesuffix("."))
        self.command_path = command_path

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.message} (see {self.command_path} --help)", file=file, err=True)



class IklZooGroup(click.Group):
    """Turns bad options and library errors into one line on stderr and exit status 2, never a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise  # bare `ikl-zoo` prints the help itself
        except click.UsageError as error:  # the group's own options
            raise _OneLineUsageError(error, ctx.command_path) from None

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except click.UsageError as error:  # click's parser leaves some without a context: name the command
            where = error.ctx.command_path if error.ctx else f"{ctx.command_path} {ctx.invoked_subcommand}"
            raise _OneLineUsageError(error, where) from None
        except IklZooError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            command = self.commands.get(ctx.invoked_subcommand or "")
            resumable = command is not None and "resume" in {param.name for param in command.params}
            click.echo(f"Interrupted{_RESUME_HINT if resumable else ''}.", err=True)
            sys.exit(130)
