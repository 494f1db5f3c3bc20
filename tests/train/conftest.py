"""A tiny learnable CIFAR-10-format training folder: each class is a flat colour plus pixel noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ikl_zoo.data import write_cifar_dir


def colour_split(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    palette = np.random.default_rng(1234).integers(0, 256, size=(10, 3))
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = palette[labels][:, None, None, :] + rng.normal(0, 20, size=(n, 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="session")
def colour_cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colour-cifar10")
    return write_cifar_dir(
        root, dataset="cifar10", train=colour_split(160, seed=0), test=colour_split(40, seed=1),
        source="test colours",
    )
