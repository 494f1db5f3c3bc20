"""``ModelSpec``: what a model is. A registry entry and a zoo folder's config.json are the same object.
config.json holds what the weights are: ``{"ikl_zoo_version", "model_id", "dataset", "threat_model", "eps",
"architecture": {"architecture_class", **constructor arguments}, "sha256", "source": {...} (converted),
"training": {...} (trained), **extra}``. What the registry knows about published weights stays out of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ikl_zoo import __version__
from ikl_zoo.errors import CheckpointError, first_line
from ikl_zoo.threat import DATASETS, NORMS, NUM_CLASSES
from ikl_zoo.zoo import architectures

REWRITE_FIX = "rewrite it with `ikl-zoo convert`"
BUILDERS = {name: getattr(architectures, name) for name in ("WideResNet", "DMWideResNet", "CifarResNet")}
OWN_KEYS = ("ikl_zoo_version", "model_id", "dataset", "threat_model", "eps", "architecture", "sha256",
            "source", "training")  # config.json's own keys, in their order; any other is ``extra``


@dataclass(frozen=True)
class PublishedFigures:
    """The accuracies a model's authors or RobustBench published, the yardstick for a measurement."""

    clean_acc: float  # percent, full test set
    autoattack_acc: float  # percent, AutoAttack standard
    source: str
    to_dict = dataclasses.asdict  # the figures as JSON data


@dataclass(frozen=True)
class ModelSpec:
    """A model: how to build it, what its weights are and, for registry entries, where they are published."""

    model_id: str
    dataset: str
    architecture_class: str
    arguments: Mapping[str, Any]  # constructor keyword arguments, as JSON data (tuples become lists)
    threat_model: str = "Linf"
    eps: float = 8 / 255
    sha256: str | None = None  # of the weights file, when known
    source: Mapping[str, Any] | None = None  # the checkpoint converted into these weights, and its sha256
    training_facts: Mapping[str, Any] | None = None  # config.json's "training": recipe and run
    extra: Mapping[str, Any] = field(default_factory=dict)  # other config.json keys, kept as they are
    ikl_zoo_version: str = __version__
    # Registry facts: what was published for the model and where its weights live.
    architecture: str = ""  # display name (``WideResNet-34-10``); the class name when not given
    published: PublishedFigures | None = None
    hub_repo_name: str | None = None  # the Hub namespace comes from IKL_ZOO_HUB_NAMESPACE
    revision: str = "main"
    gdrive_id: str | None = None  # the authors' PyTorch checkpoint (RobustBench's model zoo)
    package_file: str | None = None  # "package:relative/path": weights an installed package ships
    package_file_sha256: str | None = None
    training: str = ""  # how the published weights were trained, in words
    note: str = ""
    is_ikl_at: bool = True
    robust: bool = True  # False: not adversarially trained, so its card claims no robustness
    additional_data: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", json.loads(json.dumps(dict(self.arguments))))
        if not self.architecture:
            object.__setattr__(self, "architecture", self.architecture_class)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def config(self) -> dict[str, Any]:
        """config.json's ``architecture`` object: ``{"architecture_class": ..., **arguments}``."""
        return {"architecture_class": self.architecture_class, **self.arguments}

    def hub_repo_id(self) -> str | None:
        namespace = os.environ.get("IKL_ZOO_HUB_NAMESPACE") or "ikl-zoo"
        return f"{namespace}/{self.hub_repo_name}" if self.hub_repo_name else None

    def build(self) -> nn.Module:
        """A freshly initialised (untrained) network of this architecture."""
        return model_from_config(self.config)

    def to_json(self) -> dict[str, Any]:
        """config.json of a zoo folder holding this model's weights."""
        own = {"ikl_zoo_version": self.ikl_zoo_version, "model_id": self.model_id, "dataset": self.dataset,
               "threat_model": self.threat_model, "eps": self.eps, "architecture": self.config,
               "sha256": self.sha256, "source": self.source, "training": self.training_facts}
        data = {key: own[key] for key in OWN_KEYS if own[key] is not None}
        return json.loads(json.dumps({**data, **self.extra}))

    @classmethod
    def from_json(cls, data: Any, *, where: str = "config.json") -> ModelSpec:
        """The spec a config.json describes; ``CheckpointError`` naming the field that is wrong."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{where} is not a JSON object", fix=REWRITE_FIX)
        for name, valid, expected in _FIELD_CHECKS:
            if name in _OPTIONAL_KEYS and data.get(name) is None:
                continue
            if name not in data:
                raise CheckpointError(f"{where}: field '{name}' is missing", fix=REWRITE_FIX)
            if not valid(data[name]):
                raise CheckpointError(f"{where}: field '{name}' must be {expected}, not {data[name]!r}",
                                      fix=REWRITE_FIX)
        architecture = dict(data["architecture"])
        return cls(data["model_id"], data["dataset"], architecture.pop("architecture_class"), architecture,
                   threat_model=data["threat_model"], eps=float(data["eps"]), sha256=data.get("sha256"),
                   source=data.get("source"), training_facts=data.get("training"),
                   extra={key: value for key, value in data.items() if key not in OWN_KEYS},
                   ikl_zoo_version=str(data.get("ikl_zoo_version", __version__)))


_FIELD_CHECKS = (
    ("model_id", lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    ("dataset", lambda v: v in DATASETS, f"one of {', '.join(DATASETS)}"),
    ("threat_model", lambda v: v in NORMS, f"one of {', '.join(NORMS)}"),
    ("eps", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
     "a positive number such as 8/255 = 0.0314"),
    ("architecture", lambda v: isinstance(v, Mapping) and isinstance(v.get("architecture_class"), str),
     'an object with "architecture_class"'),
    ("sha256", lambda v: isinstance(v, str) and bool(re.fullmatch(r"[0-9a-fA-F]{64}", v)), "64 hex digits"),
    ("source", lambda v: isinstance(v, Mapping), "an object"),
    ("training", lambda v: isinstance(v, Mapping), "an object"),
)
_OPTIONAL_KEYS = ("sha256", "source", "training")  # a folder being written has no sha256 yet


def model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """The untrained network of a config.json or of its ``"architecture"`` object itself."""
    arch = config.get("architecture", config)
    if not isinstance(arch, Mapping) or "architecture_class" not in arch:
        raise CheckpointError('config has no "architecture_class"', fix="pass a config.json")
    kwargs = {key: tuple(value) if isinstance(value, list) else value
              for key, value in arch.items() if key != "architecture_class"}
    name = arch["architecture_class"]
    if name not in BUILDERS:
        raise CheckpointError(f"unknown architecture_class {name!r}", fix=f"use one of {', '.join(BUILDERS)}")
    if isinstance(kwargs.get("activation"), str):
        activation = getattr(nn, kwargs["activation"], None)
        if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
            raise CheckpointError(f"unknown activation {kwargs['activation']!r}", fix="use e.g. SiLU or ReLU")
        kwargs["activation"] = activation
    missing = [key for key in ("mean", "std") if key not in kwargs]
    if name == "DMWideResNet" and missing:
        # The normalisation is in no checkpoint (non-persistent buffers): a default would be a silent guess.
        raise CheckpointError(f"config builds DMWideResNet without {' and '.join(missing)}",
                              fix="add the dataset's normalisation (e.g. \"mean\": [0.4914, 0.4822, 0.4465], "
                              '"std": [0.2471, 0.2435, 0.2616] for CIFAR-10)')
    try:
        return BUILDERS[name](**kwargs)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"config cannot build {name}: {first_line(error)}", fix=REWRITE_FIX) from None
