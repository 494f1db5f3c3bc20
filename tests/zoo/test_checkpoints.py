"""Every checkpoint format loads to the same network; every bad file fails with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ikl_zoo.errors import CheckpointError, ChecksumMismatchError, UnknownModelError
from ikl_zoo.zoo.checkpoints import CONFIG_NAME, WEIGHTS_NAME, torch_load_reason
from ikl_zoo.zoo.loading import (
    file_sha256,
    load_model,
    model_from_config,
    read_folder,
    read_state_dict,
    save_zoo_folder,
)


def logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


FORMATS = {
    "raw.pt": lambda state: state,
    "wrapped_state_dict.pth": lambda state: {"state_dict": state, "epoch": 99, "best_acc": 0.5},
    "wrapped_model_state_dict.pt": lambda state: {"model_state_dict": state, "optimizer": {"lr": 0.1}},
    "dataparallel.pt": lambda state: _prefixed(state, "module."),
    "dataparallel_sequential.pt": lambda state: {"state_dict": _prefixed(state, "module.0.")},
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_pytorch_format_loads_the_same_network(tmp_path, tiny_model, images, name) -> None:
    path = tmp_path / name
    torch.save(FORMATS[name](tiny_model.state_dict()), path)
    loaded = load_model("tiny-wrn", checkpoint=path)
    assert not loaded.training
    assert torch.equal(logits(loaded, images), logits(tiny_model, images))


def test_legacy_non_zip_pickle_loads(tmp_path, tiny_model, images) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(tiny_model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert torch.equal(logits(load_model("tiny-wrn", checkpoint=path), images), logits(tiny_model, images))


def test_safetensors_and_zoo_folder_load_the_same_network(tmp_path, tiny_entry, tiny_model, images) -> None:
    single = tmp_path / "weights.safetensors"
    save_file({"module." + k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(single))
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    expected = logits(tiny_model, images)
    for source in (single, folder):
        assert torch.equal(logits(load_model("tiny-wrn", checkpoint=source), images), expected)
    # A zoo folder is also a model id on its own: config.json says what to build.
    from_folder = load_model(str(folder))
    assert torch.equal(logits(from_folder, images), expected)
    spec, state, sha256 = read_folder(str(folder))  # what a library caller reads: spec, tensors, hash
    assert spec.model_id == "tiny-wrn" and set(state) == set(tiny_model.state_dict())
    assert sha256 == spec.sha256 == file_sha256(folder / WEIGHTS_NAME)


def test_the_format_is_read_from_the_bytes_not_the_suffix(tmp_path, tiny_model) -> None:
    misnamed = tmp_path / "weights.pt"
    save_file(dict(tiny_model.state_dict()), str(misnamed))
    assert set(read_state_dict(misnamed)) == set(tiny_model.state_dict())


def test_zoo_folder_contract(tmp_path, tiny_entry, tiny_model) -> None:
    folder = save_zoo_folder(
        tiny_model, tmp_path / "out", entry_or_config=tiny_entry, extra={"training": {"epochs": 3}}
    )
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["model_id"] == "tiny-wrn" and config["dataset"] == "cifar10"
    assert config["threat_model"] == "Linf" and config["eps"] == pytest.approx(8 / 255)
    assert config["architecture"] == tiny_entry.config
    assert config["sha256"] == file_sha256(folder / WEIGHTS_NAME)
    assert config["training"] == {"epochs": 3}
    assert "ikl_zoo_version" in config
    # A plain config (no registry entry), as training writes it, gives the same folder.
    plain = {key: config[key] for key in ("model_id", "dataset", "threat_model", "eps", "architecture")}
    again = save_zoo_folder(tiny_model.state_dict(), tmp_path / "again", entry_or_config=plain)
    assert json.loads((again / CONFIG_NAME).read_text())["sha256"] == config["sha256"]


def test_save_zoo_folder_refuses_weights_that_do_not_fit(tmp_path, tiny_entry, tiny_model) -> None:
    state = dict(tiny_model.state_dict())
    state.pop("fc.bias")
    with pytest.raises(CheckpointError, match="1 missing keys.*fc.bias"):
        save_zoo_folder(state, tmp_path / "bad", entry_or_config=tiny_entry)
    with pytest.raises(ValueError, match="sha256"):
        save_zoo_folder(tiny_model, tmp_path / "bad", entry_or_config=tiny_entry, extra={"sha256": "x"})
    with pytest.raises(ValueError, match="extra must be JSON data"):
        save_zoo_folder(tiny_model, tmp_path / "bad", entry_or_config=tiny_entry, extra={"run": tmp_path})
    assert not (tmp_path / "bad" / WEIGHTS_NAME).exists()


def test_model_from_config_builds_every_architecture_class() -> None:
    from ikl_zoo.zoo.architectures import CifarResNet, DMWideResNet, WideResNet

    configs = {
        WideResNet: {"architecture_class": "WideResNet", "depth": 10, "widen_factor": 1, "num_classes": 3},
        DMWideResNet: {
            "architecture": {
                "architecture_class": "DMWideResNet",
                "depth": 10,
                "width": 1,
                "activation": "SiLU",
                "num_classes": 3,
                "mean": [0.5] * 3,
                "std": [0.25] * 3,
            }
        },
        CifarResNet: {
            "architecture_class": "CifarResNet",
            "blocks_per_stage": [1, 1, 1, 1],
            "num_classes": 3,
        },
    }
    for cls, config in configs.items():
        model = model_from_config(config)
        assert type(model) is cls
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(CheckpointError, match="unknown architecture_class 'ViT'"):
        model_from_config({"architecture_class": "ViT"})
    with pytest.raises(CheckpointError, match="unknown activation 'Swoosh'"):
        model_from_config({"architecture_class": "DMWideResNet", "activation": "Swoosh"})


def test_model_from_config_refuses_what_would_build_a_wrong_network() -> None:
    dm = {"architecture_class": "DMWideResNet", "depth": 10, "width": 1, "num_classes": 100}
    with pytest.raises(CheckpointError, match="without mean and std: add the dataset's normalisation"):
        model_from_config(dm)  # CIFAR-10's normalisation for a CIFAR-100 model would go unnoticed
    with pytest.raises(CheckpointError, match="config cannot build DMWideResNet"):
        model_from_config({**dm, "mean": [0.5, 0.5], "std": [0.25, 0.25]})
    with pytest.raises(CheckpointError, match="config cannot build WideResNet"):
        model_from_config({"architecture_class": "WideResNet", "depth": 10, "num_classes": -1})


# --- bad input --------------------------------------------------------------------------------------


def test_html_page_saved_instead_of_weights(tmp_path) -> None:
    page = tmp_path / "Cui2023Decoupled_WRN-34-10.pt"
    page.write_text("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>")
    with pytest.raises(CheckpointError, match="is an HTML page, not weights \\(Google Drive quota\\?\\)"):
        read_state_dict(page)


@pytest.mark.parametrize("kind", ["zip", "safetensors"])
def test_truncated_file(tmp_path, tiny_model, kind) -> None:
    path = tmp_path / f"weights.{kind}"
    if kind == "zip":
        torch.save(tiny_model.state_dict(), path)
    else:
        save_file(dict(tiny_model.state_dict()), str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        read_state_dict(path)
    assert "\n" not in str(error.value) and len(str(error.value)) < 300 + len(str(path))


def test_pickled_objects_are_refused_not_executed(tmp_path) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": Path("/tmp")}, path)
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        read_state_dict(path)


def test_not_a_state_dict(tmp_path) -> None:
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 3, "acc": 0.5}, path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pt")


def test_wrong_class_count_names_expected_and_found(tmp_path, tiny_entry) -> None:
    from ikl_zoo.zoo.registry import get_model_entry

    cifar100_weights = get_model_entry("tiny-wrn", dataset="cifar100").build().state_dict()
    path = tmp_path / "cifar100.pt"
    torch.save(cifar100_weights, path)
    with pytest.raises(CheckpointError) as error:
        load_model("tiny-wrn", dataset="cifar10", checkpoint=path)
    message = str(error.value)
    assert "has 100 classes but tiny-wrn for cifar10 expects 10" in message
    assert "--dataset cifar100" in message


def test_wrong_architecture_lists_the_mismatch(tmp_path, tiny_entry) -> None:
    path = tmp_path / "demo.pt"
    from ikl_zoo.zoo.architectures import CifarResNet

    torch.save(CifarResNet((1, 1, 1, 1), num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit tiny-wrn: .*missing keys.*unexpected keys"):
        load_model("tiny-wrn", checkpoint=path)


def test_tampered_zoo_folder_fails_its_checksum(tmp_path, tiny_entry, tiny_model) -> None:
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    state = {key: value.clone() for key, value in tiny_model.state_dict().items()}
    state["fc.bias"] += 1
    save_file(state, str(folder / WEIGHTS_NAME))
    with pytest.raises(ChecksumMismatchError) as error:
        load_model(str(folder))
    expected = json.loads((folder / CONFIG_NAME).read_text())["sha256"]
    assert f"expected {expected}, got {file_sha256(folder / WEIGHTS_NAME)}" in str(error.value)


def test_unknown_ids_suggest_close_names_and_the_other_dataset(tmp_path) -> None:
    with pytest.raises(UnknownModelError, match="did you mean Cui2023Decoupled_WRN-34-10"):
        load_model("Cui2023Decoupled_WRN-34-1")
    with pytest.raises(UnknownModelError, match="exists for cifar100: pass --dataset cifar100"):
        load_model("Cui2023Decoupled_WRN-34-10_autoaug", dataset="cifar10")
    with pytest.raises(CheckpointError, match="neither a registered model nor a zoo folder"):
        load_model(str(tmp_path / "no-such-folder"))


GARBAGE = {
    "empty.pt": b"",
    "empty.safetensors": b"",
    "text.pt": b"hello world this is not a checkpoint",  # the unpickler raises KeyError
    "opcodes.pt": b"garbage garbage",  # torch: "Unsupported operand", not a pickled object
    "random.pth": bytes(torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(3)).tolist()),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_empty_and_garbage_files_are_one_line_checkpoint_errors(tmp_path, tiny_entry, name) -> None:
    path = tmp_path / name
    path.write_bytes(GARBAGE[name])
    with pytest.raises(CheckpointError) as error:
        load_model("tiny-wrn", checkpoint=path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "empty (0 bytes)" in message if not GARBAGE[name] else "not a PyTorch checkpoint" in message
    assert "refuses to unpickle" not in message, "garbage is not a pickled object"


def test_non_finite_weights_are_refused(tmp_path, tiny_model) -> None:
    state = {key: value.clone() for key, value in tiny_model.state_dict().items()}
    state["fc.weight"][0, 0] = float("nan")
    state["bn1.running_var"][0] = float("inf")
    path = tmp_path / "diverged.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="NaN or infinite values in 2 tensors .*bn1.running_var"):
        load_model("tiny-wrn", checkpoint=path)


def test_class_count_hint_names_only_a_dataset_the_model_exists_for(tmp_path, tiny_entry, monkeypatch):
    from ikl_zoo.zoo import registry

    path = tmp_path / "cifar10.pt"
    torch.save(tiny_entry.build().state_dict(), path)
    monkeypatch.delitem(registry._REGISTRY, ("cifar10", "tiny-wrn"))  # like the autoaug model: cifar100 only
    with pytest.raises(CheckpointError) as error:
        load_model("tiny-wrn", dataset="cifar100", checkpoint=path)
    message = str(error.value)
    assert "has 10 classes but tiny-wrn for cifar100 expects 100" in message
    assert "--dataset cifar10" not in message and "it is a cifar10 checkpoint" in message


def test_zoo_folder_sha256_that_is_not_a_hash(tmp_path, tiny_entry, tiny_model) -> None:
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["sha256"] = 123
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="field 'sha256' must be 64 hex digits, not 123"):
        load_model(str(folder))


def test_zoo_folder_weights_get_the_mode_of_any_new_file(tmp_path, tiny_entry, tiny_model) -> None:
    import os
    import stat

    previous = os.umask(0o022)
    try:
        folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}
    assert modes == {WEIGHTS_NAME: 0o644, CONFIG_NAME: 0o644}, "a shared cache must be readable by the group"


def test_empty_model_id() -> None:
    with pytest.raises(UnknownModelError, match="empty model id"):
        load_model("")


def test_checkpoint_without_num_batches_tracked_loads_as_pytorch_and_robustbench_load_it(
    tmp_path, tiny_entry, tiny_model, images
) -> None:
    state = {k: v for k, v in tiny_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    tiny_entry.build().load_state_dict(state, strict=True)  # PyTorch's strict loading accepts it
    path = tmp_path / "old.pt"
    torch.save(state, path)
    assert torch.equal(logits(load_model("tiny-wrn", checkpoint=path), images), logits(tiny_model, images))
    folder = save_zoo_folder(state, tmp_path / "zoo", entry_or_config=tiny_entry)
    assert torch.equal(logits(load_model(str(folder)), images), logits(tiny_model, images))


@pytest.mark.parametrize("numpy_module", ["numpy._core.multiarray", "numpy.core.multiarray"])
def test_numpy_scalars_beside_the_weights_load_and_other_objects_are_named(
    tmp_path, tiny_model, images, numpy_module
) -> None:
    """Training scripts save ``"best_acc": np.float64(...)``: plain data. Files from numpy < 2 name
    ``numpy.core.multiarray``."""
    import argparse

    import numpy as np

    path = tmp_path / "with_numpy.pt"
    checkpoint = {"state_dict": tiny_model.state_dict(), "best_acc": np.float64(0.57), "step": np.int64(9)}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)  # GLOBAL opcodes: names in plain text
    data = path.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", numpy_module.encode() + b"\nscalar"))
    assert torch.equal(logits(load_model("tiny-wrn", checkpoint=path), images), logits(tiny_model, images))

    with_args = tmp_path / "with_args.pt"
    torch.save({"state_dict": tiny_model.state_dict(), "args": argparse.Namespace(lr=0.1)}, with_args)
    with pytest.raises(CheckpointError, match=r"Python objects besides tensors \(argparse.Namespace\)"):
        read_state_dict(with_args)
    with pytest.raises(Exception) as refused:  # noqa: PT011  # torch's own error, whatever its class
        torch.load(with_args, weights_only=True)
    # What a training run's resume error shows: torch's cause, not the first sentence of its advice.
    assert torch_load_reason(refused.value) == "Unsupported global: GLOBAL argparse.Namespace"


def test_a_spec_is_its_config_json_and_names_the_field_that_is_wrong() -> None:
    from ikl_zoo.zoo.registry import get_model_entry
    from ikl_zoo.zoo.spec import ModelSpec

    spec = get_model_entry("Cui2023Decoupled_WRN-28-10", dataset="cifar100")
    config = spec.to_json()
    assert config["architecture"]["mean"] == [0.5071, 0.4865, 0.4409] and "published" not in config
    again = ModelSpec.from_json(config)
    assert again.to_json() == config and again.config == spec.config and again.num_classes == 100
    assert type(again.build()) is type(spec.build())
    for field, value, expected in [("eps", -1, "field 'eps' must be a positive number"),
                                   ("dataset", "mnist", "field 'dataset' must be one of cifar10, cifar100"),
                                   ("architecture", [], "field 'architecture' must be an object")]:
        with pytest.raises(CheckpointError, match=expected):
            ModelSpec.from_json({**config, field: value})
    with pytest.raises(CheckpointError, match="config.json: field 'eps' is missing"):
        ModelSpec.from_json({key: value for key, value in config.items() if key != "eps"})
