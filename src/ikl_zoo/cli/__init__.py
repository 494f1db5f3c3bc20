"""The ikl-zoo CLI: thin click commands, one module per group, importing the library inside (fast --help)."""

import click

from ikl_zoo import __version__
from ikl_zoo.cli import board, cards, evaluation, train, zoo
from ikl_zoo.cli.base import IklZooGroup

_COMMANDS = [zoo.list_command, zoo.download, zoo.convert, zoo.push, zoo.mirror, zoo.sample_data,
             evaluation.eval_command, board.leaderboard, board.record, cards.card, cards.submit, train.train]


@click.group(name="ikl-zoo", cls=IklZooGroup, commands=_COMMANDS, context_settings={"show_default": True})
@click.version_option(__version__, prog_name="ikl-zoo")
def main() -> None:
    """IKL-AT robust models: list, load, evaluate, publish and train."""
