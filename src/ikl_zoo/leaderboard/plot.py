"""Clean vs AutoAttack accuracy scatter of a board, IKL-AT marked (the shape of the paper's Figure 2), drawn
on an Agg canvas owned by the figure: no pyplot global state, no display."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ikl_zoo.atomic import atomic_path
from ikl_zoo.leaderboard.records import output_errors
from ikl_zoo.leaderboard.reference import IKL_MODEL_PREFIX, LeaderboardError
from ikl_zoo.leaderboard.render import board_title
from ikl_zoo.leaderboard.table import Board

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GENERATED_DATA = re.compile(r"synthetic images|generated data", re.IGNORECASE)
"""How RobustBench's footnotes name generated training images; its ``additional_data`` flag ignores them."""

_STYLES = {
    "CIFAR training set only": {"marker": "o", "color": "#8c959f", "s": 28},
    "generated images (per footnote)": {"marker": "s", "color": "#54aeff", "s": 30},
    "extra real data": {"marker": "^", "color": "#2da44e", "s": 40},
}


def plot_board(board: Board, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Write the scatter to ``path``; the file type follows its suffix (.png, .pdf, .svg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    file_format = path.suffix.lstrip(".").lower() or "png"
    if file_format not in FigureCanvasAgg.get_supported_filetypes():
        fix = "name the file .png, .pdf or .svg"
        raise LeaderboardError(f"cannot write a plot as {path.suffix!r}", fix=fix)
    figure = board_figure(board)
    with output_errors(path, fix="pass a --plot path you can write"), atomic_path(path) as tmp:
        figure.savefig(tmp, format=file_format, dpi=dpi)
    return path


def board_figure(board: Board) -> Figure:
    """The scatter as a matplotlib ``Figure`` with its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = board.rows
    if rows.empty:
        raise LeaderboardError("nothing to plot: the board is empty", fix="loosen the filters")
    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    listed = rows[rows["on_robustbench"]]
    _draw_peers(axes, listed[~listed["ikl_at"]])
    _draw_ikl_at(axes, listed[listed["ikl_at"]])
    # Only figures measured as RobustBench measures them belong in the board's picture.
    _draw_measured(axes, rows[rows["measured_autoattack_acc"].notna() & rows["measured_comparable"]])
    axes.set(
        xlabel="Clean accuracy (%)",
        ylabel=f"AutoAttack robust accuracy (%), {board.threat_model} eps = {board.eps_text}",
        title=board_title(board).replace(": leaderboard", f": RobustBench leaderboard, {len(rows)} models"),
    )
    axes.grid(True, alpha=0.3, zorder=0)
    axes.legend(loc="upper left", fontsize=8, framealpha=0.9)
    figure.supxlabel(f"Published figures: {board.source}", fontsize=7, color="#57606a")
    return figure


def _draw_peers(axes: Axes, others: pd.DataFrame) -> None:
    """Every other listed model, by the training data it used."""
    extra_data = others["additional_data"].eq(True)  # an object column once unlisted models join the board
    generated = ~extra_data & others["footnote"].str.contains(GENERATED_DATA)
    kind = 2 * extra_data.astype(int) + generated.astype(int)  # the index of its style
    for index, (label, style) in enumerate(_STYLES.items()):
        if not (group := others[kind == index]).empty:
            axes.scatter(group["clean_acc"], group["autoattack_acc"], label=f"{label} ({len(group)})",
                         edgecolors="white", linewidths=0.5, alpha=0.9, zorder=2, **style)


def _draw_ikl_at(axes: Axes, ikl: pd.DataFrame) -> None:
    """IKL-AT's models as stars, each named; a label goes above its star when another one sits just below."""
    if ikl.empty:
        return
    axes.scatter(ikl["clean_acc"], ikl["autoattack_acc"], marker="*", s=260, color="#cf222e",
                 edgecolors="black", linewidths=0.6, zorder=4, label=f"IKL-AT ({len(ikl)})")
    for row in ikl.itertuples():
        below = ikl["autoattack_acc"].between(row.autoattack_acc - 1.5, row.autoattack_acc, "neither")
        crowded_below = (below & ((ikl["clean_acc"] - row.clean_acc).abs() < 1.5)).any()
        axes.annotate(_short_name(row.model_id), (row.clean_acc, row.autoattack_acc), fontsize=8,
                      color="#cf222e", xytext=(8, 5 if crowded_below else -11), textcoords="offset points")


def _draw_measured(axes: Axes, measured: pd.DataFrame) -> None:
    """ikl-zoo's measurements: joined to the published point when listed, named when not."""
    if measured.empty:
        return
    axes.scatter(
        measured["measured_clean_acc"], measured["measured_autoattack_acc"], marker="D", s=40,
        facecolors="none", edgecolors="black", linewidths=1.2, zorder=5,
        label=f"measured by ikl-zoo, standard AutoAttack, full test set ({len(measured)})",
    )  # fmt: skip
    for row in measured.itertuples():
        point = (row.measured_clean_acc, row.measured_autoattack_acc)
        if row.on_robustbench:
            axes.plot([row.clean_acc, point[0]], [row.autoattack_acc, point[1]], color="black", linewidth=0.8,
                      linestyle=":", zorder=3)
        else:
            name = _short_name(row.model_id)
            axes.annotate(name, point, xytext=(7, 4), textcoords="offset points", fontsize=8)


def _short_name(model_id: str) -> str:
    return model_id.removeprefix(f"{IKL_MODEL_PREFIX}_")
