"""A registered id, an ``hf-hub:`` name or a zoo folder in, the network with verified weights out, in eval
mode; strictly: every key and shape must match, and a checkpoint for the other dataset is named as such."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ikl_zoo.errors import CheckpointError, UnknownModelError
from ikl_zoo.threat import CONFIG_NAME, HF_HUB_PREFIX, WEIGHTS_NAME
from ikl_zoo.zoo.checkpoints import (
    build_loaded,
    file_sha256,
    read_folder,
    read_spec,
    read_state_dict,
    save_zoo_folder,
)
from ikl_zoo.zoo.hub import Weights, fetch_hub_model, fetch_weights, parse_hub_name
from ikl_zoo.zoo.registry import get_model_entry, is_registered
from ikl_zoo.zoo.spec import ModelSpec, model_from_config

__all__ = ["LoadedModel", "file_sha256", "load", "load_model", "model_from_config", "read_folder",
           "read_spec", "read_state_dict", "save_zoo_folder"]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded network and what a record says about it: where its weights came from, hashed once."""

    network: nn.Module
    spec: ModelSpec
    description: str  # where the model came from, e.g. "<id> (<architecture>), published weights"
    weights_path: Path
    sha256: str
    hub_commit: str | None = None  # for published weights that came from the Hub: the commit it served
    hub_repo: str | None = None  # for an ``hf-hub:`` model: the repository ("ORG/NAME")
    hub_revision: str | None = None  # for an ``hf-hub:`` model: the revision asked for (branch, tag, commit)


def load_model(
    model_id: str | os.PathLike[str], *, dataset: str = "cifar10", device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike[str] | None = None, revision: str | None = None,
) -> nn.Module:
    """The network with its weights, on ``device``, in eval mode. ``model_id`` is a registered id
    (``ikl-zoo list``) for ``dataset``, ``hf-hub:ORG/NAME[@REVISION]`` (a zoo folder on the Hub) or a local
    zoo folder (its config says the dataset). ``checkpoint`` replaces the published weights with a local file
    or zoo folder ``read_state_dict`` reads; ``revision`` pins the Hub's."""
    return load(model_id, dataset=dataset, checkpoint=checkpoint, device=device, revision=revision).network


def load(
    model_id: str | os.PathLike[str], *, dataset: str = "cifar10", device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike[str] | None = None, revision: str | None = None,
) -> LoadedModel:
    """``load_model``, plus the spec, where the weights came from and their sha256 (each fetched once)."""
    hub_name, hub, folder = parse_hub_name(str(model_id), revision=revision), {}, Path(model_id).expanduser()
    if hub_name is not None and checkpoint is not None:
        raise CheckpointError(f"{model_id} brings its own weights: a checkpoint cannot replace them",
                              fix="leave the checkpoint out, or name the registered id it belongs to")
    spec = None if hub_name else _registered(str(model_id), dataset)
    if hub_name is not None:
        weights, (repo_id, hub_revision) = fetch_hub_model(*hub_name), hub_name
        spec, source = weights.spec, f"{HF_HUB_PREFIX}{repo_id}@{hub_revision}"
        state, description = read_state_dict(weights.path), f"{source} ({spec.architecture})"
        hub = {"hub_repo": repo_id, "hub_revision": hub_revision}
    elif checkpoint is not None or spec is None:  # a local file or zoo folder, hashed once
        path = folder if checkpoint is None else Path(checkpoint).expanduser()
        if path.is_dir():
            _, state, sha256 = read_folder(path)
            weights = Weights(path / WEIGHTS_NAME, sha256)
        else:
            state, weights = read_state_dict(path), Weights(path, file_sha256(path))
        source = str(weights.path if checkpoint is None else path)
        description = f"{model_id} with weights from {checkpoint}" if spec else f"zoo folder {folder}"
        spec = spec or read_spec(folder)
    else:
        weights = fetch_weights(spec, revision=revision)
        state, source = read_state_dict(weights.path), str(weights.path)
        description = f"{model_id} ({spec.architecture}), published weights"
    network = build_loaded(spec, state, source=source)
    return LoadedModel(network.to(device).eval(), spec, description, weights.path, weights.sha256,
                       weights.commit, **hub)


def _registered(model_id: str, dataset: str) -> ModelSpec | None:
    """The registry entry, None for an existing folder, or the registry's one-line error for anything else."""
    if not model_id.strip():
        raise UnknownModelError("empty model id", fix="pass a registered id (`ikl-zoo list`) or a zoo folder")
    if is_registered(model_id, dataset=dataset):
        return get_model_entry(model_id, dataset=dataset)
    path = Path(model_id).expanduser()
    if path.is_dir():
        return None
    if os.sep in model_id or "/" in model_id or path.suffix:
        raise CheckpointError(f"{model_id} is neither a registered model nor a zoo folder ({WEIGHTS_NAME} + "
                              f"{CONFIG_NAME})", fix="pass a registered id (`ikl-zoo list`) or the folder "
                              "written by `ikl-zoo convert`")
    return get_model_entry(model_id, dataset=dataset)  # raises with close names / the other dataset
