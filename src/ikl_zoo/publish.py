"""Publishing weights: a checkpoint into a Hub-ready zoo folder with its model card, checked, then pushed.
It uses both the zoo and the cards, so that the zoo never imports the cards."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ikl_zoo.errors import CheckpointError, PublishError, first_line
from ikl_zoo.zoo.checkpoints import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_finite,
    check_fits,
    read_folder,
    read_zoo_config,
    save_zoo_folder,
)
from ikl_zoo.zoo.hub import transport_errors
from ikl_zoo.zoo.loading import load

PUSHED_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)


def convert_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model_id: str,
    dataset: str = "cifar10",
    overwrite: bool = False,
) -> Path:
    """Turn a checkpoint in any supported format into a zoo folder with its model card; returns the folder.

    The checkpoint is loaded strictly into the registered architecture first. A folder that already holds
    anything is refused unless ``overwrite`` (then its three files are replaced, the rest kept).
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise PublishError(f"{out_dir} is a file", fix="pass an -o/--out folder")
    present = sorted(path.name for path in out_dir.iterdir()) if out_dir.is_dir() else []
    if present and not overwrite:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise PublishError(
            f"{out_dir} is not empty ({shown})",
            fix=f"pass a new -o/--out folder, or --overwrite to replace its {', '.join(PUSHED_FILES)}",
        )
    loaded = load(model_id, dataset=dataset, checkpoint=checkpoint)
    checkpoint = Path(checkpoint).expanduser()
    source = {"checkpoint": checkpoint.name, **({"sha256": loaded.sha256} if checkpoint.is_file() else {})}
    from ikl_zoo.cards import write_model_card

    try:
        spec = loaded.spec
        folder = save_zoo_folder(loaded.network, out_dir, entry_or_config=spec, extra={"source": source})
        write_model_card(spec, folder, config=read_zoo_config(folder))
    except OSError as error:
        raise PublishError(
            f"cannot write {out_dir} ({error.strerror or type(error).__name__})",
            fix="pass an -o/--out folder you can write",
        ) from None
    return folder


def validate_zoo_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of a folder safe to publish: both files present, sha256 matching, weights fitting."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder",
                           fix="make one with `ikl-zoo convert CKPT --model ID -o DIR`")
    try:
        spec, state, _ = read_folder(folder)
        if not spec.sha256:
            raise CheckpointError(f"{folder / CONFIG_NAME} has no sha256 of {WEIGHTS_NAME}")
        check_fits(spec, state, what=str(folder / WEIGHTS_NAME))
        check_finite(state, source=str(folder / WEIGHTS_NAME), fix="convert another checkpoint")
    except CheckpointError as error:
        raise PublishError(f"not pushing {folder}: {error.problem}", fix=error.fix) from None
    return spec.to_json()


def _refusal_fix(error: Exception, repo_id: str) -> str:
    """What to do about the Hub's answer: only an authentication failure is fixed by logging in."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    owner = repo_id.split("/")[0]
    return {
        401: "log in with `hf auth login` or pass --token",
        403: f"the token may not write to {owner}: use a write token of an account that may",
        404: f"{owner} does not exist on this Hub or is not visible to the token: check --repo-id",
        None: "check the folder and the arguments",
    }.get(status, f"HTTP {status}: the Hub's reason is above")


def push_zoo_folder(
    folder: str | os.PathLike[str],
    *,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Validate a zoo folder and upload its three files to ``repo_id`` (created if needed); returns the
    commit URL. ``token`` defaults to ``HF_TOKEN`` / the stored login, as everywhere in huggingface_hub."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"invalid --repo-id {repo_id!r} ({error})", fix="pass ORG/NAME") from None
    if revision is not None and not revision.strip():
        raise PublishError("empty --revision", fix="pass a branch name, or leave it out to push to main")
    config = validate_zoo_folder(folder)
    api = HfApi(token=token)
    message = commit_message or f"Upload {config['model_id']} ({config['dataset']}) with ikl-zoo"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if private and not api.repo_info(repo_id, repo_type="model").private:
            # create_repo(exist_ok=True) leaves an existing repository as it is: public stays public.
            raise PublishError(
                f"{repo_id} already exists and is public: not uploading what --private asked to keep private",
                fix="make the repository private on the Hub first, or leave --private out",
            )
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=message,
            allow_patterns=list(PUSHED_FILES),
        )
    except (HfHubHTTPError, ValueError) as error:
        raise PublishError(
            f"the Hub refused the upload to {repo_id} ({first_line(error)})", fix=_refusal_fix(error, repo_id)
        ) from None
    except (OSError, *transport_errors()) as error:
        from huggingface_hub import constants

        raise PublishError(
            f"could not reach the Hub at {constants.ENDPOINT} to upload to {repo_id} ({first_line(error)})",
            fix="check the network or HF_ENDPOINT",
        ) from None
    return str(getattr(commit, "commit_url", commit))
