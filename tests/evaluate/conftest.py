"""Shared fixtures: the real sample images, a tiny WideResNet fitted to them, direct AutoAttack calls.

The tiny network (WRN-10-1, fitted in a second) is partly robust at eps 4/255 on the 20 images, so the
plumbing tests see non-trivial flags at a fraction of the demo ResNet-18's CPU cost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

from ikl_zoo.data import load_test_examples, write_sample_data_dir
from ikl_zoo.zoo.architectures import WideResNet
from ikl_zoo.zoo.checkpoints import save_zoo_folder

TINY_EPS = 4 / 255
FAST_APGD = {"apgd": {"n_iter": 10, "n_restarts": 1}}
"""Custom-version options that keep APGD-CE at a fraction of a second on the tiny network."""


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    return write_sample_data_dir(tmp_path_factory.mktemp("data"), datasets=("cifar10",))


@pytest.fixture(scope="session")
def cifar10_sample(sample_dir) -> tuple[torch.Tensor, torch.Tensor]:
    return load_test_examples("cifar10", data_dir=sample_dir, n_examples=20)


def _fit_tiny_model(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        # Label smoothing keeps the logits unsaturated, so gradient attacks get a signal.
        torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.5).backward()
        optimizer.step()
    torch.random.set_rng_state(generator_state)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model(cifar10_sample) -> torch.nn.Module:
    model = _fit_tiny_model(*cifar10_sample)
    x, y = cifar10_sample
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all(), "the tiny model should fit the 20 sample images"
    return model


@pytest.fixture(scope="session")
def tiny_folder(tiny_model, tmp_path_factory) -> Path:
    config = {
        "model_id": "tiny-wrn-10-1",
        "dataset": "cifar10",
        "threat_model": "Linf",
        "eps": TINY_EPS,
        "architecture": {
            "architecture_class": "WideResNet",
            "depth": 10,
            "widen_factor": 1,
            "num_classes": 10,
        },
    }
    return save_zoo_folder(
        tiny_model, tmp_path_factory.mktemp("tiny") / "tiny-wrn-10-1", entry_or_config=config
    )


def direct_autoattack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    seed: int,
    batch_size: int,
    norm: str = "Linf",
    version: str = "custom",
    attacks: list[str] | None = None,
    apgd: dict | None = None,
    apgd_targeted: dict | None = None,
) -> list[bool]:
    """Robust flags from pyautoattack itself; custom APGD settings are made by constructing the attack
    objects the way AutoAttack's __init__ does, independently of ikl-zoo's option handling."""
    adversary = AutoAttack(
        model, norm=norm, eps=eps, version=version, attacks=attacks, seed=seed, device="cpu"
    )
    common = dict(
        verbose=False,
        eps=eps,
        norm=norm,
        eot_iter=1,
        rho=0.75,
        seed=seed,
        device="cpu",
        logger=adversary.logger,
    )
    if apgd is not None:
        adversary.apgd = APGDAttack(model, **{"n_restarts": 5, "n_iter": 100, **common, **apgd})
    if apgd_targeted is not None:
        adversary.apgd_targeted = APGDAttack_targeted(
            model, **{"n_restarts": 1, "n_iter": 100, "n_target_classes": 9, **common, **apgd_targeted}
        )
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    return (y_adv == y).tolist()
