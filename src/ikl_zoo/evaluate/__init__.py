"""Clean and AutoAttack robust accuracy, RobustBench-exact, chunked, resumable and sharded."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_MODULES = {
    "result": ("EvalResult", "ModelFacts"), "run": ("evaluate_model", "ModelRequest"),
    "settings": ("EvalSettings", "DEFAULT_CHUNK_SIZE", "DEFAULT_N_EXAMPLES"), "runner": ("evaluate",),
    "attacks": ("resolve_attacks",), "summary": ("format_summary",), "sources": ("load_robustbench_model",),
}
_LAZY = {name: f"ikl_zoo.evaluate.{module}" for module, names in _MODULES.items() for name in names}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ikl_zoo.evaluate' has no attribute {name!r}")
