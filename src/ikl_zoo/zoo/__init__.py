"""Architectures, the model registry and checkpoint loading."""

from ikl_zoo.zoo.registry import (
    ModelEntry,
    PretrainedConfig,
    PublishedFigures,
    create_model,
    get_model_entry,
    list_models,
    register_model,
)

__all__ = [
    "ModelEntry",
    "PretrainedConfig",
    "PublishedFigures",
    "create_model",
    "get_model_entry",
    "list_models",
    "register_model",
]
