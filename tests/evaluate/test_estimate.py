"""The estimate before a run and the interval during it."""

from __future__ import annotations

import pytest
import torch
from pyautoattack import AutoAttack

from ikl_zoo.evaluate import EvalSettings
from ikl_zoo.evaluate.estimate import Estimate, attack_passes, format_duration
from ikl_zoo.evaluate.runner import estimate


def test_standard_autoattack_pass_counts_follow_its_settings():
    adversary = AutoAttack(torch.nn.Identity(), norm="Linf", eps=8 / 255, version="standard", device="cpu")
    passes = {attack: attack_passes(adversary, attack) for attack in adversary.attacks_to_run}
    assert passes == {"apgd-ce": (101, 1), "apgd-t": (909, 1), "fab-t": (909, 910), "square": (0, 5001)}


def test_the_least_a_run_costs_is_the_first_attacks_first_run():
    """What the non-robust demo model costs: every image fooled by APGD-CE's one run of 100 iterations."""
    adversary = AutoAttack(torch.nn.Identity(), norm="Linf", eps=8 / 255, version="standard", device="cpu")
    least = {attack: attack_passes(adversary, attack, first_run=True) for attack in adversary.attacks_to_run}
    assert least == {"apgd-ce": (101, 1), "apgd-t": (101, 1), "fab-t": (101, 102), "square": (0, 1)}


def test_an_estimate_reads_as_a_range_unless_both_ends_agree():
    both = Estimate(least_seconds=27, seconds=1320, n_examples=20, device="cpu")
    assert str(both) == ("estimated 27 s (if the first attack fools every image) to 22 min (if every image "
                         "meets every attack) for 20 images on cpu")
    assert str(Estimate(least_seconds=400, seconds=420, n_examples=10_000, device="gpu")) == (
        "estimated 7 min for 10,000 images on gpu")


@pytest.mark.parametrize(("seconds", "text"), [(30, "30 s"), (420, "7 min"), (4320, "1 h 12 min")])
def test_durations_read_as_a_person_says_them(seconds, text):
    assert format_duration(seconds) == text


def test_estimate_scales_the_calibration_to_every_image(tiny_model, cifar10_sample):
    x, y = cifar10_sample
    settings = EvalSettings(version="custom", attacks=["apgd-ce"], attack_options={"apgd": {"n_iter": 10}},
                            batch_size=10, device="cpu")
    found = estimate(tiny_model, x, y, settings=settings)
    assert found.n_examples == 20 and found.device.startswith("cpu (")
    assert 0 < found.least_seconds < found.seconds  # one restart of APGD-CE at least, all of them at most
    assert str(found).startswith("estimated ") and str(found).endswith(f"for 20 images on {found.device}")
    assert tiny_model.training is False and all(p.requires_grad for p in tiny_model.parameters())
