"""RobustBench's published leaderboards (shipped copy or a checkout) as one table shape (a row per model, in
percent), and what is known of a model beyond its measured accuracies: RobustBench's row, or the registry."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ikl_zoo import reference as shipped
from ikl_zoo._robustbench import ROBUSTBENCH_PREFIX
from ikl_zoo.errors import IklZooError, UnknownModelError
from ikl_zoo.paper import PAPER_AUTHORS, PAPER_TITLE, PAPER_URL, PAPER_VENUE
from ikl_zoo.threat import DATASETS, same_eps

if TYPE_CHECKING:
    from ikl_zoo.zoo.registry import ModelEntry

ROBUSTBENCH_URL = "https://robustbench.github.io/"
STANDARD_EPS = shipped.STANDARD_EPS
THREAT_MODELS = tuple(STANDARD_EPS)  # the threat models RobustBench has boards for
IKL_MODEL_PREFIX = "Cui2023Decoupled"
FIX_FILE = "fix or remove that file"
Folder = str | os.PathLike[str]

COLUMNS = [
    "model_id", "dataset", "threat_model", "clean_acc", "autoattack_acc", "external", "reported",
    "best_known", "additional_data", "number_forward_passes", "eps", "architecture", "venue", "paper_title",
    "authors", "link", "footnote", "unreliable", "ikl_at",
]  # fmt: skip


class LeaderboardError(IklZooError):
    """A leaderboard source, record or request that cannot be used as given."""


@dataclass(frozen=True)
class Reference:
    """Published figures for one board, and where they came from (shown under every table)."""

    table: pd.DataFrame
    source: str


def check_board(dataset: str, threat_model: str) -> None:
    """Refuse, in one line naming the choices, a board that RobustBench does not have."""
    for what, value, known in (("dataset", dataset, DATASETS), ("threat model", threat_model, THREAT_MODELS)):
        if value not in known:
            raise LeaderboardError(f"unknown {what} {value!r}", fix=f"choose one of {', '.join(known)}")


def robustbench_name(model_id: str) -> str:
    """The RobustBench id behind an ikl-zoo model id (``robustbench:<id>`` peers keep their id)."""
    return model_id.removeprefix(ROBUSTBENCH_PREFIX)


def is_ikl_at(model_id: str, paper_title: str = "") -> bool:
    """Whether a model is one of the paper's: by its title, or by RobustBench's Cui2023Decoupled id."""
    return paper_title.strip() == PAPER_TITLE or robustbench_name(model_id).startswith(IKL_MODEL_PREFIX)


def is_standard_eps(eps: float, threat_model: str) -> bool:
    """Whether ``eps`` is the board's budget (8/255 Linf, 0.5 L2): only then are its figures comparable."""
    return same_eps(eps, STANDARD_EPS[threat_model])


def load_reference(dataset: str, threat_model: str, *, robustbench_dir: Folder | None = None) -> Reference:
    """Published figures for one board: the shipped copy, or ``model_info/`` of a RobustBench checkout."""
    check_board(dataset, threat_model)
    if robustbench_dir is None:
        table = _shipped_table().query("dataset == @dataset and threat_model == @threat_model")
        return Reference(table.reset_index(drop=True), shipped.REFERENCE_SOURCE)
    root = Path(robustbench_dir)
    if not root.is_dir():
        raise LeaderboardError(f"--robustbench-dir {root} is not a folder", fix="pass a RobustBench checkout")
    folder = (root / "model_info" if (root / "model_info").is_dir() else root) / dataset / threat_model
    if not folder.is_dir():
        fix = "pass the root of a RobustBench checkout (the folder holding model_info/)"
        raise LeaderboardError(f"{folder} does not exist", fix=fix)
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise LeaderboardError(f"cannot read {path}: {error}", fix=FIX_FILE) from None
        if not isinstance(info, dict):
            raise LeaderboardError(f"{path} is not a RobustBench model_info object", fix=FIX_FILE)
        rows.append(_row_from_model_info(path.stem, info, dataset, threat_model, path))
    source = f"RobustBench model_info/ in {folder.parent.parent}"
    return Reference(pd.DataFrame(rows, columns=COLUMNS), source)


