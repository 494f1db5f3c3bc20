"""The demo model: pyautoattack's plainly trained ResNet-18, on the 20 real CIFAR-10 images foolbox ships."""

from __future__ import annotations

import torch

from ikl_zoo.zoo.hub import package_file_weights
from ikl_zoo.zoo.loading import load_model
from ikl_zoo.zoo.registry import get_model_entry


def test_demo_resnet18_classifies_the_foolbox_cifar10_images(foolbox_cifar10) -> None:
    x, y = foolbox_cifar10
    assert x.shape == (20, 3, 32, 32) and x.min() >= 0.0 and x.max() <= 1.0
    assert len(set(y.tolist())) > 5, "labels come from the file names"
    model = load_model("demo-resnet18")
    assert not model.training
    with torch.no_grad():
        predictions = model(x).argmax(dim=1)
    assert predictions.tolist() == y.tolist()


def test_demo_model_is_the_verified_package_file_and_not_ikl_at() -> None:
    entry = get_model_entry("demo-resnet18")
    path = package_file_weights(entry).path
    assert path.parts[-2:] == ("examples", "model_test.pt")
    assert not entry.is_ikl_at and entry.published is None
    assert "not IKL-AT" in entry.note
