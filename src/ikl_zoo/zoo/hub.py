"""Published weights: the Hugging Face Hub first, the authors' original Google Drive files second.
The Hub is reached only through ``hf_hub_download`` (its cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``,
``HF_HOME`` and ``HF_TOKEN`` work as everywhere else): a registry entry lives in
``<IKL_ZOO_HUB_NAMESPACE or ikl-zoo>/<name>`` at its pinned revision, an ``hf-hub:ORG/NAME`` name is any zoo
folder. Otherwise the authors' checkpoint comes from Google Drive (no Hugging Face token sent) and is
converted once into ``$IKL_ZOO_CACHE/gdrive/<dataset>/<model_id>/`` (default ``$HF_HOME/ikl-zoo``)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikl_zoo import __version__
from ikl_zoo.errors import CheckpointError, DownloadError, first_line
from ikl_zoo.threat import CONFIG_NAME, HF_HUB_PREFIX, WEIGHTS_NAME
from ikl_zoo.zoo import checkpoints
from ikl_zoo.zoo.registry import ModelSpec, get_model_entry

ZOO_FOLDER_FIX = ("make a zoo folder with `ikl-zoo convert CHECKPOINT --model ID -o DIR`, then "
                  "`ikl-zoo push DIR --repo-id ORG/NAME`")


@dataclass(frozen=True)
class Weights:
    """A local, verified copy of a model's published weights."""

    path: Path
    sha256: str  # hashed once, while verifying
    commit: str | None = None  # the Hub commit (snapshot folder) the file came from
    spec: ModelSpec | None = None  # for a Hub zoo folder: what its config.json describes


class _FileMissing(DownloadError):
    """The repository answered, but has no such file."""


def zoo_cache_dir() -> Path:
    """ikl-zoo's own cache: ``$IKL_ZOO_CACHE``, else ``$HF_HOME/ikl-zoo``."""
    from huggingface_hub import constants

    return Path(os.environ.get("IKL_ZOO_CACHE") or Path(constants.HF_HOME) / "ikl-zoo").expanduser()


def drive_cache_folder(spec: ModelSpec) -> Path:
    """Zoo folder holding a model's Google Drive checkpoint converted to safetensors."""
    return zoo_cache_dir() / "gdrive" / spec.dataset / spec.model_id


def download_checkpoint(model_id: str, *, dataset: str = "cifar10", revision: str | None = None) -> Path:
    """Local path of a registered model's weights (safetensors), fetched if needed and sha256-verified."""
    return fetch_weights(get_model_entry(model_id, dataset=dataset), revision=revision).path


def fetch_weights(spec: ModelSpec, *, revision: str | None = None) -> Weights:
    """A registered model's weights: a package file, the Hub, the converted Drive cache, then Google Drive;
    an explicit ``revision`` is served by the Hub only. ``DownloadError`` names every attempt and the fix."""
    name = f"{spec.model_id} ({spec.dataset})"
    if revision is not None and not revision.strip():
        raise DownloadError("empty revision", fix="pass a Hub branch, tag or commit, or leave --revision out")
    if revision is not None and not spec.hub_repo_name:
        raise DownloadError(f"{name} has no Hugging Face Hub repository, so no revision",
                            fix="leave --revision out")
    if spec.package_file:
        return package_file_weights(spec)
    attempts: list[str] = []
    if spec.hub_repo_name:
        repo_id, pinned = spec.hub_repo_id(), revision or spec.revision
        try:
            return _hub_folder(repo_id, pinned, sha256=spec.sha256)
        except DownloadError as miss:  # its fix is for the repository's owner: only the problem is told
            attempts.append(f"Hugging Face Hub {repo_id}@{pinned}: {miss.problem}")
        if revision is not None:
            raise DownloadError(f"could not get the weights of {name}: {attempts[0]}",
                                fix="Only the Hub serves an explicit revision: fix the revision, or leave "
                                "--revision out to use the pinned one (Google Drive original included)")
    if (cached := _from_drive_cache(spec)) is not None:
        return cached
    drive_fix = None
    if spec.gdrive_id:
        try:
            return _from_drive(spec)
        except DownloadError as miss:
            attempts.append(miss.problem)
            drive_fix = miss.fix
    raise DownloadError(f"could not get the weights of {name}: {'; '.join(attempts) or 'no host is known'}",
                        fix="; or ".join(filter(None, [drive_fix, _download_fix(spec)])))


