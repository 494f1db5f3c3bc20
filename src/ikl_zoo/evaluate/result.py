"""The result of one evaluation, as written to ``result.json`` and read by records, cards and submissions."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ikl_zoo.atomic import write_json_atomic


@dataclass
class EvalResult:
    """Clean and robust accuracy of one model under one threat model, with everything needed to trust it.

    Accuracies are fractions in [0, 1]; ``per_attack`` maps each attack, in the order run, to the robust
    accuracy after it; ``robust_flags[i]`` says whether example i survived every attack.
    """

    model_id: str
    dataset: str
    threat_model: str
    eps: float
    version: str
    attacks: list[str]
    n_examples: int
    seed: int
    batch_size: int
    chunk_size: int
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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        return cls(**data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: a reader never sees half a file, a crash never loses the previous one."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResult:
        return cls.from_dict(json.loads(Path(path).read_text()))
