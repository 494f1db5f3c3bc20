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


# --- data and evaluation commands: sample-data, eval ---------------------------------------------


# --- leaderboard, card and submit commands -------------------------------------------------------


# --- training commands: train --------------------------------------------------------------------


if __name__ == "__main__":
    main()
