"""``evaluate_model``: what ``ikl-zoo eval`` does: load the model and RobustBench's test examples, evaluate.

Under ``torchrun`` every rank calls it; rank 0 fetches weights and data first (the others then read the
caches), chunks are dealt to the ranks, and every rank returns the merged result.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ikl_zoo.evaluate.distributed import process_group_from_environment
from ikl_zoo.evaluate.prepare import resolve_device
from ikl_zoo.evaluate.result import EvalResult
from ikl_zoo.evaluate.runner import DEFAULT_CHUNK_SIZE, evaluate
from ikl_zoo.evaluate.sources import load_for_evaluation

DEFAULT_N_EXAMPLES = 10_000
"""RobustBench evaluates on the full CIFAR test split."""


def default_run_dir(model_id: str, *, dataset: str, norm: str, eps: float, version: str) -> Path:
    """``runs/<model>_<dataset>_<norm>_<eps>_<version>``: one folder per measurement, safe as a file name."""
    from ikl_zoo.evaluate.summary import format_eps

    name = f"{model_id}_{dataset}_{norm}_{format_eps(eps, norm)}_{version}"
    return Path("runs") / re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def evaluate_model(
    model_id: str,
    *,
    dataset: str = "cifar10",
    checkpoint: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    data_dir: str | os.PathLike[str] = "data",
    download: bool = True,
    n_examples: int = DEFAULT_N_EXAMPLES,
    eps: float = 8 / 255,
    norm: str = "Linf",
    version: str = "standard",
    attacks: Sequence[str] | None = None,
    attack_options: Mapping[str, Mapping[str, float]] | None = None,
    seed: int = 0,
    batch_size: int | str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: str | torch.device = "auto",
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    channels_last: bool | None = None,
    compile_model: bool = False,
    robustbench_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Evaluate a registered id, zoo folder or ``robustbench:<id>`` on the first ``n_examples`` test images.

    Missing CIFAR data is downloaded into ``data_dir`` unless ``download`` is off. The published figures
    are attached when the run's threat model and version are the ones they were measured under. With
    ``out``, chunks and ``result.json`` are written there (see :func:`evaluate`).
    """
    from ikl_zoo.data import data_source, is_official_cifar, load_test_examples
    from ikl_zoo.zoo.checkpoints import file_sha256

    resolved = resolve_device(device, nn.Identity())
    with process_group_from_environment(resolved) as shard:
        with shard.main_first():
            source = load_for_evaluation(
                model_id, dataset=dataset, threat_model=norm, checkpoint=checkpoint, revision=revision,
                device=resolved, robustbench_dir=robustbench_dir,
            )
            x, y = load_test_examples(dataset, data_dir=data_dir, n_examples=n_examples, download=download)
        published = None
        if source.published is not None and source.published_threat is not None:
            published_norm, published_eps = source.published_threat
            same_eps = math.isclose(eps, published_eps, abs_tol=1e-9)
            if norm == published_norm and same_eps and version == "standard":
                published = source.published
        checkpoint_path = source.checkpoint_path
        provenance = {
            "model_source": source.description,
            "replaced_weights": source.replaced_weights,
            "checkpoint": str(checkpoint_path) if checkpoint_path is not None else None,
            "checkpoint_sha256": source.checkpoint_sha256 or (file_sha256(checkpoint_path)
            if checkpoint_path is not None and Path(checkpoint_path).is_file() else None),
            "data_dir": str(Path(data_dir).expanduser().resolve()),
            "data_source": data_source(dataset, data_dir=data_dir),
            "official_test_set": is_official_cifar(dataset, data_dir=data_dir),
        }
        return evaluate(
            source.model, x, y, eps=eps, norm=norm, version=version, attacks=attacks,
            attack_options=attack_options, seed=seed, batch_size=batch_size, chunk_size=chunk_size,
            device=resolved, out=out, resume=resume, channels_last=channels_last, compile_model=compile_model,
            model_id=model_id, dataset=dataset, published=published, provenance=provenance, progress=progress,
        )
