"""What every ikl-zoo command shares: one-line errors, the command class, common options and parsers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from ikl_zoo.errors import IklZooError
from ikl_zoo.threat import DATASETS

DATASET_OPTION = click.option(
    "--dataset", type=click.Choice(DATASETS), default="cifar10", show_default=True,
    help="CIFAR-10 or CIFAR-100 (a registered id can name a model of each).",
)


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line naming the command's --help, instead of click's usage block."""

    def show(self, file: IO[Any] | None = None) -> None:
        command = self.ctx.command_path if self.ctx is not None else "ikl-zoo"
        message = " ".join(self.format_message().split()).removesuffix(".")
        click.echo(f"Error: {message} (see {command} --help)", file=file, err=True)


@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # bare `ikl-zoo`: the help itself
    except _OneLineUsageError:
        raise
    except click.UsageError as error:
        raise _OneLineUsageError(error.format_message(), ctx=error.ctx) from None


class IklZooCommand(click.Command):
    """Every ikl-zoo command: its usage errors name it, so the one-line error points at its --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:  # click's parser leaves some without a context: name the command
            error.ctx = error.ctx or ctx
            raise


class IklZooGroup(click.Group):
    """Turns bad options and library errors into one line on stderr and exit status 2, never a traceback."""

    command_class = IklZooCommand

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        with _one_line_usage_errors():  # the group's own options
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            with _one_line_usage_errors():  # unknown commands, their options, UsageErrors they raise
                return super().invoke(ctx)
        except IklZooError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted: finished work is saved; rerun with --resume to continue.", err=True)
            sys.exit(130)


RECORDS_OPTION = click.option(
    "--records", "records_root", default="leaderboard", show_default=True,
    help="Folder of result records (written by `ikl-zoo eval --record` or `ikl-zoo record`).",
)