def _download_fix(spec: ModelSpec | None) -> str:
    fixes = ["use a local copy of the file (`ikl-zoo eval --checkpoint PATH`, checkpoint= in Python, "
             "or `ikl-zoo convert PATH` for a zoo folder)",
             "unset HF_HUB_OFFLINE" if _offline() else "check the network or set HF_ENDPOINT to a mirror"]
    if spec and spec.hub_repo_name:
        fixes.append("set IKL_ZOO_HUB_NAMESPACE if another organisation hosts the weights")
    return "; or ".join(fixes)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def package_file_weights(spec: ModelSpec) -> Weights:
    """The weights an installed package ships (``"package:relative/path"``), verified and hashed once."""
    package, _, relative = spec.package_file.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(f"{spec.model_id} needs the package {package}", fix=f"pip install {package}")
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the installed {package}",
                              fix=f"reinstall it (pip install --force-reinstall {package})")
    fix = f"the installed {package} differs from the one ikl-zoo knows: reinstall it"
    return Weights(path, checkpoints.verify_sha256(path, spec.package_file_sha256, fix=fix))


def parse_hub_name(name: str, *, revision: str | None = None) -> tuple[str, str] | None:
    """``(repo_id, revision)`` of an ``hf-hub:ORG/NAME[@REVISION]`` name, None for any other name."""
    if not name.startswith(HF_HUB_PREFIX):
        return None
    repo_id, at, pinned = name[len(HF_HUB_PREFIX) :].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or (at and not pinned):
        raise DownloadError(f"{name!r} is not a Hub model name",
                            fix="write hf-hub:ORG/NAME or hf-hub:ORG/NAME@REV")
    if revision and pinned and revision != pinned:
        raise DownloadError(f"{name} and --revision {revision} disagree", fix="give the revision once")
    return repo_id, pinned or revision or "main"


def fetch_hub_model(repo_id: str, revision: str) -> Weights:
    """A Hub zoo folder: config checked as a ``ModelSpec``, weights against its sha256; any other repository
    gets one line saying what it holds and the fix."""
    try:
        return _hub_folder(repo_id, revision)
    except DownloadError as error:
        raise DownloadError(f"{HF_HUB_PREFIX}{repo_id}@{revision}: {error.problem}",
                            fix=error.fix or _download_fix(None)) from None


def hub_config_sha256(repo_id: str, revision: str) -> str | None:
    """The weights' sha256 a Hub zoo folder's config.json records; None when the Hub has no such folder."""
    try:
        return _hub_spec(repo_id, revision).sha256
    except DownloadError:
        return None


def _hub_folder(repo_id: str, revision: str, *, sha256: str | None = None) -> Weights:
    """Both files of a Hub zoo folder, the weights checked against ``sha256`` (else the config's)."""
    spec = _hub_spec(repo_id, revision)
    expected = sha256 or spec.sha256
    if not expected:  # without it a truncated download would pass unchecked
        raise DownloadError(f"its {CONFIG_NAME} has no sha256 of {WEIGHTS_NAME}", fix=ZOO_FOLDER_FIX)
    weights = _hub_file(repo_id, WEIGHTS_NAME, revision)
    # A snapshot file links to a blob: only removing the repository's cache folder forces a fresh copy.
    fix = f"delete {weights.parents[2]} and rerun to download again"
    actual = checkpoints.verify_sha256(weights, expected, fix=fix)
    return Weights(weights, actual, commit=weights.parent.name, spec=spec)


def _hub_spec(repo_id: str, revision: str) -> ModelSpec:
    """The spec of a Hub repository's config.json, or what else the repository is (timm, transformers...)."""
    try:
        config = _hub_file(repo_id, CONFIG_NAME, revision)
    except _FileMissing:
        pickle = _hub_has(repo_id, "pytorch_model.bin", revision)
        what = " and its weights are only a pickle (pytorch_model.bin)" if pickle else ""
        raise DownloadError(f"not an ikl-zoo folder: {CONFIG_NAME} is missing{what}",
                            fix=ZOO_FOLDER_FIX) from None
    data: Any = {}
    with contextlib.suppress(ValueError):  # not JSON, or not text
        data = json.loads(config.read_text())
    data = data if isinstance(data, dict) else {}
    timm = isinstance(data.get("architecture"), str) or "pretrained_cfg" in data
    if timm or "model_type" in data or "architectures" in data:
        kind = "timm" if timm else "transformers"
        raise DownloadError(f"the repository is a {kind} model, not an ikl-zoo folder", fix=ZOO_FOLDER_FIX)
    try:
        return checkpoints.read_spec(config.parent)
    except CheckpointError as error:  # its fix is for a user's own folder, not a download
        raise DownloadError(f"the repository's {CONFIG_NAME} is damaged ({error.problem})",
                            fix=ZOO_FOLDER_FIX) from None


