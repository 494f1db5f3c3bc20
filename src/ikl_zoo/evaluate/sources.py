"""The model an evaluation measures: a registered id, a zoo folder, or ``robustbench:<id>``, loaded by
robustbench's own ``load_model`` (pickles, forced to ``weights_only=True``) so peers are measured alike.
"""

from __future__ import annotations

import difflib
import os
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from ikl_zoo._robustbench import ROBUSTBENCH_PREFIX
from ikl_zoo.errors import CheckpointError, IklZooError, UnknownModelError, first_line
from ikl_zoo.reference import STANDARD_EPS, published_figures


@dataclass
class ModelSource:
    """A loaded network and what the record needs to say about where it came from."""

    model: nn.Module
    model_id: str
    description: str
    checkpoint_path: Path | None = None
    published: dict[str, Any] | None = None
    published_threat: tuple[str, float] | None = None
    """(norm, eps) the published figures were measured under."""
    checkpoint_sha256: str | None = None
    """sha256 of ``checkpoint_path`` when the loader already computed it."""
    replaced_weights: str | None = None
    """The checkpoint a registered model was given instead of its published weights: a record of it must
    never stand for the registered model."""
    hub: dict[str, str | None] | None = None
    """For weights served by the Hub: the repository, the revision asked for and the commit it served."""


def load_for_evaluation(
    model_id: str, *, dataset: str, threat_model: str = "Linf", revision: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
    robustbench_dir: str | os.PathLike[str] | None = None,
) -> ModelSource:
    """Load ``model_id`` (registered id, zoo folder, or ``robustbench:<id>``) on ``device``, in eval mode."""
    if model_id.startswith(ROBUSTBENCH_PREFIX):
        if checkpoint is not None:
            problem = "--checkpoint replaces an ikl-zoo model's weights; robustbench: models load their own"
            raise CheckpointError(problem)
        name, board = model_id.removeprefix(ROBUSTBENCH_PREFIX), {"dataset": dataset}
        board["threat_model"] = threat_model
        model, path = load_robustbench_model(name, **board, model_dir=robustbench_dir)
        published = published_figures(name, **board)
        return ModelSource(
            model=model.to(device).eval(), model_id=model_id, checkpoint_path=path, published=published,
            description=f"RobustBench model zoo ({name}, {dataset}, {threat_model})",
            published_threat=(threat_model, STANDARD_EPS[threat_model]) if published is not None else None,
        )

    from ikl_zoo.zoo.loading import load, read_spec
    from ikl_zoo.zoo.registry import is_registered

    registered, folder = is_registered(model_id, dataset=dataset), Path(model_id).expanduser()
    if not registered and folder.is_dir():  # before its weights are read
        _check_dataset(folder, read_spec(folder).dataset, dataset=dataset)
    loaded = load(model_id, dataset=dataset, checkpoint=checkpoint, device=device, revision=revision)
    if not registered:  # an hf-hub: repository says it only once read
        _check_dataset(model_id, loaded.spec.dataset, dataset=dataset)
    source = ModelSource(
        model=loaded.network, model_id=model_id, description=loaded.description,
        checkpoint_path=loaded.weights_path, checkpoint_sha256=loaded.sha256,
    )
    if loaded.hub_commit is not None:
        source.hub = {"repo": loaded.hub_repo or loaded.spec.hub_repo_id(), "commit": loaded.hub_commit,
                      "revision": loaded.hub_revision or revision or loaded.spec.revision}
    if registered and checkpoint is not None:
        source.replaced_weights = str(checkpoint)
    elif registered and loaded.spec.published is not None:
        source.published = loaded.spec.published.to_dict()
        source.published_threat = (loaded.spec.threat_model, loaded.spec.eps)
    return source


def _check_dataset(model: str | Path, trained_on: str | None, *, dataset: str) -> None:
    """Its labels would fit a wider head (CIFAR-10's 0-9 in CIFAR-100's 100 outputs): refuse it here."""
    if trained_on is not None and trained_on != dataset:
        problem = f"{model} holds a {trained_on} model (its config.json says so), not a {dataset} one"
        raise UnknownModelError(problem, fix=f"pass --dataset {trained_on}")


def load_robustbench_model(
    name: str, *, dataset: str, threat_model: str, model_dir: str | os.PathLike[str] | None = None
) -> tuple[nn.Module, Path]:
    """A model of RobustBench's zoo through ``robustbench.utils.load_model``, and its checkpoint's path."""
    from ikl_zoo._robustbench import import_robustbench, robustbench_model_dicts
    from ikl_zoo.zoo.hub import zoo_cache_dir

    zoo = robustbench_model_dicts()
    if dataset not in zoo or threat_model not in zoo[dataset]:
        boards = ", ".join(f"{ds}/{tm}" for ds, by_threat in zoo.items() for tm in by_threat)
        raise UnknownModelError(f"RobustBench has no {dataset}/{threat_model} models: it has {boards}")
    names = list(zoo[dataset][threat_model])
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(ROBUSTBENCH_PREFIX + c for c in close)}?" if close else (
            "see robustbench.model_zoo for the ids"
        )
        raise UnknownModelError(f"RobustBench has no {dataset}/{threat_model} model {name!r}: {hint}")

    import_robustbench()
    from robustbench.utils import load_model as robustbench_load_model

    model_dir = Path(model_dir) if model_dir is not None else zoo_cache_dir() / "robustbench"
    path = model_dir / dataset / threat_model / f"{name}.pt"
    try:
        with _weights_only_torch_load():
            model = robustbench_load_model(
                model_name=name, dataset=dataset, threat_model=threat_model, model_dir=str(model_dir)
            )
    except IklZooError:
        raise
    except Exception as error:  # gdown, requests, torch.load: any failure is the same fix for the user
        reason = f"{type(error).__name__}: {first_line(error)}"
        if path.is_file():
            fix = "delete it to download it again, or put the right checkpoint there"
            raise CheckpointError(f"robustbench could not load {path} ({reason})", fix=fix) from None
        problem = f"robustbench could not download {name} from Google Drive ({reason})"
        raise CheckpointError(problem, fix=f"put its checkpoint at {path}") from None
    return model, path


def _weights_only_torch_load() -> ContextManager[Any]:
    """robustbench calls ``torch.load`` without ``weights_only``: force it, so a download never runs code."""
    load = torch.load
    return mock.patch.object(torch, "load", lambda *args, **kw: load(*args, **{**kw, "weights_only": True}))
