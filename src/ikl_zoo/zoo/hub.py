"""Published weights: the Hugging Face Hub first, the authors' original Google Drive files second.

The Hub is reached only through ``huggingface_hub.hf_hub_download``, so its cache, ``HF_HUB_OFFLINE``,
``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and ``HF_TOKEN`` work as everywhere else. The repository is
``<IKL_ZOO_HUB_NAMESPACE>/<name>`` (namespace ``ikl-zoo`` by default) at the registry's pinned revision.

When the Hub does not have the weights (or cannot be reached and has nothing cached), the original
PyTorch checkpoint is fetched from Google Drive with gdown (without any Hugging Face token), loaded with
``torch.load(weights_only=True)``, checked against the architecture and converted once into a zoo folder
(``model.safetensors`` + ``config.json``, the same files as the Hub repository) in the ikl-zoo cache::

    $IKL_ZOO_CACHE/gdrive/<dataset>/<model_id>/     (default IKL_ZOO_CACHE: $HF_HOME/ikl-zoo)

Later loads use that folder, offline included. sha256 is verified whenever it is known.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ikl_zoo import __version__
from ikl_zoo.errors import CheckpointError, DownloadError, first_line
from ikl_zoo.zoo.checkpoints import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    file_sha256,
    is_html_file,
    read_state_dict,
    read_zoo_config,
    save_zoo_folder,
    verify_sha256,
)
from ikl_zoo.zoo.registry import ModelEntry, get_model_entry


class _HostMiss(Exception):
    """One host could not provide the weights; the reason ends up in the final one-line error."""


def zoo_cache_dir() -> Path:
    """ikl-zoo's own cache: ``$IKL_ZOO_CACHE``, else ``$HF_HOME/ikl-zoo``."""
    from huggingface_hub import constants

    return Path(os.environ.get("IKL_ZOO_CACHE") or Path(constants.HF_HOME) / "ikl-zoo").expanduser()


def drive_cache_folder(entry: ModelEntry) -> Path:
    """Zoo folder holding an entry's Google Drive checkpoint converted to safetensors."""
    return zoo_cache_dir() / "gdrive" / entry.dataset / entry.model_id


def download_checkpoint(model_id: str, *, dataset: str = "cifar10", revision: str | None = None) -> Path:
    """Local path of a registered model's weights (safetensors), fetched if needed and sha256-verified.

    Tries the Hugging Face Hub (``revision`` overrides the registry's pinned one), then the ikl-zoo cache
    of converted Google Drive files, then Google Drive itself (skipped when ``HF_HUB_OFFLINE`` is set).
    An explicit ``revision`` is served by the Hub only: the Drive original is not that revision.
    Raises ``DownloadError`` naming every attempt and the fix, ``ChecksumMismatchError`` on a bad file.
    """
    entry = get_model_entry(model_id, dataset=dataset)
    pretrained = entry.pretrained
    if revision is not None and not revision.strip():
        raise DownloadError("empty revision: pass a Hub branch, tag or commit, or leave --revision out")
    if revision is not None and not pretrained.hub_repo_name:
        raise DownloadError(
            f"{model_id} ({dataset}) has no Hugging Face Hub repository, so no revision: leave --revision out"
        )
    if pretrained.package_file:
        from ikl_zoo.zoo.loading import package_file_path

        return package_file_path(entry)
    attempts: list[str] = []
    if pretrained.hub_repo_name:
        pinned_by_caller = revision is not None
        revision = revision or pretrained.revision
        try:
            return _from_hub(entry, revision)
        except _HostMiss as miss:
            attempts.append(f"Hugging Face Hub {pretrained.hub_repo_id()}@{revision}: {miss}")
        if pinned_by_caller:
            raise DownloadError(
                f"could not get the weights of {model_id} ({dataset}): {attempts[0]}. Only the Hub serves an "
                "explicit revision: fix the revision, or leave --revision out to use the pinned one "
                "(Google Drive original included)"
            )
    cached = _from_drive_cache(entry)
    if cached is not None:
        return cached
    if pretrained.gdrive_id:
        if _offline():
            attempts.append(f"Google Drive {pretrained.gdrive_id}: skipped (HF_HUB_OFFLINE is set)")
        else:
            try:
                return _from_drive(entry)
            except _HostMiss as miss:
                attempts.append(f"Google Drive {pretrained.gdrive_id}: {miss}")
    fixes = ["use a local copy of the file (`ikl-zoo eval --checkpoint PATH`, checkpoint= in Python, "
             "or `ikl-zoo convert PATH` for a zoo folder)"]
    if _offline():
        fixes.append("unset HF_HUB_OFFLINE")
    else:
        fixes.append("check the network or set HF_ENDPOINT to a reachable mirror")
    if pretrained.hub_repo_name:
        fixes.append("set IKL_ZOO_HUB_NAMESPACE if another organisation hosts the weights")
    raise DownloadError(
        f"could not get the weights of {model_id} ({dataset}): {'; '.join(attempts) or 'no host is known'}. "
        f"Fix: {'; or '.join(fixes)}"
    )


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


# --------------------------------------------------------------------------------------------------
# Hugging Face Hub
# --------------------------------------------------------------------------------------------------


