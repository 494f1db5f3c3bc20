"""The registered networks are RobustBench's networks: same state_dict keys and shapes, same logits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from ikl_zoo._robustbench import import_robustbench, robustbench_model_dicts
from ikl_zoo.zoo import architectures
from ikl_zoo.zoo.registry import list_models
from ikl_zoo.zoo.spec import model_from_config

CUI_ENTRIES = [(entry.dataset, entry.model_id) for entry in list_models() if entry.is_ikl_at]
TOLERANCE = 1e-5


def randomise(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's random initial weights plus small random BatchNorm statistics, scales and biases.

    BatchNorm starts as the identity (mean 0, var 1, scale 1, bias 0); randomising it makes every
    parameter matter, so a swapped or misnamed BatchNorm cannot hide.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith(("running_var", ".weight")) and value.dim() == 1:
            state[key] = torch.rand(value.shape, generator=generator) * 0.5 + 0.75
        elif key.endswith(("running_mean", ".bias")):
            state[key] = torch.randn(value.shape, generator=generator) * 0.1
        else:
            state[key] = value.clone()
    return state


def assert_same_network(ours: nn.Module, theirs: nn.Module, *, seed: int = 0, batch: int = 2) -> None:
    ours_shapes = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    theirs_shapes = {key: tuple(value.shape) for key, value in theirs.state_dict().items()}
    assert list(ours_shapes) == list(theirs_shapes)
    assert ours_shapes == theirs_shapes
    state = randomise(ours, seed)
    ours.load_state_dict(state, strict=True)
    theirs.load_state_dict(state, strict=True)
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        ours_logits, theirs_logits = ours.eval()(x), theirs.eval()(x)
    assert ours_logits.abs().max() > 1e-3, "logits vanished: the comparison would be vacuous"
    assert (ours_logits - theirs_logits).abs().max().item() < TOLERANCE


@pytest.mark.parametrize(("dataset", "model_id"), CUI_ENTRIES)
def test_registered_model_matches_robustbench_constructor(dataset: str, model_id: str) -> None:
    torch.manual_seed(0)
    robustbench_model = robustbench_model_dicts()[dataset]["Linf"][model_id]["model"]()
    ours = next(e for e in list_models(dataset=dataset) if e.model_id == model_id).build()
    assert_same_network(ours, robustbench_model, seed=len(model_id))


def test_all_five_ikl_at_entries_are_registered() -> None:
    assert sorted(CUI_ENTRIES) == sorted(
        [
            ("cifar10", "Cui2023Decoupled_WRN-28-10"),
            ("cifar10", "Cui2023Decoupled_WRN-34-10"),
            ("cifar100", "Cui2023Decoupled_WRN-28-10"),
            ("cifar100", "Cui2023Decoupled_WRN-34-10"),
            ("cifar100", "Cui2023Decoupled_WRN-34-10_autoaug"),
        ]
    )


@pytest.mark.parametrize(("depth", "width", "num_classes"), [(10, 1, 7), (16, 2, 3)])
def test_small_trades_wideresnet_matches_robustbench(depth: int, width: int, num_classes: int) -> None:
    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    theirs = WideResNet(depth=depth, widen_factor=width, num_classes=num_classes, sub_block1=False)
    assert_same_network(architectures.WideResNet(depth, width, num_classes=num_classes), theirs, batch=3)


@pytest.mark.parametrize(("depth", "width", "num_classes"), [(10, 1, 7), (16, 2, 100)])
def test_small_deepmind_wideresnet_matches_robustbench(depth: int, width: int, num_classes: int) -> None:
    import_robustbench()
    from robustbench.model_zoo.architectures.dm_wide_resnet import CIFAR100_MEAN, CIFAR100_STD, DMWideResNet

    theirs = DMWideResNet(
        num_classes=num_classes,
        depth=depth,
        width=width,
        activation_fn=nn.SiLU,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
    )
    ours = architectures.DMWideResNet(
        depth, width, num_classes=num_classes, mean=CIFAR100_MEAN, std=CIFAR100_STD
    )
    assert_same_network(ours, theirs, batch=3)
    # Training mode uses batch statistics: same logits. Only the running-statistics momentum differs:
    # DeepMind's 0.01 (BatchNorm decay 0.99) here, PyTorch's default 0.1 in RobustBench's port.
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    assert (ours.train()(x) - theirs.train()(x)).abs().max().item() < TOLERANCE
    momenta = {module.momentum for module in ours.modules() if isinstance(module, nn.BatchNorm2d)}
    assert momenta == {0.01}


def test_cifar_resnet18_matches_the_resnet_pyautoattack_ships() -> None:
    spec = importlib.util.find_spec("pyautoattack")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "examples" / "resnet.py"
    module_spec = importlib.util.spec_from_file_location("pyautoattack_examples_resnet", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert_same_network(architectures.CifarResNet((2, 2, 2, 2), num_classes=10), module.ResNet18(), batch=2)


def test_wideresnet_rejects_a_depth_that_is_not_6n_plus_4() -> None:
    with pytest.raises(ValueError, match="6n\\+4"):
        architectures.WideResNet(depth=12)


@pytest.mark.parametrize("entry", list_models(), ids=lambda entry: f"{entry.dataset}-{entry.model_id}")
def test_registry_config_rebuilds_the_same_architecture(entry) -> None:  # noqa: ANN001
    with torch.device("meta"):
        from_config = model_from_config(entry.config)
        registered = entry.build()
    assert type(from_config) is type(registered)
    shapes = {key: tuple(value.shape) for key, value in registered.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in from_config.state_dict().items()} == shapes
    if isinstance(registered, architectures.DMWideResNet):
        # Normalisation lives in non-persistent buffers: config.json is their only record.
        mean = architectures.CIFAR10_MEAN if entry.dataset == "cifar10" else architectures.CIFAR100_MEAN
        assert tuple(entry.config["mean"]) == mean
        assert type(from_config.relu) is type(registered.relu) is nn.SiLU


@pytest.mark.parametrize(("dataset", "model_id"), CUI_ENTRIES)
def test_google_drive_ids_are_robustbenchs(dataset: str, model_id: str) -> None:
    entry = next(e for e in list_models(dataset=dataset) if e.model_id == model_id)
    expected = robustbench_model_dicts()[dataset]["Linf"][model_id]["gdrive_id"]
    assert entry.gdrive_id == expected
