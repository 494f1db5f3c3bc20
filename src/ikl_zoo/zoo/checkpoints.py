"""Checkpoint files: reading any published format safely, and writing Hub-ready zoo folders.

A *zoo folder* is what ikl-zoo publishes on the Hugging Face Hub and what ``convert`` and training write::

    model.safetensors   the state_dict, safetensors (no pickle)
    config.json         what the weights are, enough to rebuild the network without the registry
    README.md           the model card (written by ``ikl_zoo.cards`` or ``ikl-zoo convert``; optional here)

Reading never unpickles arbitrary objects: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ikl_zoo import __version__
from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.errors import CheckpointError, ChecksumMismatchError, first_line
from ikl_zoo.zoo.registry import ModelEntry

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_KEY_PREFIXES = ("module.0.", "module.", "model.")
_CONFIG_CORE_KEYS = ("model_id", "dataset", "threat_model", "eps", "architecture")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str, *, fix: str | None = None) -> str:
    """Raise ``ChecksumMismatchError`` unless ``path`` hashes to ``expected``; returns the hash."""
    actual = file_sha256(path)
    if actual != expected.lower():
        fix = fix or f"the file is corrupt or not the published one: delete {path} and download it again"
        raise ChecksumMismatchError(f"sha256 mismatch for {path}: expected {expected}, got {actual}; {fix}")
    return actual


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint in any format the IKL-AT and RobustBench checkpoints come in.

    Accepts a zoo folder (sha256 checked against its config.json), a ``.safetensors`` file, or a PyTorch
    file (``.pt``/``.pth``, zip or legacy pickle, loaded with ``weights_only=True``) holding a raw
    state_dict or one wrapped in ``state_dict``/``model_state_dict``, with keys prefixed ``module.``,
    ``module.0.`` or ``model.``. The format is detected from the bytes, not the suffix.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return read_zoo_folder(path)[1]
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): download or save it again")
    head = _read_head(path)
    if _looks_like_html(head):
        raise CheckpointError(
            f"{path} is an HTML page, not weights (Google Drive quota?): download the checkpoint again in a "
            "browser or later, or pass --checkpoint with a good copy"
        )
    tensors = _load_safetensors(path) if _looks_like_safetensors(head) else _unwrap(_torch_load(path), path)
    return _strip_prefix(tensors)


def read_zoo_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json of a zoo folder, checked to say what architecture it holds."""
    folder = Path(folder).expanduser()
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} is not a zoo folder: {CONFIG_NAME} is missing (make one with `ikl-zoo convert`)"
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({error}); rewrite it with `ikl-zoo convert`"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), dict):
        raise CheckpointError(
            f"{config_path} has no \"architecture\" object; rewrite it with `ikl-zoo convert`"
        )
    recorded = config.get("sha256")
    if recorded is not None and not _is_sha256(recorded):  # checked by every reader, downloads included
        raise CheckpointError(
            f"{config_path} has sha256 {recorded!r}, not 64 hex digits; rewrite it with `ikl-zoo convert`"
        )
    return config


def read_zoo_folder(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a zoo folder; the weights' sha256 is checked against config.json."""
    folder = Path(folder).expanduser()
    config = read_zoo_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder} is not a zoo folder: {WEIGHTS_NAME} is missing")
    if config.get("sha256"):
        verify_sha256(
            weights, config["sha256"],
            fix=f"{weights} is corrupt or changed after {CONFIG_NAME} was written: convert or fetch it again",
        )
    if not _looks_like_safetensors(_read_head(weights)):
        raise CheckpointError(
            f"{weights} is not a safetensors file; rewrite the folder with `ikl-zoo convert`"
        )
    return config, _load_safetensors(weights)


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def is_html_file(path: str | os.PathLike[str]) -> bool:
    """Whether a file is a web page (what Google Drive returns past its download quota)."""
    return _looks_like_html(_read_head(Path(path)))


def _read_head(path: Path, size: int = 1024) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text[:512]


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON object.
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} is a truncated or corrupt safetensors file ({first_line(error)}): "
            "download or convert it again"
        ) from None


