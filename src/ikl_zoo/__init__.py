"""ikl-zoo: the IKL-AT robust models, loaded from the Hub, evaluated the way RobustBench does.
Heavy pieces are imported on first use so that ``import ikl_zoo`` stays quick and quiet."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {"load_model": "ikl_zoo.zoo.loading", "list_models": "ikl_zoo.zoo.registry",
         "get_model_entry": "ikl_zoo.zoo.registry", "create_model": "ikl_zoo.zoo.registry",
         "IklZooError": "ikl_zoo.errors"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ikl_zoo' has no attribute {name!r}")
