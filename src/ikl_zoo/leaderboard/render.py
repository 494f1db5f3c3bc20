"""Rendering a ``Board``: Markdown, CSV, LaTeX, a self-contained HTML page or JSON, all with one legend."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import methodcaller
from typing import Any

import jinja2
import pandas as pd

from ikl_zoo import __version__
from ikl_zoo.evaluate.summary import FULL_TEST_SET
from ikl_zoo.leaderboard.reference import ROBUSTBENCH_URL, LeaderboardError
from ikl_zoo.leaderboard.table import COMPARE_DELTAS, NOT_COMPARABLE, ROW_COLUMNS, STAR, Board
from ikl_zoo.paper import PAPER_TITLE, PAPER_URL
from ikl_zoo.threat import DATASET_TITLES

FORMATS = ("md", "csv", "latex", "html", "json")


def board_title(board: Board) -> str:
    """The heading every rendering and the plot share: dataset, threat model, budget, board or comparison."""
    what = "comparison" if board.compare_baseline else "leaderboard"
    return f"{DATASET_TITLES[board.dataset]}, {board.threat_model}, eps = {board.eps_text}: {what}"


def template_renderer(package: str, **filters: Callable[..., Any]) -> Callable[..., str]:
    """``render(template, **context)`` for ``package``'s Jinja templates: a missing value fails loudly; the
    facts every page may state (version, paper, test-set size, dataset names) are always there."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"), autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(filters)
    environment.globals.update(version=__version__, paper_title=PAPER_TITLE, paper_url=PAPER_URL, star=STAR,
                               datasets=DATASET_TITLES, robustbench_url=ROBUSTBENCH_URL,
                               full_test_set=FULL_TEST_SET)
    return lambda template, /, **context: environment.get_template(template).render(**context)


render = template_renderer("ikl_zoo.leaderboard")


def render_board(board: Board, fmt: str = "md") -> str:
    """The board as ``md``, ``csv``, ``latex``, ``html`` (one self-contained page) or ``json``."""
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}", fix=f"choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return _data_frame(board).to_csv(index=False)
    if fmt == "json":
        document = {
            "dataset": board.dataset, "threat_model": board.threat_model, "eps": board.eps_text,
            "kind": "comparison" if board.compare_baseline else "leaderboard",
            "compare_baseline": board.compare_baseline, "source": board.source,
            "generated_by": f"ikl-zoo {__version__}", "notes": list(board.notes),
            "rows": json.loads(_data_frame(board).to_json(orient="records")),  # NaN and NA as null
        }  # fmt: skip
        return json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    table = _display_frame(board, _MARKUPS[fmt])
    title, legend = board_title(board), render("legend.txt.j2", board=board).splitlines()
    if fmt == "md":
        align = ["right" if name in _numeric_columns(table) else "left" for name in table.columns]
        body = table.to_markdown(index=False, disable_numparse=True, colalign=align)
        return render("board.md.j2", title=title, body=body, legend=map(_md_escape, legend))
    if fmt == "latex":
        tabular = table.rename(columns=lambda name: name.replace("Delta", r"$\Delta$")).to_latex(index=False)
        caption = " ".join(map(_latex_escape, [f"{title}.", *legend])).replace(STAR, r"$^\star$")
        return render("board.tex.j2", caption=caption, tabular=tabular)
    rows = zip(board.rows["ikl_at"], table.to_dict(orient="records"), strict=True)
    return render("board.html.j2", title=title, table=table, rows=rows, numeric=_numeric_columns(table),
                   legend=legend)  # fmt: skip


def _data_frame(board: Board) -> pd.DataFrame:
    return board.rows[ROW_COLUMNS + [c for c in COMPARE_DELTAS if c in board.rows]].round(4)


@dataclass(frozen=True)
class _Markup:
    escape: Callable[[str], str]
    link: str  # a format of the escaped ``text`` and ``url``
    bold: str
    star: str
    url: Callable[[str], str] = str


_md_escape = methodcaller("replace", "|", "\\|")
_LATEX_SPECIALS = str.maketrans({
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
})  # fmt: skip
_LATEX_URL = str.maketrans({"\\": None, "{": None, "}": None, "%": r"\%", "#": r"\#"})
_latex_escape = methodcaller("translate", _LATEX_SPECIALS)
_MARKUPS = {
    "md": _Markup(_md_escape, "[{text}]({url})", "**{}**", STAR),
    "latex": _Markup(_latex_escape, r"\href{{{url}}}{{{text}}}", r"\textbf{{{}}}", r"$^\star$",
                     methodcaller("translate", _LATEX_URL)),
    "html": _Markup(html.escape, '<a href="{url}">{text}</a>', "<strong>{}</strong>", STAR, html.escape),
}
_EXTRA_DATA = {True: "yes", False: "no"}  # anything else (a record that does not say) is unknown, never "no"
_PUBLISHED_CELLS = [
    ("Clean", "clean_acc", "Delta clean"), ("AutoAttack", "autoattack_acc", "Delta AutoAttack"),
    ("Best known", "best_known", "Delta best known")]


def _figure(value: Any, spec: str = ".2f") -> str:
    return "-" if pd.isna(value) else format(value, spec)


_signed = partial(_figure, spec="+.2f")


def _display_frame(board: Board, markup: _Markup) -> pd.DataFrame:
    """Human-readable cells, already escaped for the target format."""
    rows, comparing = board.rows, board.compare_baseline is not None
    model = rows["model_id"].map(markup.escape)
    table = pd.DataFrame({
        "Rank": rows["rank"].map(lambda rank: "-" if pd.isna(rank) else str(rank)),
        "Model": model.mask(rows["ikl_at"].astype(bool), model.map(markup.bold.format) + f" {markup.star}"),
        "Method": [_method_cell(row, markup) for row in rows.itertuples()],
    })  # fmt: skip
    for label, column, delta in _PUBLISHED_CELLS:
        table[label] = rows[column].map(_figure)
        if comparing:
            table[delta] = rows[f"delta_vs_first_{column}"].map(_signed)
    table["Extra data"] = rows["additional_data"].map(lambda flag: _EXTRA_DATA.get(flag, "unknown"))
    for column in ("Architecture", "Venue"):
        table[column] = rows[column.lower()].map(markup.escape)
    if board.has_measurements:
        table["ikl-zoo clean"] = rows["measured_clean_acc"].map(_figure)
        marks = rows["measured_note"].map(lambda note: "".join(f" {m}" for m in NOT_COMPARABLE if m in note))
        table["ikl-zoo AutoAttack"] = rows["measured_autoattack_acc"].map(_figure) + marks  # footnoted
        if comparing:
            table["Delta ikl-zoo AutoAttack"] = rows["delta_vs_first_measured_autoattack_acc"].map(_signed)
        else:
            table["Delta AutoAttack (measured - published)"] = rows["delta_autoattack_acc"].map(_signed)
        table["Evaluated on"] = rows["measured_note"].map(lambda note: markup.escape(note or "-"))
    return table


def _method_cell(row: Any, markup: _Markup) -> str:
    title = row.paper_title or ("measured by ikl-zoo" if not row.on_robustbench else "")
    if not (row.link and title):
        return markup.escape(title)
    return markup.link.format(text=markup.escape(title), url=markup.url(row.link))


def _numeric_columns(table: pd.DataFrame) -> set[str]:
    plain = ("Rank", "Clean", "AutoAttack", "Best known")
    return {name for name in table.columns if name in plain or name.startswith(("Delta", "ikl-zoo"))}
