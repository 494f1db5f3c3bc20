"""Checkpoint files in every format the IKL-AT and RobustBench checkpoints come in.

Reading never unpickles arbitrary objects: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ikl_zoo.errors import CheckpointError, ChecksumMismatchError, first_line

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_KEY_PREFIXES = ("module.0.", "module.", "model.")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str | None, *, fix: str | None = None) -> str:
    """The file's sha256, hashed once; ``ChecksumMismatchError`` unless it is ``expected`` (when given)."""
    actual = file_sha256(path)
    if expected is not None and actual != expected.lower():
        raise ChecksumMismatchError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}",
            fix=fix or f"the file is corrupt or not the published one: delete {path} and download it again",
        )
    return actual


def read_weights_file(path: Path, *, safetensors_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or PyTorch file (told apart by their bytes, not the suffix),
    unwrapped and without DataParallel prefixes."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes)", fix="download or save it again")
    head = _read_head(path)
    if _looks_like_html(head):
        raise CheckpointError(
            f"{path} is an HTML page, not weights (Google Drive quota?)",
            fix="download the checkpoint again in a browser or later, or pass --checkpoint with a good copy",
        )
    # safetensors: an 8-byte little-endian header length, then a JSON object.
    if len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        return _strip_prefix(_load_safetensors(path))
    if safetensors_only:
        raise CheckpointError(f"{path} is not a safetensors file", fix="rewrite it with `ikl-zoo convert`")
    return _strip_prefix(_unwrap(_torch_load(path), path))


def is_html_file(path: Path) -> bool:
    """Whether a file is a web page (what Google Drive returns past its download quota)."""
    return _looks_like_html(_read_head(path))


def _read_head(path: Path, size: int = 1024) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text[:512]


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} is a truncated or corrupt safetensors file ({first_line(error)})",
            fix="download or convert it again",
        ) from None


def _numpy_scalar_globals() -> list[Any]:
    """What a numpy scalar beside the weights (``"best_acc": np.float64(...)``) needs: plain data, no code.
    Files name the reconstructor by the path of the numpy that saved them (``numpy.core`` before 2.0)."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtype_classes = [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"]
    return [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"), np.dtype,
            *dtype_classes]


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
                f"{path} holds Python objects besides tensors{what}, which ikl-zoo refuses to unpickle",
                fix="save model.state_dict() instead, or convert it once in a trusted environment",
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
        f"{path} is truncated or corrupt, or not a PyTorch checkpoint ({torch_load_reason(error)})",
        fix="download or save it again",
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
            f"{path} holds no state_dict (found {type(obj).__name__})", fix="save model.state_dict()"
        )
    not_tensors = [key for key, value in obj.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path} is not a state_dict: entries {', '.join(map(str, not_tensors[:5]))} are not tensors",
            fix=f"save the weights directly or under one of {', '.join(_WRAPPER_KEYS)}",
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


def non_finite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity (a diverged run or a damaged file)."""
    return [key for key, value in tensors.items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_finite(tensors: Mapping[str, torch.Tensor], *, source: str, fix: str) -> None:
    """Refuse weights holding NaN or infinity, naming a few: diverged weights are never loaded or pushed."""
    non_finite = non_finite_tensors(tensors)
    if non_finite:
        raise CheckpointError(
            f"{source} has NaN or infinite values in {len(non_finite)} tensors (e.g. "
            f"{', '.join(non_finite[:3])}), so the training run diverged or the file is damaged", fix=fix,
        )


def state_dict_mismatch(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> str | None:
    """One line describing how ``tensors`` differ from ``model``'s state_dict, or None if they fit exactly.

    BatchNorm's ``num_batches_tracked`` may be absent (checkpoints from before PyTorch 0.4.1, or stripped by
    converters): a strict ``load_state_dict`` of a plain dict fills it in, as RobustBench's loader relies on.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = [key for key in expected if key not in tensors and not key.endswith(".num_batches_tracked")]
    unexpected = [key for key in tensors if key not in expected]
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    wrong_shape = [f"{key} {found[key]} vs {shape}" for key, shape in expected.items()
                   if found.get(key, shape) != shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} shape mismatches (e.g. {'; '.join(wrong_shape[:2])})")
    return "; ".join(parts) or None
