"""Presets, schedules, the --arch specs and the augmentation."""

from __future__ import annotations

import math

import pytest
from PIL import Image
from torchvision import transforms

from ikl_zoo.train import RECIPES, RecipeError, architecture_config, get_recipe


def test_presets_carry_the_ikl_at_settings_and_name_their_source():
    cifar10, cifar100 = RECIPES["cifar10"], RECIPES["cifar100"]
    for recipe in (cifar10, cifar100):
        assert (recipe.alpha, recipe.beta, recipe.temperature, recipe.attack_alpha) == (3.0, 20.0, 4.0, 1.0)
        assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum) == (200, 128, 0.2, 0.9)
        assert (recipe.weight_decay, recipe.awp_gamma, recipe.awp_warmup_epochs) == (5e-4, 0.005, 10)
        assert recipe.eps == 8 / 255 and recipe.arch == "wrn-34-10"
        assert "jiequancui/DKL" in recipe.source and "NeurIPS 2024" in recipe.source
    assert (cifar10.dataset, cifar10.attack_beta) == ("cifar10", 0.0)
    assert (cifar100.dataset, cifar100.attack_beta) == ("cifar100", 1.0)
    autoaug = RECIPES["cifar100-autoaug"]
    assert autoaug.autoaugment and autoaug.aug_weight == 0.5 and autoaug.dataset == "cifar100"


def test_every_knob_is_overridable_and_unknown_ones_are_refused():
    recipe = get_recipe("cifar10", epochs=10, alpha=4.0, awp_gamma=0.0)
    assert (recipe.epochs, recipe.alpha, recipe.awp_gamma, recipe.name) == (10, 4.0, 0.0, "cifar10")
    with pytest.raises(RecipeError, match="unknown recipe knob.*alhpa"):
        get_recipe("cifar10", alhpa=4.0)
    with pytest.raises(RecipeError, match="presets: cifar10, cifar100"):
        get_recipe("imagenet")
    with pytest.raises(RecipeError, match="epochs must be at least 1"):
        get_recipe("cifar10", epochs=0)
    with pytest.raises(RecipeError, match="ema_decay"):
        get_recipe("cifar10", ema_decay=1.0)


def test_lr_follows_the_released_cosine_and_eps_ramps_per_epoch():
    recipe = get_recipe("cifar10", epochs=200)
    assert recipe.lr_at(1) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi / 201)))
    assert recipe.lr_at(200) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 200 / 201)))
    assert recipe.lr_at(200) > 0
    assert recipe.eps_at(1) == pytest.approx(8 / 255 / 200)
    assert recipe.eps_at(100) == pytest.approx(4 / 255)
    assert recipe.eps_at(200) == pytest.approx(8 / 255)
    assert get_recipe("cifar10", eps_ramp_epochs=0).eps_at(1) == pytest.approx(8 / 255)
    assert get_recipe("cifar10", eps_ramp_epochs=10).eps_at(20) == pytest.approx(8 / 255)
    warm = get_recipe("cifar10", lr_warmup_epochs=5)
    assert warm.lr_at(1) == pytest.approx(0.2 / 5) and warm.lr_at(5) == pytest.approx(0.2)
    assert not recipe.uses_awp(9) and recipe.uses_awp(10)
    assert not get_recipe("cifar10", awp_gamma=0.0).uses_awp(50)


def test_arch_specs():
    assert architecture_config("wrn-34-10", dataset="cifar100") == {
        "architecture_class": "WideResNet", "depth": 34, "widen_factor": 10, "num_classes": 100,
    }
    silu = architecture_config("WRN-28-10-silu", dataset="cifar10")
    assert silu["architecture_class"] == "DMWideResNet" and silu["activation"] == "SiLU"
    assert (silu["depth"], silu["width"], silu["num_classes"]) == (28, 10, 10)
    assert silu["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    # A registered id lends its architecture, adapted to the dataset trained on.
    copied = architecture_config("Cui2023Decoupled_WRN-28-10", dataset="cifar100")
    assert copied["architecture_class"] == "DMWideResNet" and copied["num_classes"] == 100
    assert copied["mean"] == pytest.approx([0.5071, 0.4865, 0.4409])
    demo = architecture_config("demo-resnet18", dataset="cifar100")
    assert demo["architecture_class"] == "CifarResNet" and demo["num_classes"] == 100
    with pytest.raises(RecipeError, match="depth 6n\\+4"):
        architecture_config("wrn-11-1", dataset="cifar10")
    with pytest.raises(RecipeError, match="registered model id"):
        architecture_config("resnet-50", dataset="cifar10")


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"eps": 8.0}, r"eps 8 exceeds the \[0, 1\] image range \(did you mean 8/255\?\)"),
        ({"eps": 1.5}, r"eps 1.5 exceeds the \[0, 1\] image range"),
        ({"lr": math.inf}, "lr must be a positive finite number"),
        ({"temperature": math.inf}, "temperature must be a positive finite number"),
        ({"momentum": 1.0}, r"momentum must lie in \[0, 1\)"),
        ({"seed": -1}, r"seed must lie in \[0, 2\*\*32 - 1\]"),
        ({"seed": 2**32}, r"seed must lie in \[0, 2\*\*32 - 1\]"),
        ({"autoaugment_fill": 256}, r"autoaugment_fill must be a grey level in \[0, 255\]"),
    ],
)
def test_values_that_would_train_nonsense_or_crash_later_are_refused(knobs, message):
    with pytest.raises(RecipeError, match=message):
        get_recipe("cifar10", **knobs)
    get_recipe("cifar10", eps=1.0, momentum=0.0, seed=2**32 - 1)  # the edges are fine


def test_autoaugment_fills_with_the_authors_grey_by_default():
    """The authors' CIFAR10Policy fills with (128, 128, 128); torchvision's AutoAugment with 0 (None)."""
    recipe = get_recipe("cifar100-autoaug")
    assert recipe.autoaugment_fill == 128 and transforms.AutoAugment().fill is None
    augmented = recipe.training_transform().augmented
    policy = next(step for step in augmented.transforms if isinstance(step, transforms.AutoAugment))
    assert policy.fill == [128, 128, 128]
    assert "fill 128" in recipe.augmentation

    # Every op that pads, at full strength: what an all-black image gains is exactly the fill.
    for op in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"):
        policy.policies = [((op, 1.0, 9), (op, 0.0, 0))]
        pixels = transforms.functional.pil_to_tensor(policy(Image.new("RGB", (32, 32))))
        assert pixels.unique().tolist() == [0, 128], op
