"""Checkpoints in every format IKL-AT and RobustBench use, read without unpickling code; zoo folders
(``model.safetensors`` + ``config.json``, the ``ModelSpec``; ``README.md`` optional), as published on the
Hub and written by ``convert`` and training; loading weights strictly."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.errors import CheckpointError, ChecksumMismatchError, first_line
from ikl_zoo.threat import CONFIG_NAME, NUM_CLASSES, WEIGHTS_NAME
from ikl_zoo.zoo.registry import is_registered
from ikl_zoo.zoo.spec import OWN_KEYS, REWRITE_FIX, ModelSpec

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_KEY_PREFIXES = ("module.0.", "module.", "model.")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str | None, *, fix: str) -> str:
    """The file's sha256, hashed once; ``ChecksumMismatchError`` unless it is ``expected`` (when given)."""
    actual = file_sha256(path)
    if expected is not None and actual != expected.lower():
        raise ChecksumMismatchError(f"sha256 mismatch for {path}: expected {expected}, got {actual}", fix=fix)
    return actual


def read_weights_file(path: Path, *, safetensors_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or PyTorch file (told apart by their bytes, not the suffix),
    unwrapped and without DataParallel prefixes."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", fix="check the path")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes)", fix="download or save it again")
    if is_html_file(path):
        raise CheckpointError(f"{path} is an HTML page, not weights (Google Drive quota?)", fix="download it"
                              " again in a browser or later, or pass --checkpoint with a good copy")
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: an 8-byte little-endian header length, then a JSON object.
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        try:
            return _strip_prefix(safetensors.torch.load_file(str(path), device="cpu"))
        except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path} is a truncated or corrupt safetensors file ({first_line(error)})",
                                  fix="download or convert it again") from None
    if safetensors_only:
        raise CheckpointError(f"{path} is not a safetensors file", fix="rewrite it with `ikl-zoo convert`")
    return _strip_prefix(_unwrap(_torch_load(path), path))


def is_html_file(path: Path) -> bool:
    """Whether a file is a web page (what Google Drive returns past its download quota)."""
    with open(path, "rb") as handle:
        text = handle.read(1024).lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text[:512]


def _numpy_scalar_globals() -> list[Any]:
    """What a numpy scalar beside the weights (``"best_acc": np.float64(...)``) needs: plain data, no code.
    Files name the reconstructor by the path of the numpy that saved them (``numpy.core`` before 2.0)."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    return [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"), np.dtype,
            *(type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG")]


def _torch_load(path: Path) -> Any:
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with safe_globals(_numpy_scalar_globals()) if safe_globals else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler meets arbitrary bytes: KeyError, IndexError, zip errors...
        reason = torch_load_reason(error)
    if reason.startswith("Unsupported global"):
        raise CheckpointError(f"{path} holds Python objects besides tensors ({reason.split()[-1]}), which "
                              "ikl-zoo refuses to unpickle", fix="save model.state_dict() instead, or "
                              "convert it once in a trusted environment")
    raise CheckpointError(f"{path} is truncated or corrupt, or not a PyTorch checkpoint ({reason})",
                          fix="download or save it again")


def torch_load_reason(error: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words for a one-line error: the cause without torch's advice."""
    # Deep in torch's paragraphs: "Unsupported global: GLOBAL argparse.Namespace", "Unsupported operand 103".
    unsupported = re.search(r"Unsupported \w+:? (?:GLOBAL )?[\w.]+", str(error))
    if unsupported:
        return unsupported.group(0)
    reason = first_line(error)
    if isinstance(error, LookupError):  # a bare "101" says nothing without its type
        reason = f"{type(error).__name__}: {reason}"
    return reason.split(". ")[0]  # torch appends paragraphs of advice to its first sentence


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        found = isinstance(obj, Mapping) and [obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)]
        obj = found[0] if found else obj
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds no state_dict (found {type(obj).__name__})",
                              fix="save model.state_dict()")
    not_tensors = [key for key, value in obj.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path} is not a state_dict: entries {', '.join(map(str, not_tensors[:5]))} are not tensors",
            fix=f"save the weights directly or under one of {', '.join(_WRAPPER_KEYS)}")
    return dict(obj)


