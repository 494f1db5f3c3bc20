"""Clean vs AutoAttack accuracy scatter of a board, IKL-AT marked (the shape of the paper's Figure 2).

Drawn on an Agg canvas owned by the figure, so it never touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ikl_zoo.atomic import atomic_path
from ikl_zoo.leaderboard.records import output_errors
from ikl_zoo.leaderboard.reference import IKL_MODEL_PREFIX, LeaderboardError
from ikl_zoo.leaderboard.table import Board, board_title

if TYPE_CHECKING:
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
        raise LeaderboardError(f"cannot write a plot as {path.suffix!r}: name the file .png, .pdf or .svg")
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
        raise LeaderboardError("nothing to plot: the board is empty after the filters")
    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    listed = rows[rows["on_robustbench"]]
    others = listed[~listed["ikl_at"]]
    generated = others["footnote"].str.contains(GENERATED_DATA)
    extra_data = others["additional_data"].eq(True)  # an object column once unlisted models join the board
    groups = {
        "CIFAR training set only": others[~extra_data & ~generated],
        "generated images (per footnote)": others[~extra_data & generated],
        "extra real data": others[extra_data],
    }
    for label, group in groups.items():
        if not group.empty:
            axes.scatter(
                group["clean_acc"],
                group["autoattack_acc"],
                label=f"{label} ({len(group)})",
                edgecolors="white",
                linewidths=0.5,
                alpha=0.9,
                zorder=2,
                **_STYLES[label],
            )

    ikl = listed[listed["ikl_at"]]
    if not ikl.empty:
        axes.scatter(
            ikl["clean_acc"],
            ikl["autoattack_acc"],
            marker="*",
            s=260,
            color="#cf222e",
            edgecolors="black",
            linewidths=0.6,
            zorder=4,
            label=f"IKL-AT ({len(ikl)})",
        )
        for _, row in ikl.iterrows():
            crowded_below = (
                (ikl["autoattack_acc"] < row["autoattack_acc"])
                & (ikl["autoattack_acc"] > row["autoattack_acc"] - 1.5)
                & ((ikl["clean_acc"] - row["clean_acc"]).abs() < 1.5)
            ).any()
            axes.annotate(
                _short_name(row["model_id"]),
                (row["clean_acc"], row["autoattack_acc"]),
                xytext=(8, 5 if crowded_below else -11),
                textcoords="offset points",
                fontsize=8,
                color="#cf222e",
            )

    # Only figures measured as RobustBench measures them belong in the board's picture.
    measured = rows[rows["measured_autoattack_acc"].notna() & rows["measured_comparable"]]
    if not measured.empty:
        axes.scatter(
            measured["measured_clean_acc"],
            measured["measured_autoattack_acc"],
            marker="D",
            s=40,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            zorder=5,
            label=f"measured by ikl-zoo, standard AutoAttack, full test set ({len(measured)})",
        )
        for _, row in measured.iterrows():
            if row["on_robustbench"]:
                axes.plot(
                    [row["clean_acc"], row["measured_clean_acc"]],
                    [row["autoattack_acc"], row["measured_autoattack_acc"]],
                    color="black",
                    linewidth=0.8,
                    linestyle=":",
                    zorder=3,
                )
            else:
                axes.annotate(
                    _short_name(row["model_id"]),
                    (row["measured_clean_acc"], row["measured_autoattack_acc"]),
                    xytext=(7, 4),
                    textcoords="offset points",
                    fontsize=8,
                )

    axes.set_xlabel("Clean accuracy (%)")
    axes.set_ylabel(f"AutoAttack robust accuracy (%), {board.threat_model} eps = {board.eps_text}")
    axes.set_title(
        board_title(board).replace(": leaderboard", f": RobustBench leaderboard, {len(rows)} models")
    )
    axes.grid(True, alpha=0.3, zorder=0)
    axes.legend(loc="upper left", fontsize=8, framealpha=0.9)
    figure.supxlabel(f"Published figures: {board.source}", fontsize=7, color="#57606a")
    return figure


def _short_name(model_id: str) -> str:
    return (
        model_id.removeprefix(f"{IKL_MODEL_PREFIX}_") if model_id.startswith(IKL_MODEL_PREFIX) else model_id
    )
