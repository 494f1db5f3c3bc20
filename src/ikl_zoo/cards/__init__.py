"""Model cards and RobustBench submissions, imported on first use: ``import ikl_zoo.cards`` stays light."""

from ikl_zoo import lazy_getattr

_LAZY = {"build_model_card": "ikl_zoo.cards.model_card", "write_model_card": "ikl_zoo.cards.model_card",
         "write_registry_cards": "ikl_zoo.cards.model_card", "build_submission": "ikl_zoo.cards.submission",
         "write_submission": "ikl_zoo.cards.submission"}
__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