def reference_entry(model_id: str, *, dataset: str, threat_model: str) -> dict[str, Any] | None:
    """The shipped published row of a RobustBench model (metadata for records and submissions), if any."""
    table, key = _shipped_table(), [dataset, threat_model, robustbench_name(model_id)]
    match = table[table[["dataset", "threat_model", "model_id"]].eq(key).all(axis="columns")]
    return None if match.empty else json.loads(match.to_json(orient="records"))[0]  # NaN as None


@cache
def _shipped_table() -> pd.DataFrame:
    rows = shipped.shipped_leaderboard().to_dict(orient="records")
    rows = [_row_from_model_info(row["name"], {**row, "name": row["paper_title"]}, row["dataset"],
                                 row["threat_model"], shipped.REFERENCE_FILE) for row in rows]
    return pd.DataFrame(rows, columns=COLUMNS)


def _row_from_model_info(model_id: str, info: dict[str, Any], dataset: str, threat_model: str, origin: Any
                         ) -> dict[str, Any]:
    def percent(key: str) -> float:
        value = info.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return math.nan
        try:
            return float(value)
        except (TypeError, ValueError):
            raise LeaderboardError(f"{origin}: {key} of {model_id} is {value!r}, not a number") from None

    figures = {key: percent(key) for key in ("clean_acc", "autoattack_acc", "external", "reported")}
    if math.isnan(figures["clean_acc"]) or math.isnan(figures["autoattack_acc"]):
        raise LeaderboardError(f"{origin}: {model_id} lacks clean_acc or autoattack_acc", fix=FIX_FILE)
    title, passes = str(info.get("name") or ""), info.get("number_forward_passes")
    figures["best_known"] = figures["autoattack_acc" if math.isnan(figures["external"]) else "external"]
    return {
        "model_id": model_id, "dataset": dataset, "threat_model": threat_model, **figures,
        "additional_data": _flag(info.get("additional_data")), "unreliable": _flag(info.get("unreliable")),
        "number_forward_passes": int(passes) if passes not in (None, "") else 1,
        **{key: str(info.get(key) or "") for key in ("eps", "architecture", "authors", "link", "footnote")},
        "venue": str(info.get("venue") or "Unpublished"), "paper_title": title,
        "ikl_at": is_ikl_at(model_id, title),
    }  # fmt: skip


def _flag(value: Any) -> bool:
    """RobustBench's flags: JSON booleans, or text such as "True" in older files; anything else is no."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "y")


@dataclass(frozen=True)
class ModelMetadata:
    """What RobustBench says about a model beyond its accuracies; blank for models it does not list."""

    link: str = ""
    paper_title: str = ""
    authors: str = ""
    additional_data: bool | None = None
    number_forward_passes: int = 1
    venue: str = ""
    architecture: str = ""
    footnote: str = ""
    reported: float | None = None  # robust accuracy (percent) the paper reported
    is_ikl_at: bool = False
    published: dict[str, Any] | None = None  # percent clean_acc, autoattack_acc (external) and their source


def model_metadata(model_id: str, *, dataset: str, threat_model: str, published: dict | None = None
                   ) -> ModelMetadata:
    """RobustBench's published row when it lists the model, else what ikl-zoo's registry knows."""
    row = reference_entry(model_id, dataset=dataset, threat_model=threat_model)
    if row is not None:
        copied = {key: row[key] for key in ModelMetadata.__dataclass_fields__ if key in row}
        copied |= {"is_ikl_at": row["ikl_at"], "published": shipped.published_from_row(row)}
        return ModelMetadata(**copied)
    entry = registry_entry(model_id, dataset)
    if entry is None:
        return ModelMetadata(is_ikl_at=is_ikl_at(model_id), published=published)
    published = entry.published.to_dict() if entry.published is not None and published is None else published
    paper = {"link": PAPER_URL, "paper_title": PAPER_TITLE, "authors": PAPER_AUTHORS, "venue": PAPER_VENUE}
    return ModelMetadata(
        **(paper if entry.is_ikl_at else {}), footnote=entry.note if entry.is_ikl_at else "",
        additional_data=entry.additional_data, architecture=entry.architecture, is_ikl_at=entry.is_ikl_at,
        published=published,
    )  # fmt: skip


def registry_entry(model_id: str, dataset: str) -> ModelEntry | None:
    """The registry's entry for a model, or None (a user's, a RobustBench peer); imported late (torch)."""
    from ikl_zoo.zoo.registry import get_model_entry

    try:
        return get_model_entry(robustbench_name(model_id), dataset=dataset)
    except UnknownModelError:
        return None
