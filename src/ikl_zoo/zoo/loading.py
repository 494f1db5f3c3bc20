"""``load_model``: a registered id or a zoo folder in, the network with verified weights out, in eval mode.

Weights come from, in order: the ``checkpoint`` argument; a file shipped inside an installed package
(the demo model); the Hugging Face Hub, then the original Google Drive host (``ikl_zoo.zoo.hub``).
Loading is strict: every key and shape must match, and a checkpoint for the other dataset is named as such.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from ikl_zoo.errors import CheckpointError, UnknownModelError
from ikl_zoo.zoo.checkpoints import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_finite,
    file_sha256,
    model_from_config,
    read_state_dict,
    read_zoo_config,
    read_zoo_folder,
    save_zoo_folder,
    state_dict_mismatch,
    verify_sha256,
)
from ikl_zoo.zoo.registry import NUM_CLASSES, ModelEntry, get_model_entry, is_registered, list_models

__all__ = [
    "file_sha256",
    "load_model",
    "load_state_dict_strict",
    "model_from_config",
    "package_file_path",
    "pretrained_weights_path",
    "read_state_dict",
    "read_zoo_config",
    "read_zoo_folder",
    "save_zoo_folder",
    "verify_sha256",
]


def load_model(
    model_id: str | os.PathLike[str],
    *,
    dataset: str = "cifar10",
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    revision: str | None = None,
) -> nn.Module:
    """The network with its weights, on ``device``, in eval mode.

    ``model_id`` is a registered id (see ``ikl-zoo list``) for ``dataset``, or the path of a zoo folder
    (``model.safetensors`` + ``config.json``, as written by ``ikl-zoo convert`` or training; its config
    says the dataset). ``checkpoint`` replaces the published weights with a local ``.pt``/``.pth``/
    ``.safetensors`` file or zoo folder in any format ``read_state_dict`` reads. ``revision`` pins the Hub
    revision (branch, tag or commit) instead of the registry's.
    """
    entry = _registered(str(model_id), dataset)
    if entry is not None:
        model = entry.create()
        name, model_dataset = entry.model_id, entry.dataset
        if checkpoint is not None:
            source = Path(checkpoint).expanduser()
        else:
            source = pretrained_weights_path(entry, revision=revision)
        state = read_state_dict(source)
    else:
        folder = Path(model_id).expanduser()
        if checkpoint is not None:
            source = Path(checkpoint).expanduser()
            config, state = read_zoo_config(folder), read_state_dict(source)
        else:
            (config, state), source = read_zoo_folder(folder), folder / WEIGHTS_NAME
        model = model_from_config(config)
        name, model_dataset = str(config.get("model_id", folder)), config.get("dataset")
    load_state_dict_strict(model, state, source=str(source), model_name=name, dataset=model_dataset)
    return model.to(device).eval()


def load_state_dict_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    model_name: str,
    dataset: str | None = None,
) -> None:
    """``model.load_state_dict(state, strict=True)`` with one-line errors that name the fix."""
    expected_classes, found_classes = _class_counts(model, state)
    if expected_classes is not None and found_classes is not None and expected_classes != found_classes:
        registered_for = {entry.dataset for entry in list_models() if entry.model_id == model_name}
        matching = [ds for ds, count in NUM_CLASSES.items() if count == found_classes]
        if matching and matching[0] in registered_for:
            hint = f"pass --dataset {matching[0]}"
        elif matching:
            hint = f"it is a {matching[0]} checkpoint; pass a {dataset or 'matching'} one of {model_name}"
        else:
            hint = "pass a checkpoint of this model"
        where = f" for {dataset}" if dataset else ""
        raise CheckpointError(
            f"{source} has {found_classes} classes but {model_name}{where} expects {expected_classes}: {hint}"
        )
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"{source} does not fit {model_name}: {problem}; is it a checkpoint of this model?"
        )
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


def _registered(model_id: str, dataset: str) -> ModelEntry | None:
    """The registry entry, None for an existing folder, or the registry's one-line error for anything else."""
    if not model_id.strip():
        raise UnknownModelError("empty model id: pass a registered id (`ikl-zoo list`) or a zoo folder")
    if is_registered(model_id, dataset=dataset):
        return get_model_entry(model_id, dataset=dataset)
    path = Path(model_id).expanduser()
    if path.is_dir():
        return None
    if os.sep in model_id or "/" in model_id or path.suffix:
        raise CheckpointError(
            f"{model_id} is neither a registered model nor a zoo folder ({WEIGHTS_NAME} + {CONFIG_NAME}); "
            "pass a registered id (`ikl-zoo list`) or the folder written by `ikl-zoo convert`"
        )
    return get_model_entry(model_id, dataset=dataset)  # raises with close names / the other dataset


def pretrained_weights_path(entry: ModelEntry, *, revision: str | None = None) -> Path:
    """Local path of an entry's published weights: a package file, or the Hub (with the Drive fallback)."""
    from ikl_zoo.zoo.hub import download_checkpoint

    return download_checkpoint(entry.model_id, dataset=entry.dataset, revision=revision)


def package_file_path(entry: ModelEntry) -> Path:
    """The weights an installed package ships (``"package:relative/path"``), sha256-verified."""
    spec = entry.pretrained.package_file
    if not spec or ":" not in spec:
        raise CheckpointError(f"{entry.model_id} has no package file to load")
    package, _, relative = spec.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(f"{entry.model_id} needs the package {package}: pip install {package}")
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing from the installed {package}: "
            f"reinstall it (pip install --force-reinstall {package})"
        )
    if entry.pretrained.package_file_sha256:
        verify_sha256(
            path, entry.pretrained.package_file_sha256,
            fix=f"the installed {package} differs from the one ikl-zoo knows: reinstall it",
        )
    return path
