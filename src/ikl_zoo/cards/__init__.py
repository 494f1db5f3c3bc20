"""Model cards and RobustBench submissions, imported on first use: ``import ikl_zoo.cards`` stays light."""

from importlib import import_module

_LAZY = {"build_model_card": "ikl_zoo.cards.model_card", "write_model_card": "ikl_zoo.cards.model_card",
         "write_registry_cards": "ikl_zoo.cards.model_card", "build_submission": "ikl_zoo.cards.submission",
         "write_submission": "ikl_zoo.cards.submission"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ikl_zoo.cards' has no attribute {name!r}")
