"""``EvalSettings``: what an evaluation is, as one frozen object, built once and passed whole."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ikl_zoo.errors import EvaluationError
from ikl_zoo.threat import DATASETS, NORMS, format_eps

VERSIONS = ("standard", "plus", "rand", "custom")
PRECISIONS = ("pytorch", "ieee", "bf16")
"""``pytorch``: torch's settings as they are, a direct AutoAttack call's (TF32 convolutions on recent GPUs);
``ieee``: strict fp32 everywhere, the same flags on every GPU generation; ``bf16``: bf16 autocast, a fast
screen that is never a leaderboard number."""
DEFAULT_CHUNK_SIZE = 500
"""Examples per chunk, the unit of resumption and sharding: about an H100 minute for a WRN-28-10."""
DEFAULT_N_EXAMPLES = 10_000
"""RobustBench evaluates on the full CIFAR test split."""


@dataclass(frozen=True)
class EvalSettings:
    """One evaluation's settings; the ones that change a flag are its ``identity``."""

    eps: float = 8 / 255
    norm: str = "Linf"
    version: str = "standard"
    attacks: tuple[str, ...] | None = None
    """The custom version's attacks, as given; the version fixes them otherwise."""
    attack_options: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """The custom version's settings, e.g. ``{"apgd": {"n_iter": 10}}``."""
    seed: int = 0
    batch_size: int | str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    dataset: str = "cifar10"
    n_examples: int = DEFAULT_N_EXAMPLES
    precision: str = "pytorch"
    device: str | None = "auto"
    """``auto``: this process's GPU if any, else the CPU; ``None``: wherever the model's weights are."""
    compile: bool = False
    channels_last: bool | None = None
    """``None``: on for GPUs, off for CPUs."""

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("norm", self.norm, NORMS)
        check_choice("AutoAttack version", self.version, VERSIONS)
        check_choice("precision", self.precision, PRECISIONS)
        _check_eps(self.eps, self.norm)
        for name in ("n_examples", "chunk_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise EvaluationError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise EvaluationError(f"batch size must be a positive integer or 'auto', got {self.batch_size!r}")
        if self.attacks is not None:
            object.__setattr__(self, "attacks", tuple(self.attacks))
        options = {name: dict(values) for name, values in (self.attack_options or {}).items()}
        object.__setattr__(self, "attack_options", options)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_examples // self.chunk_size)

    @property
    def eps_text(self) -> str:
        return format_eps(self.eps, self.norm)

    def identity(self) -> dict[str, Any]:
        """The settings a flag depends on: a resumed run must have the same. The device, its memory layout
        and compilation may change between sessions; an auto batch size is resolved and kept apart."""
        return {k: v for k, v in self.to_dict().items() if k not in ("device", "compile", "channels_last")}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attacks": list(self.attacks) if self.attacks is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalSettings:
        """Settings read back from a run directory or a result; an unknown key names the field."""
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            fix = f"use one of {', '.join(sorted(known))}"
            raise EvaluationError(f"unknown evaluation setting {unknown[0]!r}", fix=fix)
        return cls(**dict(data))


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EvaluationError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")


def _check_eps(eps: float, norm: str) -> None:
    """A positive, finite budget; an Linf one within the [0, 1] image range (8 almost always means 8/255)."""
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise EvaluationError(f"eps must be a positive number, got {eps!r}")
    if norm == "Linf" and eps > 1:
        pixel_levels = float(eps).is_integer() and eps <= 255
        meant = f"did you mean {eps:g}/255?" if pixel_levels else "give a fraction, e.g. 8/255"
        raise EvaluationError(f"Linf eps {eps:g} exceeds the [0, 1] image range: {meant}")
