"""Downloads through the real ``hf_hub_download`` against a loopback Hub, and the Google Drive fallback."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import gdown
import pytest
import torch

from ikl_zoo.errors import CheckpointError, ChecksumMismatchError, DownloadError
from ikl_zoo.zoo.checkpoints import CONFIG_NAME, WEIGHTS_NAME, file_sha256
from ikl_zoo.zoo.hub import download_checkpoint, drive_cache_folder
from ikl_zoo.zoo.loading import load_model, save_zoo_folder

TOKEN = "hf_loopbackTestToken"
TINY_REPO = "ikl-zoo/tiny-wrn-cifar10"


@pytest.fixture
def published(fake_hub, tiny_entry, tiny_model, tmp_path):
    """tiny-wrn published on the loopback Hub as ikl-zoo publishes models (a zoo folder)."""
    folder = save_zoo_folder(tiny_model, tmp_path / "published", entry_or_config=tiny_entry)
    fake_hub.add_folder(TINY_REPO, folder)
    return folder


@pytest.fixture
def drive(monkeypatch):
    """Replace gdown.download; record each call; serve whatever ``drive.payload`` writes."""

    class FakeDrive:
        calls: list[dict] = []
        payload = None  # callable(path) writing the "downloaded" file, or None: fail like gdown does

        def download(self, *args, **kwargs):
            self.calls.append({"args": args, "kwargs": kwargs, "env_token": os.environ.get("HF_TOKEN")})
            if self.payload is None:
                raise gdown.exceptions.FileURLRetrievalError("Cannot retrieve the public link of the file.")
            self.payload(Path(kwargs["output"]))
            return kwargs["output"]

    fake = FakeDrive()
    fake.calls = []
    monkeypatch.setattr(gdown, "download", fake.download)
    return fake


def _logits(model, images):
    with torch.no_grad():
        return model(images)


def test_download_then_cache_hit(fake_hub, published, tiny_model, images) -> None:
    path = download_checkpoint("tiny-wrn")
    assert path.name == WEIGHTS_NAME
    assert "models--ikl-zoo--tiny-wrn-cifar10" in str(path) and "snapshots" in path.parts
    assert (path.parent / CONFIG_NAME).is_file(), "config.json is fetched beside the weights"
    assert file_sha256(path) == file_sha256(published / WEIGHTS_NAME)
    assert len(fake_hub.file_gets(WEIGHTS_NAME)) == 1
    cdn_gets = [r for r in fake_hub.requests if r.origin == "cdn" and r.method == "GET"]
    assert len(cdn_gets) == 1, "the weights come through the Hub's redirect to its CDN"

    model = load_model("tiny-wrn")
    assert torch.equal(_logits(model, images), _logits(tiny_model, images))
    assert len(fake_hub.file_gets(WEIGHTS_NAME)) == 1, "the second load is a cache hit: no GET of the file"
    assert any(r.method == "HEAD" for r in fake_hub.requests[-2:]), "online, the revision is still checked"


def test_load_fetches_and_hashes_the_published_weights_once(fake_hub, published, monkeypatch) -> None:
    from ikl_zoo.zoo import checkpoints
    from ikl_zoo.zoo.loading import load

    hashed, real_sha256 = [], checkpoints.file_sha256
    monkeypatch.setattr(
        checkpoints, "file_sha256", lambda path: hashed.append(Path(path)) or real_sha256(path)
    )
    loaded = load("tiny-wrn")
    assert hashed == [loaded.weights_path], "the weights are hashed once, while verifying"
    assert loaded.sha256 == real_sha256(published / WEIGHTS_NAME)
    assert loaded.hub_commit == fake_hub.repos[TINY_REPO].commit
    assert loaded.description == "tiny-wrn (WideResNet-10-1), published weights"
    assert loaded.spec.model_id == "tiny-wrn" and not loaded.network.training
    assert len(fake_hub.file_gets(WEIGHTS_NAME)) == 1 and len(fake_hub.file_gets(CONFIG_NAME)) == 1


def test_offline_mode_serves_the_cache_without_any_request(fake_hub, published, monkeypatch, images) -> None:
    from huggingface_hub import constants

    download_checkpoint("tiny-wrn")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(fake_hub.requests)
    model = load_model("tiny-wrn")
    assert model(images).shape == (3, 10)
    assert len(fake_hub.requests) == before


def test_offline_and_not_cached_is_one_clear_line(fake_hub, published, drive, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError) as error:
        download_checkpoint("tiny-wrn")
    message = str(error.value)
    assert "\n" not in message
    assert "offline (HF_HUB_OFFLINE is set)" in message and "not in the Hub cache" in message
    assert "Google Drive 1-tinyDriveIdForTests: skipped" in message
    assert "--checkpoint PATH" in message and "unset HF_HUB_OFFLINE" in message
    assert drive.calls == [] and fake_hub.requests == []


def test_revision_is_pinned(fake_hub, published) -> None:
    commit = fake_hub.repos[TINY_REPO].commit
    path = download_checkpoint("tiny-wrn", revision=commit)
    assert path.parent.name == commit


def test_token_reaches_the_hub_only(fake_hub, published, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    download_checkpoint("tiny-wrn")
    resolve = [r for r in fake_hub.requests if "/resolve/" in r.path]
    assert resolve and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in resolve)
    cdn = [r for r in fake_hub.requests if r.origin == "cdn"]
    assert cdn and all("authorization" not in r.headers for r in cdn)


def test_404_falls_back_to_google_drive_and_caches_safetensors(
    fake_hub, tiny_entry, tiny_model, drive, monkeypatch, tmp_path, images
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("IKL_ZOO_CACHE", str(tmp_path / "zoo-cache"))
    original = {"state_dict": {"module." + k: v for k, v in tiny_model.state_dict().items()}, "epoch": 110}
    drive.payload = lambda path: torch.save(original, path)

    path = download_checkpoint("tiny-wrn")

    assert path == tmp_path / "zoo-cache" / "gdrive" / "cifar10" / "tiny-wrn" / WEIGHTS_NAME
    assert path.parent == drive_cache_folder(tiny_entry)
    (call,) = drive.calls
    assert call["kwargs"]["id"] == "1-tinyDriveIdForTests"
    sent = json.dumps([call["args"], call["kwargs"]], default=str)
    assert TOKEN not in sent, "the Hugging Face token never goes to Google Drive"
    resolve = [r for r in fake_hub.requests if "/resolve/" in r.path]
    assert [(r.method, r.headers.get("authorization")) for r in resolve] == [("HEAD", f"Bearer {TOKEN}")]
    config = json.loads((path.parent / CONFIG_NAME).read_text())
    assert config["source"]["gdrive_id"] == "1-tinyDriveIdForTests"
    assert config["sha256"] == file_sha256(path)
    assert sorted(p.name for p in path.parent.parent.iterdir()) == ["tiny-wrn"], "no temporary files left"

    # Next time: no Drive download, offline included, and the same network.
    from huggingface_hub import constants

    drive.payload = None
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = load_model("tiny-wrn")
    assert torch.equal(_logits(model, images), _logits(tiny_model, images))
    assert len(drive.calls) == 1


def test_drive_html_page_and_total_failure_are_explained(
    fake_hub, tiny_entry, drive, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("IKL_ZOO_CACHE", str(tmp_path / "zoo-cache"))
    drive.payload = lambda path: path.write_text(
        "<html><body>Too many users have viewed this file</body></html>"
    )
    with pytest.raises(DownloadError) as error:
        download_checkpoint("tiny-wrn")
    message = str(error.value)
    assert "Hugging Face Hub ikl-zoo/tiny-wrn-cifar10@main: repository not found" in message
    assert "HTML page, not weights (Google Drive quota?)" in message
    assert "--checkpoint PATH" in message and "HF_ENDPOINT" in message
    assert not drive_cache_folder(tiny_entry).exists()

    drive.payload = None
    with pytest.raises(DownloadError, match="Google Drive 1-tinyDriveIdForTests: download failed"):
        download_checkpoint("tiny-wrn")


def test_drive_checkpoint_of_the_wrong_model_is_not_cached(
    fake_hub, tiny_entry, drive, monkeypatch, tmp_path
):
    from ikl_zoo.zoo.registry import get_model_entry

    monkeypatch.setenv("IKL_ZOO_CACHE", str(tmp_path / "zoo-cache"))
    cifar100 = get_model_entry("tiny-wrn", dataset="cifar100").build().state_dict()
    drive.payload = lambda path: torch.save(cifar100, path)
    with pytest.raises(DownloadError, match="has 100 classes but tiny-wrn for cifar10 expects 10") as error:
        download_checkpoint("tiny-wrn")
    assert "--dataset" not in str(error.value)  # the pinned file is wrong, not the user's flag
    assert not drive_cache_folder(tiny_entry).exists()


def test_registry_checksum_mismatch(fake_hub, published, pin_tiny_sha256) -> None:
    pin_tiny_sha256("0" * 64)
    with pytest.raises(ChecksumMismatchError) as error:
        download_checkpoint("tiny-wrn")
    message = str(error.value)
    assert f"expected {'0' * 64}, got {file_sha256(published / WEIGHTS_NAME)}" in message
    assert "models--ikl-zoo--tiny-wrn-cifar10 and rerun" in message


def test_hub_file_that_disagrees_with_its_config_json(fake_hub, published) -> None:
    weights = bytearray((published / WEIGHTS_NAME).read_bytes())
    weights[-1] ^= 0xFF  # corrupted in transit or on the server
    fake_hub.add_file(TINY_REPO, WEIGHTS_NAME, bytes(weights))
    with pytest.raises(ChecksumMismatchError, match="sha256 mismatch"):
        download_checkpoint("tiny-wrn")


def test_missing_revision_and_missing_file_are_named(fake_hub, published, drive) -> None:
    with pytest.raises(DownloadError, match="@v9: revision v9 not found"):
        download_checkpoint("tiny-wrn", revision="v9")
    del fake_hub.repos[TINY_REPO].files[WEIGHTS_NAME]
    with pytest.raises(DownloadError, match="model.safetensors not found in the repository"):
        download_checkpoint("tiny-wrn")


def test_environment_variables_reach_huggingface_hub_in_a_fresh_process(fake_hub, tmp_path) -> None:
    """HF_ENDPOINT, HF_HOME, HF_TOKEN and IKL_ZOO_HUB_NAMESPACE set by the user, read at start-up."""
    weights = b"not really weights, download does not parse them"
    config = {
        "model_id": "Cui2023Decoupled_WRN-34-10",
        "dataset": "cifar10",
        "threat_model": "Linf",
        "eps": 8 / 255,
        "sha256": hashlib.sha256(weights).hexdigest(),
        "architecture": {"architecture_class": "WideResNet"},
    }
    fake_hub.add_file("my-org/Cui2023Decoupled_WRN-34-10-cifar10", CONFIG_NAME, json.dumps(config).encode())
    fake_hub.add_file("my-org/Cui2023Decoupled_WRN-34-10-cifar10", WEIGHTS_NAME, weights)
    env = {
        **os.environ,
        "HF_ENDPOINT": fake_hub.endpoint,
        "HF_HOME": str(tmp_path / "home"),
        "HF_TOKEN": TOKEN,
        "IKL_ZOO_HUB_NAMESPACE": "my-org",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_HUB_CACHE", None)
    script = "from ikl_zoo.cli import main; main()"
    command = [sys.executable, "-c", script, "download", "Cui2023Decoupled_WRN-34-10"]
    online = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert online.returncode == 0, online.stderr
    cached = tmp_path / "home" / "hub" / "models--my-org--Cui2023Decoupled_WRN-34-10-cifar10"
    assert f"path: {cached}" in online.stdout and f"sha256: {config['sha256']}" in online.stdout
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in fake_hub.requests)


def test_an_explicit_revision_is_never_served_by_google_drive(
    fake_hub, published, tiny_entry, tiny_model, drive, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("IKL_ZOO_CACHE", str(tmp_path / "zoo-cache"))
    save_zoo_folder(tiny_model, drive_cache_folder(tiny_entry), entry_or_config=tiny_entry)
    drive.payload = lambda path: torch.save(tiny_model.state_dict(), path)
    with pytest.raises(DownloadError) as error:
        download_checkpoint("tiny-wrn", revision="v9")
    message = str(error.value)
    assert "@v9: revision v9 not found" in message and "Only the Hub serves an explicit revision" in message
    assert drive.calls == []


def test_empty_revision_and_a_revision_without_a_hub_repository_are_refused(fake_hub, tiny_entry, drive):
    with pytest.raises(DownloadError, match="empty revision"):
        download_checkpoint("tiny-wrn", revision="")
    with pytest.raises(DownloadError, match="demo-resnet18 .* has no Hugging Face Hub repository"):
        load_model("demo-resnet18", revision="v1")
    assert fake_hub.requests == [] and drive.calls == []


def test_a_damaged_config_json_on_the_hub_does_not_let_a_truncated_file_through(
    fake_hub, published, drive
) -> None:
    fake_hub.add_file(TINY_REPO, CONFIG_NAME, b"<!DOCTYPE html><html>Internal error</html>")
    weights = (published / WEIGHTS_NAME).read_bytes()
    fake_hub.add_file(TINY_REPO, WEIGHTS_NAME, weights[: len(weights) // 2])
    with pytest.raises(DownloadError, match=r"the repository's config.json is damaged \(.*not valid JSON"):
        download_checkpoint("tiny-wrn")


def test_an_unwritable_zoo_cache_is_one_line(fake_hub, tiny_entry, tiny_model, drive, monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("IKL_ZOO_CACHE", str(tmp_path / "a-file" / "cache"))
    drive.payload = lambda path: torch.save(tiny_model.state_dict(), path)
    with pytest.raises(DownloadError) as error:
        download_checkpoint("tiny-wrn")
    message = str(error.value)
    assert "Hugging Face Hub ikl-zoo/tiny-wrn-cifar10@main: repository not found" in message
    assert "Google Drive 1-tinyDriveIdForTests: cannot write the ikl-zoo cache" in message
    assert "set IKL_ZOO_CACHE to a folder you can write" in message and "\n" not in message
    assert error.value.fix.startswith("set IKL_ZOO_CACHE")  # the fix, not part of the problem


def test_a_damaged_drive_cache_names_the_folder_to_delete(
    fake_hub, tiny_entry, tiny_model, drive, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("IKL_ZOO_CACHE", str(tmp_path / "zoo-cache"))
    folder = save_zoo_folder(tiny_model, drive_cache_folder(tiny_entry), entry_or_config=tiny_entry)
    (folder / CONFIG_NAME).write_text("{half a json")
    with pytest.raises(CheckpointError) as error:
        download_checkpoint("tiny-wrn")
    message = str(error.value)
    assert "the ikl-zoo cache is damaged" in message and f"delete {folder} and rerun" in message
    assert "ikl-zoo convert" not in message


def test_network_errors_of_the_hubs_http_client_are_one_line(fake_hub, tiny_entry, drive, monkeypatch):
    """huggingface_hub 1.x raises httpx errors, later versions httpx2 errors; neither is an OSError."""
    import types

    import huggingface_hub

    client = types.ModuleType("httpx")
    client.HTTPError = type("HTTPError", (Exception,), {})
    connect_error = type("ConnectError", (client.HTTPError,), {})
    monkeypatch.setitem(sys.modules, "httpx", client)

    def unreachable(*args, **kwargs):
        raise connect_error("[Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    expected = "Hugging Face Hub ikl-zoo/tiny-wrn-cifar10@main: .*Connection refused"
    with pytest.raises(DownloadError, match=expected):
        download_checkpoint("tiny-wrn")


def test_a_config_json_on_the_hub_with_a_malformed_sha256_is_one_line(fake_hub, published, drive) -> None:
    config = json.loads((published / CONFIG_NAME).read_text())
    fake_hub.add_file(TINY_REPO, CONFIG_NAME, json.dumps({**config, "sha256": 5}).encode())
    with pytest.raises(DownloadError) as error:
        download_checkpoint("tiny-wrn")
    message = str(error.value)
    assert "the repository's config.json is damaged" in message and "must be 64 hex digits, not 5" in message
    assert "\n" not in message and "rewrite it" not in message