def _numpy_scalar_globals() -> list[Any]:
    """What a numpy scalar beside the weights (``"best_acc": np.float64(...)``) needs: plain data, no code.

    Files name the reconstructor by the path of the numpy that saved them (``numpy.core`` before 2.0).
    """
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtype_classes = [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"]
    return [
        (scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"), np.dtype,
        *dtype_classes,
    ]


def _torch_load(path: Path) -> Any:
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        if safe_globals is None:
            return torch.load(path, map_location="cpu", weights_only=True)
        with safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if found or "Unsupported global" in str(error):
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path} holds Python objects besides tensors{what}, which ikl-zoo refuses to unpickle; save "
                "model.state_dict() instead, or convert it once in a trusted environment"
            ) from None
        raise _not_a_checkpoint(path, error) from None
    except Exception as error:  # the unpickler meets arbitrary bytes: KeyError, IndexError, zip errors...
        raise _not_a_checkpoint(path, error) from None


def torch_load_reason(error: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words for a one-line error: the cause without torch's advice."""
    reason = first_line(error)
    if isinstance(error, LookupError):  # a bare "101" says nothing without its type
        reason = f"{type(error).__name__}: {reason}"
    if reason.startswith("Weights only load failed"):  # torch's preamble; the cause comes later
        causes = [line.strip() for line in str(error).splitlines() if line.strip().startswith("Unsupported")]
        reason = causes[0] if causes else reason
    return reason.split(". ")[0]  # torch appends paragraphs of advice to its first sentence


def _not_a_checkpoint(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} is truncated or corrupt, or not a PyTorch checkpoint ({torch_load_reason(error)}): "
        "download or save it again"
    )


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        wrapper = next((key for key in _WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path} holds no state_dict (found {type(obj).__name__}); save model.state_dict()"
        )
    not_tensors = [key for key, value in obj.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path} is not a state_dict: entries {', '.join(map(str, not_tensors[:5]))} are not tensors "
            f"(expected the weights directly or under one of {', '.join(_WRAPPER_KEYS)})"
        )
    return dict(obj)


def _strip_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.``/``module.0.``/``model.`` prefixes that every key carries (DataParallel, wrappers)."""
    stripped = True
    while stripped and tensors:
        stripped = False
        for prefix in _KEY_PREFIXES:
            if all(key.startswith(prefix) for key in tensors):
                tensors = {key[len(prefix):]: value for key, value in tensors.items()}
                stripped = True
                break
    return tensors


# --------------------------------------------------------------------------------------------------
# Building from config.json
# --------------------------------------------------------------------------------------------------


def model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Build the (untrained) network a config describes.

    ``config`` is a zoo folder's config.json (its ``"architecture"`` object is used) or that object itself,
    e.g. a registry entry's ``config``: ``{"architecture_class": "WideResNet" | "DMWideResNet" |
    "CifarResNet", **constructor keyword arguments}``.
    """
    from ikl_zoo.zoo import architectures

    arch = config.get("architecture", config)
    if not isinstance(arch, Mapping) or "architecture_class" not in arch:
        raise CheckpointError(
            'config has no "architecture_class"; expected a zoo config.json or a registry config'
        )
    kwargs = {key: value for key, value in arch.items() if key != "architecture_class"}
    name = arch["architecture_class"]
    builders = {"WideResNet": architectures.WideResNet, "DMWideResNet": architectures.DMWideResNet,
                "CifarResNet": architectures.CifarResNet}
    if name not in builders:
        raise CheckpointError(f"unknown architecture_class {name!r} in config; known: {', '.join(builders)}")
    if isinstance(kwargs.get("activation"), str):
        activation = getattr(nn, kwargs["activation"], None)
        if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
            raise CheckpointError(
                f"unknown activation {kwargs['activation']!r} in config (expected e.g. SiLU, ReLU)"
            )
        kwargs["activation"] = activation
    missing = [key for key in ("mean", "std") if key not in kwargs]
    if name == "DMWideResNet" and missing:
        # The normalisation is in no checkpoint (non-persistent buffers): a default would be a silent guess.
        raise CheckpointError(
            f"config builds DMWideResNet without {' and '.join(missing)}: add the dataset's normalisation "
            '(e.g. "mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616] for CIFAR-10)'
        )
    for key in ("mean", "std", "blocks_per_stage"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    try:
        return builders[name](**kwargs)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"config cannot build {name}: {first_line(error)}") from None


def architecture_config(entry: ModelEntry) -> dict[str, Any]:
    """A registry entry's architecture as JSON-ready data (tuples as lists)."""
    return json.loads(json.dumps(entry.config))


# --------------------------------------------------------------------------------------------------
# Writing zoo folders
# --------------------------------------------------------------------------------------------------