def _hub_file(repo_id: str, filename: str, revision: str) -> Path:
    """One file through ``hf_hub_download``; ``DownloadError`` saying why it could not come."""
    from huggingface_hub import errors, hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, library_name="ikl-zoo",
                                    library_version=__version__))
    except errors.LocalEntryNotFoundError:
        state = "offline (HF_HUB_OFFLINE is set)" if _offline() else "unreachable"
        reason = f"{state} and {filename} is not in the Hub cache"
    except errors.GatedRepoError:
        reason = "the repository is gated: accept its terms and set HF_TOKEN"
    except errors.RepositoryNotFoundError:
        reason = "repository not found (or private: set HF_TOKEN)"
    except errors.RevisionNotFoundError:
        reason = f"revision {revision} not found"
    except errors.EntryNotFoundError:
        raise _FileMissing(f"{filename} not found in the repository", fix=ZOO_FOLDER_FIX) from None
    except (errors.HfHubHTTPError, OSError, ValueError, *transport_errors()) as error:
        reason = first_line(error)
    raise DownloadError(reason)


def _hub_has(repo_id: str, filename: str, revision: str) -> bool:
    from huggingface_hub import HfApi

    with contextlib.suppress(OSError, ValueError, *transport_errors()):
        return HfApi().file_exists(repo_id, filename, revision=revision)
    return False


def transport_errors() -> tuple[type[Exception], ...]:
    """The network errors of huggingface_hub's HTTP client, httpx (1.x) or httpx2 (later): not OSErrors."""
    errors: list[type[Exception]] = []
    for client in ("httpx", "httpx2"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(client).HTTPError)
    return tuple(errors)


def _from_drive_cache(spec: ModelSpec) -> Weights | None:
    folder = drive_cache_folder(spec)
    weights = folder / WEIGHTS_NAME
    if not (weights.is_file() and (folder / CONFIG_NAME).is_file()):
        return None
    fix = f"delete {folder} and rerun to convert it again"
    try:
        expected = spec.sha256 or checkpoints.read_spec(folder).sha256
    except CheckpointError as error:
        raise CheckpointError(f"the ikl-zoo cache is damaged: {error.problem}", fix=fix) from None
    return Weights(weights, checkpoints.verify_sha256(weights, expected, fix=fix))


def _from_drive(spec: ModelSpec) -> Weights:
    """Download the authors' checkpoint, check that it fits, convert it into the Drive cache."""
    if _offline():
        raise DownloadError(f"Google Drive {spec.gdrive_id}: skipped (HF_HUB_OFFLINE is set)")
    folder, host = drive_cache_folder(spec), spec.gdrive_id
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{spec.model_id}.") as tmp:
            original = download_drive_original(spec, Path(tmp) / f"{spec.model_id}.pt")
            model = checkpoints.build_loaded(spec, checkpoints.read_state_dict(original),
                                             source=f"Google Drive file {host}")
            source = {"host": "Google Drive", "gdrive_id": host,
                      "original_sha256": checkpoints.file_sha256(original)}
            checkpoints.save_zoo_folder(model, folder, entry_or_config=spec, extra={"source": source})
    except DownloadError as error:  # its fix is the mirror command's; the caller gives this one's
        raise DownloadError(error.problem) from None
    except CheckpointError as error:  # the pinned file is at fault, not the user's flags: no fix of theirs
        raise DownloadError(f"Google Drive {host}: {error.problem}") from None
    except OSError as error:
        problem = f"Google Drive {host}: cannot write the ikl-zoo cache {folder} ({first_line(error)})"
        raise DownloadError(problem, fix="set IKL_ZOO_CACHE to a folder you can write") from None
    return _from_drive_cache(spec)  # type: ignore[return-value]  # written just now


def download_drive_original(spec: ModelSpec, output: Path) -> Path:
    """The authors' checkpoint of a registered model, from Google Drive into ``output`` (no Hub token)."""
    import gdown

    host, fix = f"Google Drive {spec.gdrive_id}", "try again later, or pass the file with --from FILE"
    if not spec.gdrive_id:
        raise DownloadError(f"{spec.model_id} has no Google Drive file", fix="pass the file with --from FILE")
    try:
        result = gdown.download(id=spec.gdrive_id, output=str(output), quiet=False)
    except Exception as error:  # gdown raises its own and requests' exceptions
        raise DownloadError(f"{host}: download failed ({first_line(error)})", fix=fix) from None
    if result is None or not output.is_file() or output.stat().st_size == 0:
        raise DownloadError(f"{host}: download failed (no file received)", fix=fix)
    if checkpoints.is_html_file(output):
        raise DownloadError(f"{host}: received an HTML page, not weights (Google Drive quota?)", fix=fix)
    return output
