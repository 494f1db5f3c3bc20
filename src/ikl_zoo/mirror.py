"""Mirroring: the authors' Google Drive checkpoint of a registered model to a pinned Hub zoo folder.

Each checkpoint is checked twice before it is converted: it loads key for key into RobustBench's own
constructor, and that network gives the same logits as ikl-zoo's on the sample CIFAR images.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ikl_zoo.errors import PublishError, first_line
from ikl_zoo.publish import convert_checkpoint, push_zoo_folder
from ikl_zoo.zoo.checkpoints import load_state_dict_strict, read_spec, read_state_dict
from ikl_zoo.zoo.hub import download_drive_original, hub_config_sha256
from ikl_zoo.zoo.spec import ModelSpec

LOGITS_TOLERANCE = 1e-5


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
        pins = [f"# {self.spec.model_id} ({self.spec.dataset}) -> {self.repo_id}",
                f'hub_repo_name="{self.repo_id.split("/", 1)[1]}",',
                f'revision="{self.revision or "<dry run: not pushed>"}",', f'sha256="{self.sha256}",']
        return pins


def mirror_model(spec: ModelSpec, target: MirrorTarget, *, checkpoint: Path | None = None) -> Mirrored:
    """Fetch (or take) the authors' checkpoint, check it against RobustBench, convert, push and tag."""
    repo_id = f"{target.org}/{spec.model_id}-{spec.dataset}"
    with tempfile.TemporaryDirectory(prefix="ikl-zoo-mirror.") as tmp:
        original = checkpoint or download_drive_original(spec, Path(tmp) / f"{spec.model_id}.pt")
        check_against_robustbench(spec, original)
        folder = convert_checkpoint(original, Path(tmp) / "zoo", model_id=spec.model_id, dataset=spec.dataset)
        sha256 = read_spec(folder).sha256
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
        _create_tag(repo_id, target, commit)
    return Mirrored(spec, repo_id, sha256, target.tag or commit)


def check_against_robustbench(spec: ModelSpec, checkpoint: Path) -> None:
    """The checkpoint loads strictly into RobustBench's constructor and ikl-zoo's network, whose logits on
    the sample images agree within ``LOGITS_TOLERANCE``; ``PublishError`` otherwise."""
    from ikl_zoo._robustbench import robustbench_model_dicts
    from ikl_zoo.data import foolbox_sample

    state = read_state_dict(checkpoint)
    theirs = robustbench_model_dicts()[spec.dataset][spec.threat_model][spec.model_id]["model"]()
    try:
        theirs.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PublishError(
            f"{checkpoint} does not load into RobustBench's {spec.model_id} ({first_line(error)})",
            fix="pass the authors' checkpoint of this model",
        ) from None
    ours = spec.build()
    load_state_dict_strict(ours, state, source=str(checkpoint), model_name=spec.model_id,
                           dataset=spec.dataset)
    images = torch.from_numpy(foolbox_sample(spec.dataset)[0]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        difference = (ours.eval()(images) - theirs.eval()(images)).abs().max().item()
    if difference > LOGITS_TOLERANCE:
        raise PublishError(
            f"ikl-zoo's {spec.model_id} and RobustBench's differ by {difference:.2e} in logits",
            fix="the architectures disagree: compare the registry entry with RobustBench's",
        )


def _create_tag(repo_id: str, target: MirrorTarget, commit: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    assert target.tag is not None
    try:
        HfApi(token=target.token).create_tag(repo_id, tag=target.tag, revision=commit)
    except HfHubHTTPError as error:
        raise PublishError(
            f"pushed {repo_id}@{commit} but could not tag it {target.tag} ({first_line(error)})",
            fix="create the tag on the Hub, or rerun with another --tag",
        ) from None
