"""Shared fixtures: the real sample images, a tiny WideResNet fitted to them, direct AutoAttack calls.

The tiny network (WRN-10-1, fitted in a few seconds) is partly robust at eps 4/255 on the 20 images, so the
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
    """Fit in float64, then cast: float32 training depends on the thread count (with OMP_NUM_THREADS=1 it
    fitted only 19 of the 20 images); in float64 the summation order is lost in the cast to float32.
    One thread: on two busy cores a second one made the fit three times slower."""
    generator_state, n_threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    try:
        model = WideResNet(depth=10, widen_factor=1, num_classes=10).double()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(40):
            optimizer.zero_grad()
            # Label smoothing keeps the logits unsaturated, so gradient attacks get a signal.
            torch.nn.functional.cross_entropy(model(x.double()), y, label_smoothing=0.5).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(n_threads)
        torch.random.set_rng_state(generator_state)
    return model.float().eval()


@pytest.fixture(scope="session")
def tiny_model(cifar10_sample) -> torch.nn.Module:
    model = _fit_tiny_model(*cifar10_sample)
    x, y = cifar10_sample
    with torch.no_grad():
        logits = model(x)
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    runner_up = logits.scatter(1, y[:, None], float("-inf")).max(1).values
    # A margin, not just argmax: the flags must not hinge on float32 rounding in the clean pass.
    assert (true_logit - runner_up).min() > 0.3, "the tiny model should fit the 20 sample images"
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
    square: dict | None = None,
) -> list[bool]:
    """Robust flags from pyautoattack itself; custom APGD settings are made by constructing the attack
    objects the way AutoAttack's __init__ does, Square's by setting its attributes as AutoAttack's README
    does, independently of ikl-zoo's option handling."""
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
    for name, value in (square or {}).items():
        setattr(adversary.square, name, value)
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    return (y_adv == y).tolist()


@pytest.fixture(scope="session")
def linear_model() -> torch.nn.Module:
    """A linear classifier: run directory plumbing at a fraction of a network's cost."""
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    torch.nn.init.normal_(model[1].weight, std=0.05, generator=generator)
    torch.nn.init.zeros_(model[1].bias)
    return model.eval()
