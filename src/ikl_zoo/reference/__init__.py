"""RobustBench's published CIFAR leaderboards as shipped with ikl-zoo (``README.md`` here says how).
The evaluator reads a peer's published figures from here, the leaderboard its whole board: both sit
downstream of this data, so neither imports the other."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

REFERENCE_FILE = "robustbench-cifar-leaderboard.csv"
REFERENCE_COMMIT = "78fcc9e"
REFERENCE_DATE = "2025-03-31"
REFERENCE_SOURCE = (f"RobustBench model_info/ at commit {REFERENCE_COMMIT} ({REFERENCE_DATE}), "
                    "shipped with ikl-zoo")
STANDARD_EPS = {"Linf": 8 / 255, "L2": 0.5}
"""The budgets of RobustBench's CIFAR leaderboards (older Linf entries write 8/255 as 0.031)."""


@cache
def shipped_leaderboard() -> pd.DataFrame:
    """The shipped rows as RobustBench's model_info files give them: one row per model and board, as text."""
    with resources.files(__name__).joinpath(REFERENCE_FILE).open(encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


def published_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The published figures of a leaderboard row, in the shape results, records and cards carry them."""
    figures = {"clean_acc": row["clean_acc"], "autoattack_acc": row["autoattack_acc"],
               "source": "RobustBench leaderboard"}
    return figures if row["external"] is None else {**figures, "external": row["external"]}


def published_figures(name: str, *, dataset: str, threat_model: str) -> dict[str, Any] | None:
    """Clean and AutoAttack accuracy (percent) RobustBench publishes for ``name``; None if unlisted."""
    table = shipped_leaderboard()
    match = table.query("name == @name and dataset == @dataset and threat_model == @threat_model")
    if match.empty:
        return None
    row = match.iloc[0]
    return published_from_row({key: float(row[key]) if row[key] else None
                               for key in ("clean_acc", "autoattack_acc", "external")})