def _from_hub(entry: ModelEntry, revision: str) -> Path:
    repo_id = entry.pretrained.hub_repo_id()
    assert repo_id is not None
    config_path = _hub_file(repo_id, CONFIG_NAME, revision)
    weights = _hub_file(repo_id, entry.pretrained.filename, revision)
    expected = entry.pretrained.sha256 or _config_sha256(config_path, entry)
    if expected:
        # A snapshot file links to a blob: only removing the repository's cache folder forces a fresh copy.
        repo_cache = weights.parents[2]
        verify_sha256(weights, expected, fix=f"delete {repo_cache} and rerun to download it again")
    return weights


def _hub_file(repo_id: str, filename: str, revision: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            hf_hub_download(
                repo_id, filename, revision=revision, library_name="ikl-zoo", library_version=__version__
            )
        )
    except LocalEntryNotFoundError:
        state = "offline (HF_HUB_OFFLINE is set)" if _offline() else "unreachable"
        raise _HostMiss(f"{state} and {filename} is not in the Hub cache") from None
    except GatedRepoError:
        raise _HostMiss("the repository is gated: accept its terms and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise _HostMiss("repository not found (or private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise _HostMiss(f"revision {revision} not found") from None
    except EntryNotFoundError:
        raise _HostMiss(f"{filename} not found in the repository") from None
    except (HfHubHTTPError, OSError, ValueError, *transport_errors()) as error:
        raise _HostMiss(first_line(error)) from None


def transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's own network errors: httpx (huggingface_hub 1.x) or httpx2 (later); OSError covers
    requests (0.x). Their errors are not OSErrors."""
    import importlib

    errors: list[type[Exception]] = []
    for client in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except ImportError:
            continue
    return tuple(errors)


def _config_sha256(config_path: Path, entry: ModelEntry) -> str | None:
    """The sha256 a Hub repository's config.json records for its weights (it guards against truncation)."""
    if entry.pretrained.filename != WEIGHTS_NAME:
        return None
    try:
        config = read_zoo_config(config_path.parent)
    except CheckpointError as error:  # without it a truncated download would pass unchecked
        raise _HostMiss(f"the repository's {CONFIG_NAME} is damaged ({_problem_only(error)})") from None
    return config.get("sha256")


def _problem_only(error: CheckpointError) -> str:
    """``read_zoo_config``'s message without its fix, which is for a user's own folder, not a download."""
    return str(error).split("; ")[0]


# --------------------------------------------------------------------------------------------------
# Google Drive
# --------------------------------------------------------------------------------------------------


def _from_drive_cache(entry: ModelEntry) -> Path | None:
    folder = drive_cache_folder(entry)
    weights = folder / WEIGHTS_NAME
    if not (weights.is_file() and (folder / CONFIG_NAME).is_file()):
        return None
    fix = f"delete {folder} and rerun to convert it again"
    try:
        config = read_zoo_config(folder)
    except CheckpointError as error:
        raise CheckpointError(f"the ikl-zoo cache is damaged: {_problem_only(error)}; {fix}") from None
    expected = entry.pretrained.sha256 or config.get("sha256")
    if expected:
        verify_sha256(weights, expected, fix=fix)
    return weights


def _from_drive(entry: ModelEntry) -> Path:
    """Download the authors' checkpoint (no Hugging Face token involved), convert it, return its weights."""
    folder = drive_cache_folder(entry)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{entry.model_id}.") as tmp:
            return _convert_from_drive(entry, folder, Path(tmp))
    except OSError as error:
        raise _HostMiss(
            f"cannot write the ikl-zoo cache {folder} ({first_line(error)}): set IKL_ZOO_CACHE to a folder "
            "you can write"
        ) from None


def _convert_from_drive(entry: ModelEntry, folder: Path, tmp: Path) -> Path:
    import gdown

    gdrive_id = entry.pretrained.gdrive_id
    original = tmp / f"{entry.model_id}.pt"
    try:
        result = gdown.download(id=gdrive_id, output=str(original), quiet=False)
    except Exception as error:  # gdown raises its own and requests' exceptions
        raise _HostMiss(f"download failed ({first_line(error)})") from None
    if result is None or not original.is_file() or original.stat().st_size == 0:
        raise _HostMiss("download failed (no file received)")
    if is_html_file(original):
        raise _HostMiss("received an HTML page, not weights (Google Drive quota?): try again later")
    try:
        state = read_state_dict(original)
        model = entry.create()
        from ikl_zoo.zoo.loading import load_state_dict_strict

        load_state_dict_strict(
            model, state, source=f"Google Drive file {gdrive_id}", model_name=entry.model_id,
            dataset=entry.dataset,
        )
    except CheckpointError as error:
        raise _HostMiss(str(error)) from None
    source = {"host": "Google Drive", "gdrive_id": gdrive_id, "original_sha256": file_sha256(original)}
    save_zoo_folder(model, folder, entry_or_config=entry, extra={"source": source})
    weights = folder / WEIGHTS_NAME
    if entry.pretrained.sha256:
        verify_sha256(weights, entry.pretrained.sha256, fix=f"delete {folder} and rerun to convert it again")
    return weights
