"""Publishing weights: a checkpoint into a zoo folder with its model card, checked, pushed; mirroring the
authors' Google Drive checkpoints to the Hub once they match RobustBench's networks. Above zoo and cards."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ikl_zoo.cards.model_card import CARD_NAME, write_model_card
from ikl_zoo.errors import CheckpointError, PublishError, first_line
from ikl_zoo.zoo import checkpoints
from ikl_zoo.zoo.checkpoints import CONFIG_NAME, WEIGHTS_NAME
from ikl_zoo.zoo.hub import download_drive_original, hub_config_sha256, transport_errors
from ikl_zoo.zoo.loading import load
from ikl_zoo.zoo.spec import ModelSpec

PUSHED_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
LOGITS_TOLERANCE = 1e-5  # ikl-zoo's network against RobustBench's, on the same weights


def convert_checkpoint(checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, model_id: str,
                       dataset: str = "cifar10", overwrite: bool = False) -> Path:
    """A checkpoint in any supported format, loaded strictly, as a zoo folder with its model card; a folder
    that holds anything is refused unless ``overwrite`` (then its three files are replaced, the rest kept)."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise PublishError(f"{out_dir} is a file", fix="pass an -o/--out folder")
    present = sorted(path.name for path in out_dir.iterdir()) if out_dir.is_dir() else []
    if present and not overwrite:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise PublishError(f"{out_dir} is not empty ({shown})", fix="pass a new -o/--out folder, or "
                           f"--overwrite to replace its {', '.join(PUSHED_FILES)}")
    loaded = load(model_id, dataset=dataset, checkpoint=checkpoint)
    checkpoint = Path(checkpoint).expanduser()
    source = _earlier_source(checkpoint) or {
        "checkpoint": checkpoint.name, **({"sha256": loaded.sha256} if checkpoint.is_file() else {})
    }
    try:
        folder = checkpoints.save_zoo_folder(loaded.network, out_dir, entry_or_config=loaded.spec,
                                 extra={"source": source})
        write_model_card(loaded.spec, folder, config=checkpoints.read_spec(folder).to_json())
    except OSError as error:
        raise PublishError(f"cannot write {out_dir} ({error.strerror or type(error).__name__})",
                           fix="pass an -o/--out folder you can write") from None
    return folder


