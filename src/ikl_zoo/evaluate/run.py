"""``evaluate_model``: what ``ikl-zoo eval`` does; under torchrun rank 0 fetches weights and data first."""

from __future__ import annotations

import os
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ikl_zoo.evaluate.distributed import process_group_from_environment
from ikl_zoo.evaluate.estimate import Estimate
from ikl_zoo.evaluate.prepare import resolve_device
from ikl_zoo.evaluate.result import EvalResult, ModelFacts
from ikl_zoo.evaluate.runner import estimate, evaluate
from ikl_zoo.evaluate.settings import EvalSettings
from ikl_zoo.evaluate.sources import ModelSource, load_for_evaluation
from ikl_zoo.evaluate.store import run_dir_lock
from ikl_zoo.threat import same_eps


@dataclass(frozen=True)
class ModelRequest:
    """Which model to evaluate and where its weights and the test examples come from."""

    model_id: str
    """A registered id, a zoo folder, or ``robustbench:<id>``."""
    checkpoint: str | os.PathLike[str] | None = None
    revision: str | None = None
    data_dir: str | os.PathLike[str] = "data"
    download: bool = True
    """Download missing CIFAR data into ``data_dir``."""
    robustbench_dir: str | os.PathLike[str] | None = None


def default_run_dir(model_id: str, settings: EvalSettings) -> Path:
    """``runs/<model>_<dataset>_<norm>_<eps>_<version>[_<precision>]``: one folder per measurement, safe as a
    file name."""
    name = f"{model_id}_{settings.dataset}_{settings.norm}_{settings.eps_text}_{settings.version}"
    name += f"_{settings.precision}" * (settings.precision != "pytorch")  # a screen never meets a full run
    return Path("runs") / re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def evaluate_model(
    request: ModelRequest | str, *, settings: EvalSettings | None = None,
    out: str | os.PathLike[str] | None = None, resume: bool = False, progress: bool = True,
) -> EvalResult:
    """Evaluate a model on the first ``settings.n_examples`` test images of ``settings.dataset``."""
    request = ModelRequest(request) if isinstance(request, str) else request
    settings = settings or EvalSettings()
    device = resolve_device(settings.device)
    with process_group_from_environment(device) as shard, (
        run_dir_lock(out, shard=shard) if out is not None else nullcontext()
    ):
        with shard.main_first():
            source, x, y = _load(request, settings, device)
        facts = ModelFacts(
            model_id=request.model_id, published=_comparable_published(source, settings),
            provenance=_provenance(source, request, dataset=settings.dataset),
        )
        return evaluate(
            source.model, x, y, settings=settings, facts=facts, out=out, resume=resume, progress=progress
        )


def estimate_model(request: ModelRequest, *, settings: EvalSettings) -> Estimate:
    """How long ``evaluate_model`` would take on this process's device, from a calibration pass."""
    source, x, y = _load(request, settings, resolve_device(settings.device))
    return estimate(source.model, x, y, settings=settings)


def _load(
    request: ModelRequest, settings: EvalSettings, device: torch.device
) -> tuple[ModelSource, torch.Tensor, torch.Tensor]:
    from ikl_zoo.data import load_test_examples

    source = load_for_evaluation(
        request.model_id, dataset=settings.dataset, threat_model=settings.norm, checkpoint=request.checkpoint,
        revision=request.revision, device=device, robustbench_dir=request.robustbench_dir,
    )
    x, y = load_test_examples(
        settings.dataset, data_dir=request.data_dir, n_examples=settings.n_examples, download=request.download
    )
    return source, x, y


def _comparable_published(source: ModelSource, settings: EvalSettings) -> dict[str, Any] | None:
    """The published figures, when measured under this run's threat model and standard AutoAttack."""
    if source.published is None or source.published_threat is None:
        return None
    norm, eps = source.published_threat
    same = settings.norm == norm and same_eps(settings.eps, eps)
    return source.published if same and settings.version == "standard" else None


def _provenance(source: ModelSource, request: ModelRequest, *, dataset: str) -> dict[str, Any]:
    """Where the weights and the examples came from."""
    from ikl_zoo.data import data_source, is_official_cifar
    from ikl_zoo.zoo.checkpoints import file_sha256

    path = source.checkpoint_path
    on_disk = path is not None and Path(path).is_file()
    digest = source.checkpoint_sha256 or (file_sha256(path) if on_disk else None)
    return {
        "model_source": source.description, "replaced_weights": source.replaced_weights,
        "checkpoint": str(path) if path is not None else None, "checkpoint_sha256": digest, "hub": source.hub,
        "data_dir": str(Path(request.data_dir).expanduser().resolve()),
        "data_source": data_source(dataset, data_dir=request.data_dir),
        "official_test_set": is_official_cifar(dataset, data_dir=request.data_dir),
    }
