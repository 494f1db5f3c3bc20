"""The registry as a table: what ``ikl-zoo list`` prints and what documentation can embed."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from ikl_zoo.threat import format_eps
from ikl_zoo.zoo.registry import list_models

COLUMNS = ("dataset", "id", "architecture", "threat", "clean %", "AutoAttack %", "note")


def models_table(*, dataset: str | None = None) -> pd.DataFrame:
    """One row per registered model with its published clean and AutoAttack accuracy (percent), if any."""
    rows = [(entry.dataset, entry.model_id, entry.architecture,
             f"{entry.threat_model} {format_eps(entry.eps, entry.threat_model)}",  # "Linf 8/255"
             entry.published.clean_acc if entry.published else None,
             entry.published.autoattack_acc if entry.published else None,
             entry.note if entry.is_ikl_at else (entry.note or "demo only: not IKL-AT"))
            for entry in list_models(dataset=dataset)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_models_table(table: pd.DataFrame, *, tablefmt: str = "github") -> str:
    """The table as text; missing figures show as ``-``."""
    cells = table.astype(object).where(table.notna(), None)
    return tabulate(cells, headers="keys", tablefmt=tablefmt, showindex=False, missingval="-", floatfmt=".2f")
