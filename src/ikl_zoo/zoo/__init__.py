"""Architectures, the model registry and checkpoint loading."""

from ikl_zoo.zoo.registry import ModelEntry, create_model, get_model_entry, list_models
from ikl_zoo.zoo.spec import ModelSpec, PublishedFigures

__all__ = ["ModelEntry", "ModelSpec", "PublishedFigures", "create_model", "get_model_entry", "list_models"]
