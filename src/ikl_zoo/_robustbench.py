"""Import robustbench 1.1.1 with the packages PyPI actually has:
robustbench does ``from autoattack import AutoAttack``, but PyPI's AutoAttack is ``pyautoattack``. We
alias the module before importing robustbench, and only ever use robustbench's model zoo and loaders,
never ``robustbench.eval.benchmark`` (it passes ``bs=`` which pyautoattack does not take)."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from types import ModuleType


def import_robustbench() -> ModuleType:
    """Return the ``robustbench`` module, importable even though ``autoattack`` is not on PyPI."""
    if "autoattack" not in sys.modules and importlib.util.find_spec("autoattack") is None:
        sys.modules["autoattack"] = importlib.import_module("pyautoattack")
    with warnings.catch_warnings():
        # robustbench imports pkg_resources, which warns about its own deprecation.
        warnings.filterwarnings("ignore", category=UserWarning, message=".*pkg_resources.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # timm (imported by robustbench.data) decorates with torch.jit.interface, deprecated in recent torch.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.interface.*")
        return importlib.import_module("robustbench")


def robustbench_model_dicts() -> dict:
    """``robustbench.model_zoo.model_dicts`` keyed by dataset name ("cifar10", ...) and threat model name."""
    import_robustbench()
    from robustbench.model_zoo import model_dicts

    return {dataset.value: {threat.value: models for threat, models in by_threat.items()}
            for dataset, by_threat in model_dicts.items()}

ROBUSTBENCH_PREFIX = "robustbench:"
"""``robustbench:<id>`` names a RobustBench model wherever ikl-zoo takes a model."""