def save_zoo_folder(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    out_dir: str | os.PathLike[str],
    *,
    entry_or_config: ModelEntry | Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a Hub-ready zoo folder (``model.safetensors`` + ``config.json``) and return its path.

    ``entry_or_config`` is a registry ``ModelEntry`` or a mapping with the keys ``model_id``, ``dataset``,
    ``threat_model``, ``eps`` and ``architecture`` (``{"architecture_class": ..., **kwargs}``, as
    ``model_from_config`` takes). config.json then holds::

        {"ikl_zoo_version", "model_id", "dataset", "threat_model", "eps", "architecture": {...},
         "sha256": <hex sha256 of model.safetensors>, **extra}

    ``extra`` adds keys such as ``"training"`` (hyper-parameters) or ``"source"``; it may not replace the
    keys above. The weights must fit the architecture exactly (checked, so the folder always loads with
    ``load_model(folder)``). Both files are written atomically; a README.md already in the folder is kept.
    """
    core = _core_config(entry_or_config)
    extra = dict(extra or {})
    clashing = sorted(set(extra) & {*core, "ikl_zoo_version", "sha256"})
    if clashing:
        raise ValueError(f"extra may not replace the config keys {clashing}")
    try:  # before any file is written: a config.json that cannot be written must not leave new weights
        json.dumps(extra)
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra must be JSON data: {error}") from None
    state = model_or_state_dict
    if isinstance(state, nn.Module):
        state = state.state_dict()
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
    _check_fits_architecture(tensors, core)

    from safetensors.torch import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS_NAME) as tmp:
        # Written into the file atomic_path made, not by save_file: that creates its own file, mode 0600.
        tmp.write_bytes(save(tensors, metadata={"format": "pt"}))
    config = {"ikl_zoo_version": __version__, **core, "sha256": file_sha256(out_dir / WEIGHTS_NAME), **extra}
    write_json_atomic(out_dir / CONFIG_NAME, config)
    return out_dir


def _core_config(entry_or_config: ModelEntry | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(entry_or_config, ModelEntry):
        entry = entry_or_config
        return {"model_id": entry.model_id, "dataset": entry.dataset, "threat_model": entry.threat_model,
                "eps": entry.eps, "architecture": architecture_config(entry)}
    missing = [key for key in _CONFIG_CORE_KEYS if key not in entry_or_config]
    if missing:
        raise ValueError(f"entry_or_config lacks {missing}; it needs {list(_CONFIG_CORE_KEYS)}")
    core = {key: entry_or_config[key] for key in _CONFIG_CORE_KEYS}
    core["architecture"] = json.loads(json.dumps(core["architecture"]))
    return core


def _check_fits_architecture(tensors: Mapping[str, torch.Tensor], core: Mapping[str, Any]) -> None:
    with torch.device("meta"):
        skeleton = model_from_config(core["architecture"])
    problem = state_dict_mismatch(skeleton, tensors)
    if problem:
        raise CheckpointError(
            f"weights do not fit {core['architecture'].get('architecture_class')}: {problem}"
        )


def non_finite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity (a diverged run or a damaged file)."""
    return [
        key for key, value in tensors.items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def check_finite(tensors: Mapping[str, torch.Tensor], *, source: str, fix: str) -> None:
    """Refuse weights holding NaN or infinity, naming a few: diverged weights are never loaded or pushed."""
    non_finite = non_finite_tensors(tensors)
    if non_finite:
        raise CheckpointError(
            f"{source} has NaN or infinite values in {len(non_finite)} tensors "
            f"(e.g. {', '.join(non_finite[:3])}): the training run diverged or the file is damaged; {fix}"
        )


def state_dict_mismatch(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> str | None:
    """One line describing how ``tensors`` differ from ``model``'s state_dict, or None if they fit exactly.

    BatchNorm's ``num_batches_tracked`` may be absent (checkpoints from before PyTorch 0.4.1, or stripped by
    converters): a strict ``load_state_dict`` of a plain dict fills it in, as RobustBench's loader relies on.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = [key for key in expected if key not in tensors and not key.endswith(".num_batches_tracked")]
    unexpected = [key for key in tensors if key not in expected]
    wrong_shape = [
        f"{key} {tuple(tensors[key].shape)} vs {shape}"
        for key, shape in expected.items()
        if key in tensors and tuple(tensors[key].shape) != shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} shape mismatches (e.g. {'; '.join(wrong_shape[:2])})")
    return "; ".join(parts) or None