def _earlier_source(checkpoint: Path) -> dict[str, Any] | None:
    """A zoo folder (or its weights) converted again keeps the checkpoint it was made from."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if checkpoint.name not in (folder.name, WEIGHTS_NAME) or not (folder / CONFIG_NAME).is_file():
        return None
    try:
        source = checkpoints.read_spec(folder).source
    except CheckpointError:
        return None
    return dict(source) if source else None


def validate_zoo_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of a folder safe to publish: both files present, sha256 matching, weights fitting."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder",
                           fix="make one with `ikl-zoo convert CKPT --model ID -o DIR`")
    try:
        spec, state, _ = checkpoints.read_folder(folder)
        if not spec.sha256:
            raise CheckpointError(f"{folder / CONFIG_NAME} has no sha256 of {WEIGHTS_NAME}",
                                  fix=f"rewrite it: `ikl-zoo convert {folder / WEIGHTS_NAME} --model ID "
                                  f"-o {folder} --overwrite`")
        checkpoints.check_fits(spec, state, what=str(folder / WEIGHTS_NAME))
        checkpoints.check_finite(state, source=str(folder / WEIGHTS_NAME), fix="convert another checkpoint")
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
    folder: str | os.PathLike[str], *, repo_id: str, revision: str | None = None, private: bool = False,
    token: str | None = None, commit_message: str | None = None,
) -> str:
    """Validate a zoo folder and upload its three files to ``repo_id`` (created if needed); the commit URL."""
    from huggingface_hub import HfApi, constants
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
            raise PublishError(f"{repo_id} already exists and is public: not uploading what --private asked "
                               "to keep private",
                               fix="make the repository private on the Hub first, or leave --private out")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                   commit_message=message, allow_patterns=list(PUSHED_FILES))
    except (HfHubHTTPError, ValueError) as error:
        raise PublishError(f"the Hub refused the upload to {repo_id} ({first_line(error)})",
                           fix=_refusal_fix(error, repo_id)) from None
    except (OSError, *transport_errors()) as error:
        raise PublishError(f"could not reach the Hub at {constants.ENDPOINT} to upload to {repo_id} "
                           f"({first_line(error)})", fix="check the network or HF_ENDPOINT") from None
    return str(getattr(commit, "commit_url", commit))


@dataclass(frozen=True)
class MirrorTarget:
    """Where one registered model goes: ``ORG/<id>-<dataset>`` at ``tag`` (the new commit when no tag)."""

    org: str
    tag: str | None = None
    token: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Mirrored:
    """What a mirror did for one model, and the registry pins it makes (revision is None on a dry run)."""

    spec: ModelSpec
    repo_id: str
    sha256: str
    revision: str | None
    skipped: bool = False

    def lines(self) -> list[str]:
        """What to print: a skip, or the pins to paste into the registry."""
        if self.skipped:
            return [f"{self.repo_id}@{self.revision}: already holds sha256 {self.sha256}, skipped"]
        return [f"# {self.spec.model_id} ({self.spec.dataset}) -> {self.repo_id}",
                f'hub_repo_name="{self.repo_id.split("/", 1)[1]}",',
                f'revision="{self.revision or "<dry run: not pushed>"}",', f'sha256="{self.sha256}",']


def mirror_model(spec: ModelSpec, target: MirrorTarget, *, checkpoint: Path | None = None) -> Mirrored:
    """Fetch (or take) the authors' checkpoint, check it against RobustBench, convert, push and tag."""
    repo_id = f"{target.org}/{spec.model_id}-{spec.dataset}"
    with tempfile.TemporaryDirectory(prefix="ikl-zoo-mirror.") as tmp:
        original = checkpoint or download_drive_original(spec, Path(tmp) / f"{spec.model_id}.pt")
        check_against_robustbench(spec, original)
        folder = convert_checkpoint(original, Path(tmp) / "zoo", model_id=spec.model_id, dataset=spec.dataset)
        sha256 = checkpoints.read_spec(folder).sha256
        assert sha256 is not None
        revision = target.tag or "main"
        if hub_config_sha256(repo_id, revision) == sha256:
            return Mirrored(spec, repo_id, sha256, revision, skipped=True)
        if target.dry_run:
            return Mirrored(spec, repo_id, sha256, None)
        message = f"Mirror {spec.model_id} ({spec.dataset}) from its authors' checkpoint"
        url = push_zoo_folder(folder, repo_id=repo_id, token=target.token, commit_message=message)
    commit = url.rstrip("/").rsplit("/", 1)[-1]
    if target.tag:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        try:
            HfApi(token=target.token).create_tag(repo_id, tag=target.tag, revision=commit)
        except HfHubHTTPError as error:
            raise PublishError(f"pushed {repo_id}@{commit} but could not tag it {target.tag} "
                               f"({first_line(error)})",
                               fix="create the tag on the Hub, or rerun with another --tag") from None
    return Mirrored(spec, repo_id, sha256, target.tag or commit)


def check_against_robustbench(spec: ModelSpec, checkpoint: Path) -> None:
    """``PublishError`` unless the checkpoint loads into RobustBench's network and ours, logits agreeing."""
    from ikl_zoo._robustbench import robustbench_model_dicts
    from ikl_zoo.data import foolbox_sample

    state = checkpoints.read_state_dict(checkpoint)
    theirs = robustbench_model_dicts()[spec.dataset][spec.threat_model][spec.model_id]["model"]()
    try:
        theirs.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PublishError(f"{checkpoint} does not load into RobustBench's {spec.model_id} "
                           f"({first_line(error)})", fix="pass the authors' checkpoint") from None
    ours = checkpoints.build_loaded(spec, state, source=str(checkpoint)).eval()  # the tensors read above
    images = torch.from_numpy(foolbox_sample(spec.dataset)[0]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        difference = (ours(images) - theirs.eval()(images)).abs().max().item()
    if difference > LOGITS_TOLERANCE:
        raise PublishError(f"ikl-zoo's {spec.model_id} and RobustBench's differ by {difference:.2e} in "
                           "logits", fix="the architectures disagree: compare the entry with RobustBench's")

