"""Zoo folders, and loading weights strictly into a network.

A *zoo folder* is what ikl-zoo publishes on the Hugging Face Hub and what ``convert`` and training write::

    model.safetensors   the state_dict, safetensors (no pickle)
    config.json         the model's ``ModelSpec``: enough to rebuild the network without the registry
    README.md           the model card (written by ``ikl_zoo.cards`` or ``ikl-zoo convert``; optional here)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.errors import CheckpointError
from ikl_zoo.threat import NUM_CLASSES
from ikl_zoo.zoo.formats import (
    check_finite,
    file_sha256,
    non_finite_tensors,
    read_weights_file,
    state_dict_mismatch,
    torch_load_reason,
    verify_sha256,
)
from ikl_zoo.zoo.registry import list_models
from ikl_zoo.zoo.spec import REWRITE_FIX, WEIGHTS_NAME, ModelSpec, model_from_config

CONFIG_NAME = "config.json"
CARD_NAME = "README.md"

__all__ = [
    "CARD_NAME", "CONFIG_NAME", "WEIGHTS_NAME", "check_finite", "file_sha256", "load_state_dict_strict",
    "model_from_config", "non_finite_tensors", "read_spec", "read_state_dict", "read_zoo_config",
    "read_zoo_folder", "save_zoo_folder", "state_dict_mismatch", "torch_load_reason", "verify_sha256",
]


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: a zoo folder (sha256 checked), a ``.safetensors`` or a PyTorch file.

    PyTorch files (``.pt``/``.pth``, zip or legacy pickle) are loaded with ``weights_only=True`` and may hold
    a raw state_dict or one wrapped in ``state_dict``/``model_state_dict``, keys prefixed ``module.``,
    ``module.0.`` or ``model.``. The format is detected from the bytes, not the suffix.
    """
    path = Path(path).expanduser()
    return read_folder(path)[1] if path.is_dir() else read_weights_file(path)


def read_spec(folder: str | os.PathLike[str]) -> ModelSpec:
    """The ``ModelSpec`` a zoo folder's config.json describes, every field checked."""
    folder = Path(folder).expanduser()
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} is not a zoo folder: {CONFIG_NAME} is missing", fix="make one with `ikl-zoo convert`"
        )
    try:
        data = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error})", fix=REWRITE_FIX) from None
    return ModelSpec.from_json(data, where=str(config_path))


def read_zoo_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json of a zoo folder as data, once ``read_spec`` has checked it."""
    return read_spec(folder).to_json()


def read_folder(folder: Path) -> tuple[ModelSpec, dict[str, torch.Tensor], str]:
    """``(spec, state_dict, sha256)`` of a zoo folder; the weights are hashed once, against config.json."""
    spec = read_spec(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder} is not a zoo folder: {WEIGHTS_NAME} is missing")
    fix = f"{weights} changed after {CONFIG_NAME} was written: convert or fetch it again"
    sha256 = verify_sha256(weights, spec.sha256, fix=fix)
    return spec, read_weights_file(weights, safetensors_only=True), sha256


def read_zoo_folder(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a zoo folder; the weights' sha256 is checked against config.json."""
    spec, state, _ = read_folder(Path(folder).expanduser())
    return spec.to_json(), state


def save_zoo_folder(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    out_dir: str | os.PathLike[str],
    *,
    entry_or_config: ModelSpec | Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a Hub-ready zoo folder (``model.safetensors`` + ``config.json``) and return its path.

    ``entry_or_config`` is a ``ModelSpec`` (a registry entry) or config.json data with at least
    ``model_id``, ``dataset``, ``threat_model``, ``eps`` and ``architecture``. ``extra`` adds keys such as
    ``"training"`` or ``"source"``; it may not replace those keys. The weights must fit the architecture
    exactly (checked, so the folder always loads). Both files are written atomically; a README.md already in
    the folder is kept.
    """
    spec = entry_or_config
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec.from_json(spec, where="entry_or_config")
    extra = dict(extra or {})
    clashing = sorted(set(extra) & {"ikl_zoo_version", "model_id", "dataset", "threat_model", "eps",
                                    "architecture", "sha256"})
    if clashing:
        raise ValueError(f"extra may not replace the config keys {clashing}")
    try:  # before any file is written: a config.json that cannot be written must not leave new weights
        spec = spec.with_json({**json.loads(json.dumps(extra)), "sha256": None})
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra must be JSON data: {error}") from None
    state = model_or_state_dict
    if isinstance(state, nn.Module):
        state = state.state_dict()
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
    check_fits(spec, tensors, what="weights")

    from safetensors.torch import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS_NAME) as tmp:
        # Written into the file atomic_path made, not by save_file: that creates its own file, mode 0600.
        tmp.write_bytes(save(tensors, metadata={"format": "pt"}))
    spec = dataclasses.replace(spec, sha256=file_sha256(out_dir / WEIGHTS_NAME))
    write_json_atomic(out_dir / CONFIG_NAME, spec.to_json())
    return out_dir


def check_fits(spec: ModelSpec, tensors: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Refuse weights that do not fit the spec's architecture exactly, or outputs that are not its classes."""
    with torch.device("meta"):
        skeleton = spec.build()
    problem = state_dict_mismatch(skeleton, tensors)
    if problem:
        raise CheckpointError(f"{what} do not fit the {spec.architecture_class} of its config: {problem}")
    outputs = [layer.out_features for layer in skeleton.modules() if isinstance(layer, nn.Linear)]
    if outputs and outputs[-1] != spec.num_classes:
        raise CheckpointError(
            f"the config says {spec.dataset} ({spec.num_classes} classes) but the network has {outputs[-1]} "
            "outputs",
            fix="fix the dataset or convert the right checkpoint",
        )


def load_state_dict_strict(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str, model_name: str,
    dataset: str | None = None,
) -> None:
    """``model.load_state_dict(state, strict=True)`` with one-line errors that name the fix."""
    expected_classes, found_classes = _class_counts(model, state)
    if expected_classes is not None and found_classes is not None and expected_classes != found_classes:
        registered_for = {spec.dataset for spec in list_models() if spec.model_id == model_name}
        matching = [ds for ds, count in NUM_CLASSES.items() if count == found_classes]
        if matching and matching[0] in registered_for:
            hint = f"pass --dataset {matching[0]}"
        elif matching:
            hint = f"it is a {matching[0]} checkpoint; pass a {dataset or 'matching'} one of {model_name}"
        else:
            hint = "pass a checkpoint of this model"
        where = f" for {dataset}" if dataset else ""
        raise CheckpointError(
            f"{source} has {found_classes} classes but {model_name}{where} expects {expected_classes}",
            fix=hint,
        )
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(f"{source} does not fit {model_name}: {problem}",
                              fix="is it a checkpoint of this model?")
    check_finite(state, source=source, fix="use another checkpoint")
    # A plain dict (no _metadata): BatchNorm then fills in a missing num_batches_tracked.
    model.load_state_dict(dict(state), strict=True)


def _class_counts(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """Output width of the model's last Linear layer and of the same layer in ``state``."""
    linear_names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear_names:
        return None, None
    key = f"{linear_names[-1]}.weight"
    found = state.get(key)
    expected = model.state_dict()[key].shape[0]
    return expected, (found.shape[0] if found is not None and found.dim() == 2 else None)
