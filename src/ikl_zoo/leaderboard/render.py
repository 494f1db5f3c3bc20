"""Rendering a ``Board``: Markdown, CSV, LaTeX, a self-contained HTML page or JSON, all with one legend."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ikl_zoo import __version__
from ikl_zoo.leaderboard.reference import LeaderboardError
from ikl_zoo.leaderboard.table import COMPARE_DELTAS, ROW_COLUMNS, STAR, Board, board_legend, board_title

FORMATS = ("md", "csv", "latex", "html", "json")


def render_board(board: Board, fmt: str = "md") -> str:
    """The board as ``md``, ``csv``, ``latex``, ``html`` (one self-contained page) or ``json``."""
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}", fix=f"choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return _data_frame(board).to_csv(index=False)
    if fmt == "json":
        return _render_json(board)
    writer = {"md": _render_markdown, "latex": _render_latex, "html": _render_html}[fmt]
    return writer(board, _display_frame(board, _MARKUPS[fmt]))


def _data_frame(board: Board) -> pd.DataFrame:
    columns = ROW_COLUMNS + [c for c in COMPARE_DELTAS if c in board.rows]
    return board.rows[columns].round(4)


def _render_json(board: Board) -> str:
    document = {
        "dataset": board.dataset,
        "threat_model": board.threat_model,
        "eps": board.eps_text,
        "kind": "comparison" if board.compare_baseline else "leaderboard",
        "compare_baseline": board.compare_baseline,
        "source": board.source,
        "generated_by": f"ikl-zoo {__version__}",
        "notes": list(board.notes),
        "rows": json.loads(_data_frame(board).to_json(orient="records")),  # NaN and NA as null
    }
    return json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class _Markup:
    escape: Callable[[str], str]
    link: Callable[[str, str], str]
    bold: Callable[[str], str]
    star: str


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_LATEX_SPECIALS = str.maketrans({
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
})  # fmt: skip


def _latex_escape(text: str) -> str:
    return text.translate(_LATEX_SPECIALS)


def _latex_url(url: str) -> str:
    return url.translate(str.maketrans({"\\": None, "{": None, "}": None, "%": r"\%", "#": r"\#"}))


_MARKUPS = {  # fmt: skip
    "md": _Markup(
        _md_escape, lambda text, url: f"[{_md_escape(text)}]({url})", lambda text: f"**{text}**", STAR
    ),
    "latex": _Markup(
        _latex_escape, lambda text, url: rf"\href{{{_latex_url(url)}}}{{{_latex_escape(text)}}}",
        lambda text: rf"\textbf{{{text}}}", r"$^\star$",
    ),
    "html": _Markup(
        html.escape, lambda text, url: f'<a href="{html.escape(url)}">{html.escape(text)}</a>',
        lambda text: f"<strong>{text}</strong>", STAR,
    ),
}


def _number(value: Any, *, signed: bool = False) -> str:
    if pd.isna(value):
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _display_frame(board: Board, markup: _Markup) -> pd.DataFrame:
    """Human-readable cells, already escaped for the target format."""
    rows, comparing = board.rows, board.compare_baseline is not None
    table = pd.DataFrame({
        "Rank": rows["rank"].map(lambda rank: "-" if pd.isna(rank) else str(rank)),
        "Model": [_model_cell(row, markup) for row in rows.itertuples()],
        "Method": [_method_cell(row, markup) for row in rows.itertuples()],
    })  # fmt: skip
    for label, column, delta in _PUBLISHED_CELLS:
        table[label] = rows[column].map(_number)
        if comparing:
            table[delta] = rows[f"delta_vs_first_{column}"].map(_signed)
    table["Extra data"] = rows["additional_data"].map(lambda flag: _EXTRA_DATA.get(flag, "unknown"))
    table["Architecture"] = rows["architecture"].map(markup.escape)
    table["Venue"] = rows["venue"].map(markup.escape)
    if board.has_measurements:
        table["ikl-zoo clean"] = rows["measured_clean_acc"].map(_number)
        table["ikl-zoo AutoAttack"] = rows["measured_autoattack_acc"].map(_number)
        if comparing:
            table["Delta ikl-zoo AutoAttack"] = rows["delta_vs_first_measured_autoattack_acc"].map(_signed)
        else:
            table["Delta AutoAttack (measured - published)"] = rows["delta_autoattack_acc"].map(_signed)
        table["Evaluated on"] = rows["measured_note"].map(lambda note: markup.escape(note or "-"))
    return table


_EXTRA_DATA = {True: "yes", False: "no"}
"""Anything else (None: a record that does not say) is unknown, never "no"."""
_PUBLISHED_CELLS = [
    ("Clean", "clean_acc", "Delta clean"),
    ("AutoAttack", "autoattack_acc", "Delta AutoAttack"),
    ("Best known", "best_known", "Delta best known"),
]


def _model_cell(row: Any, markup: _Markup) -> str:
    model = markup.escape(row.model_id)
    return f"{markup.bold(model)} {markup.star}" if row.ikl_at else model


def _method_cell(row: Any, markup: _Markup) -> str:
    title = row.paper_title or ("measured by ikl-zoo" if not row.on_robustbench else "")
    return markup.link(title, row.link) if row.link and title else markup.escape(title)


def _signed(value: Any) -> str:
    return _number(value, signed=True)


def _numeric_columns(table: pd.DataFrame) -> set[str]:
    plain = ("Rank", "Clean", "AutoAttack", "Best known")
    return {name for name in table.columns if name in plain or name.startswith(("Delta", "ikl-zoo"))}


def _render_markdown(board: Board, table: pd.DataFrame) -> str:
    align = ["right" if name in _numeric_columns(table) else "left" for name in table.columns]
    body = table.to_markdown(index=False, disable_numparse=True, colalign=align)
    legend = "\n".join(f"- {_md_escape(line)}" for line in board_legend(board))
    return f"## {board_title(board)}\n\n{body}\n\n{legend}\n"


def _render_latex(board: Board, table: pd.DataFrame) -> str:
    table = table.rename(columns=lambda name: name.replace("Delta", r"$\Delta$"))
    tabular = table.to_latex(index=False, escape=False)
    caption = (
        _latex_escape(board_title(board))
        + ". "
        + " ".join(_latex_escape(line).replace(STAR, r"$^\star$") for line in board_legend(board))
    )
    return (
        "% Needs \\usepackage{booktabs} and \\usepackage{hyperref}.\n"
        "\\begin{table}\n\\centering\n\\footnotesize\n"
        f"\\caption{{{caption}}}\n{tabular}\\end{{table}}\n"
    )


_HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1f2328; }
h1 { font-size: 1.4rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #d0d7de; text-align: left; }
th { background: #f6f8fa; position: sticky; top: 0; }
tr.ikl-at td { background: #fff4e5; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
a { color: #0969da; text-decoration: none; }
ul.legend { font-size: 0.85rem; color: #57606a; }
"""


def _render_html(board: Board, table: pd.DataFrame) -> str:
    numeric = _numeric_columns(table)
    header = "".join(f"<th>{html.escape(name)}</th>" for name in table.columns)
    body = []
    for ikl_at, cells in zip(board.rows["ikl_at"], table.to_dict(orient="records"), strict=True):
        tds = "".join(
            f'<td class="number">{value}</td>' if name in numeric else f"<td>{value}</td>"
            for name, value in cells.items()
        )
        body.append(f'<tr class="ikl-at">{tds}</tr>' if ikl_at else f"<tr>{tds}</tr>")
    legend = "".join(f"<li>{html.escape(line)}</li>" for line in board_legend(board))
    title = html.escape(board_title(board))
    rows = "\n".join(body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n"
        f'<ul class="legend">{legend}</ul>\n</body>\n</html>\n'
    )
