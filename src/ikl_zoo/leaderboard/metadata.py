"""What is known about a model beyond its measured accuracies: RobustBench's row, or ikl-zoo's registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ikl_zoo.errors import UnknownModelError
from ikl_zoo.leaderboard.reference import is_ikl_at, reference_entry, robustbench_name
from ikl_zoo.paper import PAPER_AUTHORS, PAPER_TITLE, PAPER_URL, PAPER_VENUE
from ikl_zoo.reference import published_from_row

if TYPE_CHECKING:
    from ikl_zoo.zoo.registry import ModelEntry


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
        return ModelMetadata(**copied | {"is_ikl_at": row["ikl_at"], "published": published_from_row(row)})
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
