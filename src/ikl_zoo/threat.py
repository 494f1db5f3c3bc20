"""The vocabulary every layer shares: datasets, norms, how a budget is written, Hub model names, a zoo
folder's files."""

from __future__ import annotations

import math

DATASETS = ("cifar10", "cifar100")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
NORMS = ("Linf", "L2", "L1")
HF_HUB_PREFIX = "hf-hub:"
"""``hf-hub:ORG/NAME[@REVISION]`` names a zoo folder on the Hub wherever ikl-zoo takes a model."""
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"
"""A zoo folder's weights and its ``ModelSpec``, as timm's Hub repositories name them."""


def format_eps(eps: float, norm: str = "Linf") -> str:
    """``8/255`` for Linf budgets on the 1/255 grid (how the field writes them), else the number."""
    steps = eps * 255
    if norm == "Linf" and abs(steps - round(steps)) < 1e-6 and round(steps) > 0:
        return f"{round(steps)}/255"
    return f"{eps:g}"


def same_eps(a: float, b: float) -> bool:
    """One budget, however it was written (8/255 typed, 0.0313725... read back from JSON)."""
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-7)


def parse_eps(text: str) -> float:
    """``"8/255"`` or ``"0.5"`` as a number; ``ValueError`` naming the expected form otherwise."""
    numerator, _, denominator = text.partition("/")
    try:
        eps = float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a number or a fraction such as 8/255") from None
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{text!r} must be a positive finite number, e.g. 8/255")
    return eps
