"""The result of one evaluation, as written to ``result.json`` and read by records, cards and submissions."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from ikl_zoo.atomic import write_json_atomic
from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate.settings import EvalSettings

RESULT_FORMAT = 2
_FROM_SETTINGS = {
    "dataset": "dataset", "threat_model": "norm", "eps": "eps", "version": "version",
    "n_examples": "n_examples", "seed": "seed", "chunk_size": "chunk_size",
}
"""A result's attributes that are its settings' (``result.threat_model`` is ``result.settings.norm``)."""


@dataclass(frozen=True)
class ModelFacts:
    """What a result says about the model beside the settings: its name, published figures, provenance."""

    model_id: str | None = None
    """Default: the model's class name."""
    published: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Clean and robust accuracy (fractions) of one model under one threat model, and what backs them."""

    model_id: str
    settings: EvalSettings
    attacks: list[str]
    """The attacks run, in order (the version's own unless it is custom)."""
    batch_size: int
    """The batch size run at (the smallest, after out-of-memory back-offs of ``auto``)."""
    clean_acc: float
    robust_acc: float
    clean_flags: list[bool]
    robust_flags: list[bool]
    per_attack: dict[str, float]
    """Each attack, in the order run, to the robust accuracy after it."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``total`` (over chunks, ranks, runs), ``wall`` (the run that made the result),
    ``earlier_runs`` (the chunks it took from earlier runs), ``checks``, per stage."""
    model_passes: dict[str, int] = field(default_factory=dict)
    """``forward`` and ``backward`` calls over the run, and the images they carried (``*_images``)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Package versions, devices, weights and data sha256, attack settings, start/end times."""
    published: dict[str, Any] | None = None
    """The registry's figures (percent) when measured under this threat model and version."""
    warnings: list[str] = field(default_factory=list)
    """AutoAttack's warnings and the evaluator's (out-of-memory back-offs), each once."""

    def to_dict(self) -> dict[str, Any]:
        return {"format": RESULT_FORMAT, **asdict(self), "settings": self.settings.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """A result this version wrote; an earlier one is refused."""
        if data.get("format") != RESULT_FORMAT:
            if "model_id" not in data:
                raise ValueError(f"no model_id and no format {RESULT_FORMAT}")
            fix = "re-run the evaluation (`ikl-zoo eval`), then `ikl-zoo record --overwrite` its result.json"
            raise EvaluationError("a result of an earlier ikl-zoo version", fix=fix)
        values = {key: value for key, value in data.items() if key not in ("format", "settings")}
        return cls(settings=EvalSettings.from_dict(data["settings"]), **values)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: a reader never sees half a file, a crash never loses the previous one."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResult:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except EvaluationError as error:
            raise EvaluationError(f"{path}: {error.problem}", fix=error.fix) from None


for _name, _setting in _FROM_SETTINGS.items():
    setattr(EvalResult, _name, property(attrgetter(f"settings.{_setting}")))
