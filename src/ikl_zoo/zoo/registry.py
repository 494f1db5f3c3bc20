"""The model registry: one entry per (dataset, model id), timm-style.

A model is a registered constructor plus a pretrained config naming where its weights live (Hub repo,
filename, revision, sha256 when known, the original Google Drive id) and the figures published for it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ikl_zoo.errors import UnknownModelError

DATASETS = ("cifar10", "cifar100")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
DEFAULT_HUB_NAMESPACE = "ikl-zoo"


@dataclass(frozen=True)
class PretrainedConfig:
    """Where a model's weights live, in the order they are tried."""

    hub_repo_name: str | None = None
    """Repository name on the Hugging Face Hub; the namespace comes from ``IKL_ZOO_HUB_NAMESPACE``."""
    filename: str = "model.safetensors"
    revision: str = "main"
    sha256: str | None = None
    """Checksum of ``filename`` (the converted safetensors) when known."""
    gdrive_id: str | None = None
    """Original host of the authors' PyTorch checkpoint (RobustBench's model zoo)."""
    package_file: str | None = None
    """``"package:relative/path"``: weights shipped inside an installed package (the demo model)."""
    package_file_sha256: str | None = None

    def hub_repo_id(self, namespace: str | None = None) -> str | None:
        if self.hub_repo_name is None:
            return None
        namespace = namespace or os.environ.get("IKL_ZOO_HUB_NAMESPACE") or DEFAULT_HUB_NAMESPACE
        return f"{namespace}/{self.hub_repo_name}"


@dataclass(frozen=True)
class PublishedFigures:
    """The accuracies a model's authors or RobustBench published, the yardstick for a measurement."""

    clean_acc: float
    """Clean accuracy in percent on the full test set."""
    autoattack_acc: float
    """AutoAttack (standard) robust accuracy in percent."""
    source: str

    def to_dict(self) -> dict[str, float | str]:
        """The shape results, records and cards carry published figures in."""
        return {"clean_acc": self.clean_acc, "autoattack_acc": self.autoattack_acc, "source": self.source}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: how to build it, where its weights are and what was published for it."""

    model_id: str
    dataset: str
    constructor: Callable[[], nn.Module]
    architecture: str
    threat_model: str = "Linf"
    eps: float = 8 / 255
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)
    published: PublishedFigures | None = None
    training: str = ""
    additional_data: bool = False
    note: str = ""
    is_ikl_at: bool = True
    config: dict = field(default_factory=dict)
    """Constructor arguments, written to ``config.json`` so a Hub folder says what it holds."""

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset, self.model_id)

    def create(self) -> nn.Module:
        return self.constructor()


_REGISTRY: dict[tuple[str, str], ModelEntry] = {}


def register_model(
    model_id: str, *, dataset: str, architecture: str, **entry_fields: object
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator: register a zero-argument constructor under ``(dataset, model_id)``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")

    def decorate(constructor: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        entry = ModelEntry(
            model_id=model_id, dataset=dataset, constructor=constructor, architecture=architecture,
            **entry_fields,  # type: ignore[arg-type]
        )
        if entry.key in _REGISTRY:
            raise ValueError(f"model {model_id!r} is already registered for {dataset}")
        _REGISTRY[entry.key] = entry
        return constructor

    return decorate


def list_models(*, dataset: str | None = None) -> list[ModelEntry]:
    """Registered models, in registration order, optionally for one dataset."""
    _ensure_builtin_models()
    return [entry for entry in _REGISTRY.values() if dataset is None or entry.dataset == dataset]


def is_registered(model_id: str, *, dataset: str) -> bool:
    """Whether the registry holds ``model_id`` for ``dataset`` (anything else is a folder or an error)."""
    _ensure_builtin_models()
    return (dataset, model_id) in _REGISTRY


def get_model_entry(model_id: str, *, dataset: str = "cifar10") -> ModelEntry:
    """Look up a model; an unknown id raises with close names and the other dataset where it exists."""
    _ensure_builtin_models()
    if dataset not in DATASETS:
        raise UnknownModelError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    entry = _REGISTRY.get((dataset, model_id))
    if entry is not None:
        return entry
    elsewhere = [ds for ds in DATASETS if (ds, model_id) in _REGISTRY]
    if elsewhere:
        raise UnknownModelError(
            f"model {model_id!r} is not registered for {dataset}; it exists for {', '.join(elsewhere)}: "
            f"pass --dataset {elsewhere[0]}"
        )
    known = [mid for (ds, mid) in _REGISTRY if ds == dataset]
    close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `ikl-zoo list` to see the models"
    raise UnknownModelError(f"unknown model {model_id!r} for {dataset}: {hint}")


def create_model(model_id: str, *, dataset: str = "cifar10") -> nn.Module:
    """A freshly initialised (untrained) network of the registered architecture."""
    return get_model_entry(model_id, dataset=dataset).create()


def _ensure_builtin_models() -> None:
    # Importing the module runs its @register_model decorators once.
    from ikl_zoo.zoo import models  # noqa: F401
