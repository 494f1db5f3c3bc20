"""Publishing weights: convert any checkpoint into a Hub-ready zoo folder, check it, push it to the Hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ikl_zoo.errors import CheckpointError, PublishError
from ikl_zoo.zoo.checkpoints import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    file_sha256,
    model_from_config,
    read_zoo_config,
    read_zoo_folder,
    save_zoo_folder,
    state_dict_mismatch,
)
from ikl_zoo.zoo.registry import get_model_entry

PUSHED_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)


def convert_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model_id: str,
    dataset: str = "cifar10",
) -> Path:
    """Turn a checkpoint in any supported format into a zoo folder with its model card; returns the folder.

    The checkpoint is loaded strictly into the registered architecture first, so a folder is only
    written for weights that fit.
    """
    from ikl_zoo.zoo.loading import load_model

    entry = get_model_entry(model_id, dataset=dataset)
    model = load_model(model_id, dataset=dataset, checkpoint=checkpoint)
    checkpoint = Path(checkpoint)
    source: dict[str, Any] = {"checkpoint": checkpoint.name}
    if checkpoint.is_file():
        source["sha256"] = file_sha256(checkpoint)
    folder = save_zoo_folder(model, out_dir, entry_or_config=entry, extra={"source": source})
    from ikl_zoo.cards import write_model_card

    write_model_card(entry, folder, config=read_zoo_config(folder))
    return folder


def validate_zoo_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of a folder safe to publish: both files present, sha256 matching, weights fitting."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(
            f"{folder} is not a folder; make one with `ikl-zoo convert CKPT --model ID -o DIR`"
        )
    try:
        config, state = read_zoo_folder(folder)
        if not config.get("sha256"):
            raise CheckpointError(f"{folder / CONFIG_NAME} has no sha256 of {WEIGHTS_NAME}")
        missing = [key for key in ("model_id", "dataset", "threat_model", "eps") if key not in config]
        if missing:
            raise CheckpointError(f"{folder / CONFIG_NAME} lacks {', '.join(missing)}")
        import torch

        with torch.device("meta"):
            skeleton = model_from_config(config)
        problem = state_dict_mismatch(skeleton, state)
        if problem:
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME} does not fit its config.json architecture: {problem}"
            )
    except CheckpointError as error:
        raise PublishError(f"not pushing {folder}: {error}") from None
    return config


def push_zoo_folder(
    folder: str | os.PathLike[str],
    *,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Validate a zoo folder and upload it to ``repo_id`` (created if needed); returns the commit URL.

    Only ``model.safetensors``, ``config.json`` and ``README.md`` are uploaded. ``token`` defaults to
    ``HF_TOKEN`` / the stored login, as everywhere in huggingface_hub.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    config = validate_zoo_folder(folder)
    api = HfApi(token=token)
    message = commit_message or f"Upload {config['model_id']} ({config['dataset']}) with ikl-zoo"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=message,
            allow_patterns=list(PUSHED_FILES),
        )
    except (HfHubHTTPError, OSError, ValueError) as error:
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise PublishError(f"the Hub refused the upload to {repo_id}: {first} (log in with `hf auth login` "
                           "or pass --token with write access)") from None
    return str(getattr(commit, "commit_url", commit))
