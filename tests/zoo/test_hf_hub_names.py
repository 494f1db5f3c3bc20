"""``hf-hub:ORG/NAME[@REVISION]`` names a zoo folder on any Hub, through the real ``hf_hub_download``."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import ikl_zoo
from ikl_zoo.cli import main
from ikl_zoo.errors import CheckpointError, DownloadError
from ikl_zoo.zoo.checkpoints import WEIGHTS_NAME, file_sha256
from ikl_zoo.zoo.loading import load, save_zoo_folder

REPO = "someone/tiny-robust"


@pytest.fixture
def hub_folder(fake_hub, tiny_entry, tiny_model, tmp_path):
    folder = save_zoo_folder(tiny_model, tmp_path / "folder", entry_or_config=tiny_entry)
    fake_hub.add_folder(REPO, folder)
    return folder


def test_an_hf_hub_name_loads_with_repository_revision_and_commit(fake_hub, hub_folder, tiny_model, images):
    commit = fake_hub.repos[REPO].commit
    loaded = load(f"hf-hub:{REPO}@{commit}")
    assert (loaded.hub_repo, loaded.hub_revision, loaded.hub_commit) == (REPO, commit, commit)
    assert loaded.sha256 == file_sha256(hub_folder / WEIGHTS_NAME) and loaded.spec.model_id == "tiny-wrn"
    with torch.no_grad():
        assert torch.equal(loaded.network(images), tiny_model(images))
    network = ikl_zoo.load_model(f"hf-hub:{REPO}")
    assert isinstance(network, torch.nn.Module) and not network.training


def test_offline_an_hf_hub_name_is_served_from_the_cache(fake_hub, hub_folder, monkeypatch):
    from huggingface_hub import constants

    load(f"hf-hub:{REPO}")
    before = len(fake_hub.requests)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded = load(f"hf-hub:{REPO}")
    assert len(fake_hub.requests) == before and loaded.hub_commit == fake_hub.repos[REPO].commit


def test_download_command_takes_an_hf_hub_name(fake_hub, hub_folder):
    result = CliRunner().invoke(main, ["download", f"hf-hub:{REPO}@main"])
    assert result.exit_code == 0, result.output
    assert f"sha256: {file_sha256(hub_folder / WEIGHTS_NAME)}" in result.output
    assert f"commit: {fake_hub.repos[REPO].commit}" in result.output


def test_a_token_is_sent_to_the_endpoint(fake_hub, hub_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_loopbackTestToken")
    load(f"hf-hub:{REPO}")
    hub_gets = [r for r in fake_hub.requests if r.origin == "hub"]
    assert hub_gets and all(r.headers.get("authorization") == "Bearer hf_loopbackTestToken" for r in hub_gets)


def test_weights_that_disagree_with_the_config_sha256_are_refused(fake_hub, hub_folder):
    fake_hub.add_file(REPO, WEIGHTS_NAME, (hub_folder / WEIGHTS_NAME).read_bytes()[:-8])
    with pytest.raises(Exception, match="sha256"):
        load(f"hf-hub:{REPO}")


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"config.json": {"architecture": "resnet50", "pretrained_cfg": {}}}, "is a timm model"),
        ({"config.json": {"model_type": "vit", "architectures": ["ViTModel"]}}, "is a transformers model"),
        ({"pytorch_model.bin": b"pickle"}, "config.json is missing and its weights are only a pickle"),
        ({"README.md": b"hello"}, "config.json is missing"),
    ],
)
def test_a_repository_that_is_not_a_zoo_folder_is_one_line(fake_hub, files, said):
    for name, content in files.items():
        fake_hub.add_file(
            "other/model", name, content if isinstance(content, bytes) else json.dumps(content).encode()
        )
    with pytest.raises(DownloadError) as caught:
        load("hf-hub:other/model")
    message = str(caught.value)
    assert said in message and "\n" not in message
    assert "ikl-zoo convert" in caught.value.fix and "ikl-zoo push" in caught.value.fix
    result = CliRunner().invoke(main, ["download", "hf-hub:other/model"])
    assert result.exit_code != 0 and said in result.output and "Traceback" not in result.output


def test_malformed_hub_names_and_disagreeing_revisions_are_one_line(fake_hub):
    for name in ("hf-hub:noslash", "hf-hub:a/b@", "hf-hub:a/b/c"):
        with pytest.raises(DownloadError, match="not a Hub model name"):
            load(name)
    with pytest.raises(DownloadError, match="disagree"):
        load("hf-hub:a/b@v1", revision="v2")
    with pytest.raises(CheckpointError, match="brings its own weights"):
        load("hf-hub:a/b", checkpoint="weights.pt")


def test_eval_of_an_hf_hub_name_records_repository_revision_and_served_commit(fake_hub, hub_folder, tmp_path):
    from ikl_zoo.data import write_sample_data_dir

    data = write_sample_data_dir(tmp_path / "data", datasets=("cifar10",))
    commit = fake_hub.repos[REPO].commit
    args = ["eval", "--model", f"hf-hub:{REPO}@main", "--data-dir", str(data), "--no-download",
            "--n-examples", "4", "--version", "custom", "--attacks", "apgd-ce",
            "--attack-option", "apgd.n_iter=2", "--device", "cpu",
            "--out", str(tmp_path / "run"), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "run" / "result.json").read_text())["provenance"]["hub"]
    assert recorded == {"repo": REPO, "revision": "main", "commit": commit}
    wrong = CliRunner().invoke(main, [*args[:-3], "--dataset", "cifar100", "--out", str(tmp_path / "other")])
    assert wrong.exit_code == 2 and "pass --dataset cifar10" in wrong.output


def test_card_of_an_hf_hub_name_names_repository_revision_and_commit(fake_hub, hub_folder, tmp_path):
    commit = fake_hub.repos[REPO].commit
    result = CliRunner().invoke(main, ["card", f"hf-hub:{REPO}@main", "-o", str(tmp_path / "card")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "card" / "README.md").read_text()
    assert f"`{REPO}` at revision `main` (commit `{commit}`)" in text
    assert f'ikl_zoo.load_model("hf-hub:{REPO}@{commit}")' in text
