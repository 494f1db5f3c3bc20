"""Zoo fixtures: small registered models, so that loading, download and conversion run in milliseconds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ikl_zoo.threat import DATASETS, NUM_CLASSES
from ikl_zoo.zoo import registry
from ikl_zoo.zoo.spec import ModelSpec

TINY_ID = "tiny-wrn"
TINY_GDRIVE_ID = "1-tinyDriveIdForTests"


def tiny_entry_for(dataset: str, *, sha256: str | None = None) -> ModelSpec:
    return ModelSpec(
        model_id=TINY_ID,
        dataset=dataset,
        architecture_class="WideResNet",
        arguments={"depth": 10, "widen_factor": 1, "num_classes": NUM_CLASSES[dataset]},
        architecture="WideResNet-10-1",
        hub_repo_name=f"{TINY_ID}-{dataset}",
        gdrive_id=TINY_GDRIVE_ID,
        sha256=sha256,
        training="test fixture",
    )


@pytest.fixture
def tiny_entry(monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """A WRN-10-1 registered as ``tiny-wrn`` for CIFAR-10 (and CIFAR-100) for the duration of a test."""
    for dataset in DATASETS:
        entry = tiny_entry_for(dataset)
        monkeypatch.setitem(registry._REGISTRY, entry.key, entry)
    return registry.get_model_entry(TINY_ID, dataset="cifar10")


@pytest.fixture
def pin_tiny_sha256(monkeypatch: pytest.MonkeyPatch, tiny_entry: ModelSpec):
    """Give the CIFAR-10 tiny entry a registry sha256, as published entries have."""

    def pin(sha256: str) -> ModelSpec:
        entry = dataclasses.replace(tiny_entry, sha256=sha256)
        monkeypatch.setitem(registry._REGISTRY, entry.key, entry)
        return entry

    return pin


@pytest.fixture
def tiny_model(tiny_entry: ModelSpec) -> torch.nn.Module:
    """A tiny-wrn with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = tiny_entry.create()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
