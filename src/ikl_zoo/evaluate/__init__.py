"""Clean and AutoAttack robust accuracy, RobustBench-exact, chunked, resumable and sharded."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "EvalResult": "ikl_zoo.evaluate.result",
    "evaluate": "ikl_zoo.evaluate.runner",
    "EvalSettings": "ikl_zoo.evaluate.settings",
    "ModelFacts": "ikl_zoo.evaluate.result",
    "DEFAULT_CHUNK_SIZE": "ikl_zoo.evaluate.settings",
    "DEFAULT_N_EXAMPLES": "ikl_zoo.evaluate.settings",
    "evaluate_model": "ikl_zoo.evaluate.run",
    "ModelRequest": "ikl_zoo.evaluate.run",
    "resolve_attacks": "ikl_zoo.evaluate.attacks",
    "format_summary": "ikl_zoo.evaluate.summary",
    "load_robustbench_model": "ikl_zoo.evaluate.sources",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ikl_zoo.evaluate' has no attribute {name!r}")
