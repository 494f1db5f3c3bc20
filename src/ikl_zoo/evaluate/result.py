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
"""A result's attributes that are its settings' (``result.threat_model`` is ``result.settings.norm``);
``result.json`` shows them at its top level too, for readers that do not know ``settings``."""
_SHOWN = tuple(_FROM_SETTINGS)


@dataclass(frozen=True)
class ModelFacts:
    """What a result says about the model beside the settings: its name, published figures, provenance."""

    model_id: str | None = None
    """Default: the model's class name."""
    published: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Clean and robust accuracy of one model under one threat model, with everything needed to trust it.

    Accuracies are fractions in [0, 1]; ``per_attack`` maps each attack, in the order run, to the robust
    accuracy after it; ``robust_flags[i]`` says whether example i survived every attack.
    """

    model_id: str
    settings: EvalSettings
    attacks: list[str]
    """The attacks run, in order (the version's own unless it is custom)."""
    batch_size: int
    """The batch size the run ran at (the smallest, after an out-of-memory back-off of ``auto``)."""
    clean_acc: float
    robust_acc: float
    clean_flags: list[bool]
    robust_flags: list[bool]
    per_attack: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``total`` (attack time summed over chunks, ranks and resumed sessions), ``wall`` (the last
    session's wall clock), ``checks``, ``clean`` and one entry per attack."""
    model_passes: dict[str, int] = field(default_factory=dict)
    """Passes of the model over the whole run: ``forward`` and ``backward`` calls, and the images they
    carried (``forward_images``, ``backward_images``)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Versions of ikl-zoo, torch, pyautoattack; devices; checkpoint and weights sha256; data source and
    sha256; attack settings; start/end times."""
    published: dict[str, Any] | None = None
    """The registry's published figures for comparison, when the model has them and the threat model and
    version match: ``clean_acc`` and ``autoattack_acc`` in percent, and their ``source``."""
    warnings: list[str] = field(default_factory=list)
    """AutoAttack's own warnings (randomised or dynamic defence, softmax output, Square finding extra
    points, ...) and the evaluator's (out-of-memory back-offs), each once."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["settings"]
        shown = {name: getattr(self, name) for name in _SHOWN}
        return {"format": RESULT_FORMAT, **data, **shown, "settings": self.settings.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """A result this version wrote; one of an earlier version is refused with the way to redo it, and
        one whose top-level summary contradicts its settings (edited by hand) is refused too."""
        if data.get("format") != RESULT_FORMAT:
            if "model_id" not in data:
                raise ValueError(f"no model_id and no format {RESULT_FORMAT}")
            raise EvaluationError(
                "a result of an earlier ikl-zoo version",
                fix="re-run the evaluation (`ikl-zoo eval`), then `ikl-zoo record --overwrite` the new "
                "result.json",
            )
        values = {key: value for key, value in data.items() if key not in (*_SHOWN, "format", "settings")}
        result = cls(settings=EvalSettings.from_dict(data["settings"]), **values)
        for name in _SHOWN:
            if name in data and data[name] != getattr(result, name):
                raise ValueError(f"{name} is {data[name]!r} but the settings say {getattr(result, name)!r}")
        return result

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
