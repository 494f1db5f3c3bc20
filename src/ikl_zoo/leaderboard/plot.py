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
IKL_RED = "#cf222e"
_STYLES = {
    "CIFAR training set only": {"marker": "o", "color": "#8c959f", "s": 28},
    "generated images (per footnote)": {"marker": "s", "color": "#54aeff", "s": 30},
    "extra real data": {"marker": "^", "color": "#2da44e", "s": 40},
}
_MEASURED = {  # by whether it was measured as RobustBench measures
    True: ("measured by ikl-zoo, standard AutoAttack, full test set", {"marker": "D", "edgecolors": "black"}),
    False: ("measured by ikl-zoo, estimate or not comparable", {"marker": "X", "edgecolors": "#57606a"}),
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
    """The scatter as a matplotlib ``Figure`` with its own Agg canvas: every row is a point, at its published
    figures when RobustBench lists it, and every measurement one more; the title counts both."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = board.rows
    if rows.empty:
        raise LeaderboardError("nothing to plot: the board is empty", fix="loosen the filters")
    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    listed, measured = rows[rows["on_robustbench"]], rows[rows["measured_autoattack_acc"].notna()]
    _draw_peers(axes, listed[~listed["ikl_at"]])
    ikl = listed[listed["ikl_at"]]
    _scatter(axes, ikl["clean_acc"], ikl["autoattack_acc"], "IKL-AT", marker="*", s=260, color=IKL_RED,
             edgecolors="black", linewidths=0.6, zorder=4)
    for comparable, (label, style) in _MEASURED.items():  # each joined to its published point, if any
        group = measured[measured["measured_comparable"] == comparable]
        _scatter(axes, group["measured_clean_acc"], group["measured_autoattack_acc"], label, s=44,
                 facecolors="none", linewidths=1.2, zorder=5, **style)
        for row in group[group["on_robustbench"]].itertuples():
            x, y = (row.clean_acc, row.measured_clean_acc), (row.autoattack_acc, row.measured_autoattack_acc)
            axes.plot(x, y, color="black", linewidth=0.8, linestyle=":", zorder=3)
    points = f"\n{len(listed)} published and {len(measured)} measured points" if len(measured) else ""
    axes.set(
        xlabel="Clean accuracy (%)",
        ylabel=f"AutoAttack robust accuracy (%), {board.threat_model} eps = {board.eps_text}",
        title=f"{board_title(board)}, {len(rows)} models{points}",
    )
    axes.grid(True, alpha=0.3, zorder=0)
    axes.margins(0.08)
    axes.legend(loc="best", fontsize=8, framealpha=0.9)
    figure.supxlabel(f"Published figures: {board.source}", fontsize=7, color="#57606a")
    named = rows if board.compare_baseline else rows[rows["ikl_at"] | ~rows["on_robustbench"]]
    _name_points(axes, named)
    return figure


def _scatter(axes: Axes, x: pd.Series, y: pd.Series, label: str, **style: object) -> None:
    """One category, in the legend with its count only when it has points."""
    if len(x):
        axes.scatter(x, y, label=f"{label} ({len(x)})", **style)


def _draw_peers(axes: Axes, others: pd.DataFrame) -> None:
    """Every other listed model, by the training data it used."""
    extra_data = others["additional_data"].eq(True)  # an object column once unlisted models join the board
    generated = ~extra_data & others["footnote"].str.contains(GENERATED_DATA)
    kind = 2 * extra_data.astype(int) + generated.astype(int)  # the index of its style
    for index, (label, style) in enumerate(_STYLES.items()):
        group = others[kind == index]
        _scatter(axes, group["clean_acc"], group["autoattack_acc"], label, edgecolors="white", linewidths=0.5,
                 alpha=0.9, zorder=2, **style)


def _name_points(axes: Axes, rows: pd.DataFrame) -> None:
    """Each row's name at its point (published, else measured): to the left in the right half, so no name
    leaves the figure, and above the point when another named point sits just below it."""
    x = rows["clean_acc"].fillna(rows["measured_clean_acc"])
    y = rows["autoattack_acc"].fillna(rows["measured_autoattack_acc"])
    (left, right), (bottom, top) = axes.get_xlim(), axes.get_ylim()
    for model_id, px, py, ikl_at in zip(rows["model_id"], x, y, rows["ikl_at"], strict=True):
        near = ((x - px).abs() < (right - left) / 8) & (y < py) & (y > py - (top - bottom) / 20)
        flip = px > (left + right) / 2
        axes.annotate(model_id.removeprefix(f"{IKL_MODEL_PREFIX}_"), (px, py), fontsize=8,
                      xytext=(-8 if flip else 8, 5 if near.any() else -11), textcoords="offset points",
                      ha="right" if flip else "left", color=IKL_RED if ikl_at else "black")