def _strip_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.``/``module.0.``/``model.`` prefixes that every key carries (DataParallel, wrappers)."""
    prefix = next((p for p in _KEY_PREFIXES if tensors and all(key.startswith(p) for key in tensors)), None)
    return tensors if prefix is None else _strip_prefix({k[len(prefix) :]: v for k, v in tensors.items()})


def non_finite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity (a diverged run or a damaged file)."""
    return [key for key, value in tensors.items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_finite(tensors: Mapping[str, torch.Tensor], *, source: str, fix: str) -> None:
    """Refuse weights holding NaN or infinity, naming a few: diverged weights are never loaded or pushed."""
    non_finite = non_finite_tensors(tensors)
    if non_finite:
        raise CheckpointError(f"{source} has NaN or infinite values in {len(non_finite)} tensors (e.g. "
                              f"{', '.join(non_finite[:3])}), so the training run diverged or the file is "
                              "damaged", fix=fix)


def state_dict_mismatch(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> str | None:
    """How ``tensors`` differ from ``model``'s state_dict, in one line; None if they fit. BatchNorm's
    ``num_batches_tracked`` may be absent: a strict load of a plain dict fills it in (as in RobustBench)."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = [key for key in expected if key not in tensors and not key.endswith(".num_batches_tracked")]
    unexpected = [key for key in tensors if key not in expected]
    wrong_shape = [f"{key} {tuple(tensors[key].shape)} vs {shape}" for key, shape in expected.items()
                   if key in tensors and tuple(tensors[key].shape) != shape]
    problems = [(len(missing), "missing keys", ", ".join(missing[:3])),
                (len(unexpected), "unexpected keys", ", ".join(unexpected[:3])),
                (len(wrong_shape), "shape mismatches", "; ".join(wrong_shape[:2]))]
    return "; ".join(f"{count} {kind} (e.g. {example})" for count, kind, example in problems if count) or None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a zoo folder (sha256 checked), a ``.safetensors`` or a PyTorch file (zip or legacy),
    unwrapped from ``state_dict``/``model_state_dict``/``model``, without ``module.``/``model.`` prefixes."""
    path = Path(path).expanduser()
    return read_folder(path)[1] if path.is_dir() else read_weights_file(path)


def read_spec(folder: str | os.PathLike[str]) -> ModelSpec:
    """The ``ModelSpec`` a zoo folder's config.json describes, every field checked."""
    config_path = Path(folder).expanduser() / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{config_path.parent} is not a zoo folder: {CONFIG_NAME} is missing",
                              fix="make one with `ikl-zoo convert`")
    try:
        data = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error})", fix=REWRITE_FIX) from None
    return ModelSpec.from_json(data, where=str(config_path))


def read_folder(folder: str | os.PathLike[str]) -> tuple[ModelSpec, dict[str, torch.Tensor], str]:
    """``(spec, state_dict, sha256)`` of a zoo folder; the weights are hashed once, against config.json."""
    spec = read_spec(folder)
    weights = Path(folder).expanduser() / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights.parent} is not a zoo folder: {WEIGHTS_NAME} is missing",
                              fix="make one with `ikl-zoo convert CHECKPOINT --model ID -o FOLDER`")
    fix = f"{weights} changed after {CONFIG_NAME} was written: convert or fetch it again"
    sha256 = verify_sha256(weights, spec.sha256, fix=fix)
    return spec, read_weights_file(weights, safetensors_only=True), sha256


def save_zoo_folder(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor], out_dir: str | os.PathLike[str], *,
    entry_or_config: ModelSpec | Mapping[str, Any], extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a zoo folder (both files atomically) from a ``ModelSpec`` or config.json data; ``extra`` adds
    keys such as ``"training"`` or ``"source"``, never replacing the others. Weights must fit exactly."""
    config = entry_or_config.to_json() if isinstance(entry_or_config, ModelSpec) else entry_or_config
    extra = dict(extra or {})
    clashing = sorted(set(extra) & set(OWN_KEYS) - {"source", "training"})  # those two may come as extra
    if clashing:
        raise ValueError(f"extra may not replace the config keys {clashing}")
    try:  # before any file is written: a config.json that cannot be written must not leave new weights
        extra = json.loads(json.dumps(extra))
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra must be JSON data: {error}") from None
    spec = ModelSpec.from_json({**config, **extra, "sha256": None}, where="entry_or_config")
    state = model_or_state_dict
    tensors = {key: value.detach().to("cpu").contiguous().clone()
               for key, value in (state.state_dict() if isinstance(state, nn.Module) else state).items()}
    check_fits(spec, tensors, what="weights")
    out_dir = Path(out_dir)
    with atomic_path(out_dir / WEIGHTS_NAME) as tmp:
        # Written into the file atomic_path made, not by save_file: that creates its own file, mode 0600.
        tmp.write_bytes(safetensors.torch.save(tensors, metadata={"format": "pt"}))
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
    _, outputs = _output_layer(skeleton)
    if outputs != spec.num_classes:
        raise CheckpointError(f"the config says {spec.dataset} ({spec.num_classes} classes) but the network "
                              f"has {outputs} outputs", fix="fix the dataset or convert the right one")


def build_loaded(spec: ModelSpec, state: Mapping[str, torch.Tensor], *, source: str) -> nn.Module:
    """The spec's network holding ``state``, loaded strictly, with one-line errors that name the fix."""
    network = spec.build()
    layer, expected = _output_layer(network)
    found = state.get(f"{layer}.weight")
    if found is not None and found.dim() == 2 and found.shape[0] != expected:
        other = next((ds for ds, count in NUM_CLASSES.items() if count == found.shape[0]), None)
        hint = ("pass a checkpoint of this model" if other is None
                else f"pass --dataset {other}" if is_registered(spec.model_id, dataset=other)
                else f"it is a {other} checkpoint; pass a {spec.dataset} one of {spec.model_id}")
        raise CheckpointError(f"{source} has {found.shape[0]} classes but {spec.model_id} for {spec.dataset} "
                              f"expects {expected}", fix=hint)
    problem = state_dict_mismatch(network, state)
    if problem:
        raise CheckpointError(f"{source} does not fit {spec.model_id}: {problem}",
                              fix="is it a checkpoint of this model?")
    check_finite(state, source=source, fix="use another checkpoint")
    # A plain dict (no _metadata): BatchNorm then fills in a missing num_batches_tracked.
    network.load_state_dict(dict(state), strict=True)
    return network


def _output_layer(network: nn.Module) -> tuple[str, int]:
    """The name and width of the network's last linear layer: the classes it tells apart."""
    linear = [(name, module) for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    return linear[-1][0], linear[-1][1].out_features
