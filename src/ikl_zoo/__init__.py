"""ikl-zoo: the IKL-AT robust models, loaded from the Hub, evaluated the way RobustBench does.
Heavy pieces are imported on first use so that ``import ikl_zoo`` stays quick and quiet."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {"load_model": "ikl_zoo.zoo.loading", "list_models": "ikl_zoo.zoo.registry",
         "get_model_entry": "ikl_zoo.zoo.registry", "create_model": "ikl_zoo.zoo.registry",
         "IklZooError": "ikl_zoo.errors"}

__all__ = ["__version__", *_LAZY]


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` (PEP 562) that imports each name of ``exports`` (name -> module) on first
    use, so that importing the package stays light."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_getattr(__name__, _LAZY)
