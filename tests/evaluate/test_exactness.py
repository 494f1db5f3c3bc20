"""ikl-zoo's flags are pyautoattack's flags: same seed, same batches, same attack settings."""

from __future__ import annotations

import pytest
import torch

from ikl_zoo import load_model
from ikl_zoo.evaluate import evaluate

from .conftest import FAST_APGD, TINY_EPS, direct_autoattack


@pytest.mark.slow
def test_demo_resnet18_flags_equal_a_direct_autoattack_call(cifar10_sample):
    """The demo ResNet-18 at eps 1/255 on the 20 real images: APGD-CE then APGD-T, two batches of 10.

    The attacks run with fewer iterations than AutoAttack's defaults (custom version) to fit a CPU test;
    the full standard suite is timed in benchmarks/bench_eval_cpu.py.
    """
    model = load_model("demo-resnet18")
    x, y = cifar10_sample
    apgd, apgd_targeted = {"n_iter": 5, "n_restarts": 1}, {"n_iter": 5, "n_target_classes": 2}
    result = evaluate(
        model,
        x,
        y,
        eps=1 / 255,
        version="custom",
        attacks=["apgd-ce", "apgd-t"],
        seed=0,
        batch_size=10,
        chunk_size=20,
        attack_options={"apgd": apgd, "apgd_targeted": apgd_targeted},
        progress=False,
    )
    expected = direct_autoattack(
        model,
        x,
        y,
        eps=1 / 255,
        seed=0,
        batch_size=10,
        attacks=["apgd-ce", "apgd-t"],
        apgd=apgd,
        apgd_targeted=apgd_targeted,
    )
    assert result.robust_flags == expected
    assert 0 < sum(expected) < 20, "the case must have non-trivial robustness to mean anything"
    assert result.clean_acc == 1.0
    assert result.per_attack["apgd-t"] == result.robust_acc <= result.per_attack["apgd-ce"] < 1.0
    assert result.provenance["max_perturbation"] <= 1 / 255 + 1e-6
    assert set(result.timings) >= {"total", "wall", "checks", "clean", "apgd-ce", "apgd-t"}


def test_chunk_k_is_autoattack_with_seed_plus_k(tiny_model, cifar10_sample):
    x, y = cifar10_sample
    result = evaluate(
        tiny_model,
        x,
        y,
        eps=TINY_EPS,
        version="custom",
        attacks=["apgd-ce"],
        attack_options=FAST_APGD,
        seed=7,
        batch_size=4,
        chunk_size=8,
        progress=False,
    )
    expected = []
    for k, start in enumerate(range(0, 20, 8)):
        expected += direct_autoattack(
            tiny_model,
            x[start : start + 8],
            y[start : start + 8],
            eps=TINY_EPS,
            seed=7 + k,
            batch_size=4,
            attacks=["apgd-ce"],
            apgd=FAST_APGD["apgd"],
        )
    assert result.robust_flags == expected
    assert 0 < sum(expected) < 20
    assert result.chunk_size == 8 and result.batch_size == 4


def test_l2_threat_model_is_plumbed(tiny_model, cifar10_sample):
    x, y = cifar10_sample
    result = evaluate(
        tiny_model,
        x,
        y,
        eps=0.25,
        norm="L2",
        version="custom",
        attacks=["apgd-ce"],
        attack_options=FAST_APGD,
        seed=0,
        batch_size=20,
        chunk_size=20,
        progress=False,
    )
    expected = direct_autoattack(
        tiny_model,
        x,
        y,
        eps=0.25,
        norm="L2",
        seed=0,
        batch_size=20,
        attacks=["apgd-ce"],
        apgd=FAST_APGD["apgd"],
    )
    assert result.threat_model == "L2" and result.robust_flags == expected
    assert result.provenance["max_perturbation"] <= 0.25 + 1e-5
    assert 0 < sum(expected) < 20


def test_channels_last_does_not_change_flags(tiny_model, cifar10_sample):
    x, y = cifar10_sample
    runs = [
        evaluate(
            tiny_model,
            x,
            y,
            eps=TINY_EPS,
            version="custom",
            attacks=["apgd-ce"],
            attack_options=FAST_APGD,
            batch_size=10,
            chunk_size=20,
            channels_last=channels_last,
            progress=False,
        )
        for channels_last in (False, True)
    ]
    assert runs[0].robust_flags == runs[1].robust_flags
    assert tiny_model.conv1.weight.is_contiguous()  # the layout is the caller's again
    assert runs[1].provenance["channels_last"] is True


def test_auto_batch_size_backs_off_on_out_of_memory_and_keeps_flags(tiny_model, cifar10_sample):
    """A model that runs out of memory above 5 images: auto halves 20 -> 10 -> 5 and redoes the chunk."""

    class SmallMemory(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if x.shape[0] > 5:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(x)

    x, y = cifar10_sample
    result = evaluate(
        SmallMemory(tiny_model),
        x,
        y,
        eps=TINY_EPS,
        version="custom",
        attacks=["apgd-ce"],
        attack_options=FAST_APGD,
        batch_size="auto",
        chunk_size=20,
        progress=False,
    )
    expected = direct_autoattack(
        tiny_model, x, y, eps=TINY_EPS, seed=0, batch_size=5, attacks=["apgd-ce"], apgd=FAST_APGD["apgd"]
    )
    assert result.batch_size == 5 and result.robust_flags == expected
    assert any("out of memory at batch size 10" in message for message in result.warnings)
