"""``ikl-zoo mirror`` end to end: real gdown against a loopback Drive, real huggingface_hub uploads and tags
against the loopback Hub, a registry-architecture checkpoint made at test time."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from ikl_zoo.cards.model_card import CARD_NAME
from ikl_zoo.cli import main
from ikl_zoo.zoo.checkpoints import CONFIG_NAME, WEIGHTS_NAME
from ikl_zoo.zoo.loading import load
from ikl_zoo.zoo.registry import get_model_entry

MODEL = "Cui2023Decoupled_WRN-28-10"
REPO = f"mirror-org/{MODEL}-cifar10"
TOKEN = "hf_loopbackWriteToken"


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    """A checkpoint of the registry architecture (random weights), saved as the authors' torch.save file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("drive") / f"{MODEL}.pt"
    torch.save(get_model_entry(MODEL).build().state_dict(), path)
    return path


def _mirror(*arguments: str):
    return CliRunner().invoke(main, ["mirror", *arguments, "--org", "mirror-org"])


@pytest.mark.slow
def test_mirror_from_drive_pushes_tags_prints_pins_then_skips(writable_hub, drive_server, authors_checkpoint):
    drive_server.files[get_model_entry(MODEL).gdrive_id] = authors_checkpoint
    result = _mirror(MODEL, "--dataset", "cifar10", "--tag", "v1", "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert len(drive_server.requests) == 1 and "hf_" not in drive_server.requests[0], "no Hub token to Drive"
    assert set(writable_hub.repos[REPO].files) == {WEIGHTS_NAME, CONFIG_NAME, CARD_NAME}
    assert writable_hub.tags[REPO]["v1"] == writable_hub.repos[REPO].commit
    loaded = load(f"hf-hub:{REPO}@v1")
    assert f'hub_repo_name="{MODEL}-cifar10",' in result.output and 'revision="v1",' in result.output
    assert f'sha256="{loaded.sha256}",' in result.output
    assert loaded.hub_commit == writable_hub.repos[REPO].commit and loaded.hub_revision == "v1"

    posts = len(writable_hub.posts)
    again = _mirror(MODEL, "--tag", "v1", "--from", str(authors_checkpoint))
    assert again.exit_code == 0, again.output
    assert f"{REPO}@v1: already holds sha256 {loaded.sha256}, skipped" in again.output
    assert len(writable_hub.posts) == posts, "nothing is pushed twice"


@pytest.mark.slow
def test_dry_run_checks_and_converts_but_pushes_nothing(writable_hub, authors_checkpoint):
    result = _mirror(MODEL, "--from", str(authors_checkpoint), "--dry-run")
    assert result.exit_code == 0, result.output
    assert 'revision="<dry run: not pushed>",' in result.output and 'sha256="' in result.output
    assert writable_hub.posts == [] and REPO not in writable_hub.repos


def test_a_checkpoint_of_another_model_is_one_line(writable_hub, tiny_model, tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save(tiny_model.state_dict(), wrong)
    result = _mirror(MODEL, "--from", str(wrong))
    assert result.exit_code != 0 and "does not load into RobustBench's" in result.output
    assert "Traceback" not in result.output and writable_hub.posts == []


def test_a_drive_without_the_file_is_one_line(writable_hub, drive_server):
    result = _mirror(MODEL)
    assert result.exit_code != 0 and "Google Drive" in result.output and "--from FILE" in result.output


def test_model_and_all_are_exclusive():
    for arguments in ([], [MODEL, "--all"]):
        result = _mirror(*arguments)
        assert result.exit_code == 2 and "--all" in result.output
