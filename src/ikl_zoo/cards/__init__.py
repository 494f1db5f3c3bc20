"""Hugging Face model cards and RobustBench submissions (imported on first use: ``import ikl_zoo.cards``
stays light)."""

from importlib import import_module

_HOMES = {name: "model_card" for name in ("build_model_card", "write_model_card", "write_registry_cards")}
_HOMES |= {name: "submission" for name in ("build_submission", "write_submission")}
__all__ = list(_HOMES)


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'ikl_zoo.cards' has no attribute {name!r}")
    return getattr(import_module(f"ikl_zoo.cards.{_HOMES[name]}"), name)
