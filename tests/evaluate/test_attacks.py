"""AutoAttack's versions, custom options and checks, as the evaluator sets them up."""

from __future__ import annotations

import pytest
import torch
from pyautoattack import AutoAttack

from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate import evaluate, resolve_attacks
from ikl_zoo.evaluate.attacks import autoattack_settings, build_adversary, check_attack_options

from .conftest import FAST_APGD, TINY_EPS


@pytest.mark.parametrize(
    ("version", "norm", "expected"),
    [
        ("standard", "Linf", ["apgd-ce", "apgd-t", "fab-t", "square"]),
        ("standard", "L2", ["apgd-ce", "apgd-t", "fab-t", "square"]),
        ("plus", "Linf", ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]),
        ("rand", "Linf", ["apgd-ce", "apgd-dlr"]),
    ],
)
def test_versions_run_autoattacks_attacks(version, norm, expected):
    assert resolve_attacks(version=version, norm=norm, attacks=None) == expected


@pytest.mark.parametrize("version", ["standard", "plus", "rand"])
def test_version_settings_are_autoattacks_own(version):
    ours = build_adversary(
        torch.nn.Identity(),
        eps=8 / 255,
        norm="Linf",
        version=version,
        attacks=resolve_attacks(version=version, norm="Linf", attacks=None),
        seed=3,
        device=torch.device("cpu"),
    )
    reference = AutoAttack(
        torch.nn.Identity(), norm="Linf", eps=8 / 255, version=version, seed=3, device="cpu"
    )
    assert autoattack_settings(ours) == autoattack_settings(reference)
    if version == "rand":
        assert ours.apgd.eot_iter == 20  # expectation over transformation for randomised defences
    if version == "standard":
        assert ours.apgd_targeted.n_target_classes == 9 and ours.apgd.n_restarts == 1


def test_custom_options_rederive_apgd_checkpoints():
    adversary = build_adversary(
        torch.nn.Identity(),
        eps=0.1,
        norm="Linf",
        version="custom",
        attacks=["apgd-ce"],
        seed=0,
        device=torch.device("cpu"),
        attack_options={"apgd": {"n_iter": 50}, "square": {"n_queries": 100}},
    )
    assert (adversary.apgd.n_iter, adversary.apgd.n_iter_2, adversary.apgd.n_iter_min) == (50, 11, 3)
    assert adversary.apgd.size_decr == 1 and adversary.square.n_queries == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "standard", "attacks": ["apgd-ce"]}, "version 'standard' fixes them"),
        ({"version": "custom", "attacks": None}, "version custom needs a list of attacks"),
        ({"version": "custom", "attacks": ["apgd-xx"]}, "unknown attack 'apgd-xx'"),
        ({"version": "fast", "attacks": None}, "unknown AutoAttack version 'fast'"),
        ({"version": "standard", "attacks": None, "norm": "L3"}, "unknown norm 'L3'"),
    ],
)
def test_bad_versions_and_attacks_are_one_line_errors(kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        resolve_attacks(norm=kwargs.pop("norm", "Linf"), **kwargs)


@pytest.mark.parametrize(
    ("options", "version", "message"),
    [
        ({"apgd": {"n_iter": 10}}, "standard", "use --version custom"),
        ({"pgd": {"n_iter": 10}}, "custom", "unknown attack object 'pgd'"),
        ({"apgd": {"rho": 0.5}}, "custom", "apgd.rho is not an attack option"),
        ({"apgd": {"n_iter": 0}}, "custom", "must be a positive integer"),
    ],
)
def test_bad_attack_options(options, version, message):
    with pytest.raises(EvaluationError, match=message):
        check_attack_options(options, version=version)


def test_autoattack_warnings_reach_the_result_and_the_log(tiny_model, cifar10_sample, caplog):
    """A model that outputs probabilities triggers AutoAttack's own softmax check."""
    softmax_model = torch.nn.Sequential(tiny_model, torch.nn.Softmax(dim=1))
    x, y = cifar10_sample
    with caplog.at_level("WARNING", logger="auto-attack"):
        result = evaluate(
            softmax_model,
            x[:4],
            y[:4],
            eps=TINY_EPS,
            version="custom",
            attacks=["apgd-ce"],
            attack_options=FAST_APGD,
            batch_size=4,
            progress=False,
        )
    assert any("output is a probability distribution" in message for message in result.warnings)
    assert any("probability distribution" in record.getMessage() for record in caplog.records)


def test_command_line_shows_each_autoattack_warning_once(capsys):
    import logging

    from ikl_zoo.evaluate.attacks import show_autoattack_warnings

    logger = logging.getLogger("auto-attack")
    with show_autoattack_warnings():
        logger.warning("it seems to be a randomized defense! Please use version='rand'.")
        logger.warning("it seems to be a randomized defense! Please use version='rand'.")
        logger.info("setting parameters for standard version")
    captured = capsys.readouterr()
    expected = "AutoAttack warning: it seems to be a randomized defense! Please use version='rand'.\n"
    assert captured.err == expected
    assert logger.propagate and not logger.handlers
