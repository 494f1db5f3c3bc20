"""``ikl-zoo list/download/convert/push``: output for good input, one ``Error:`` line and exit 2 for bad."""

from __future__ import annotations

import json
import types

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from ikl_zoo.cards.model_card import CARD_NAME
from ikl_zoo.cli import main
from ikl_zoo.zoo.checkpoints import CONFIG_NAME, WEIGHTS_NAME, file_sha256
from ikl_zoo.zoo.loading import load_model, save_zoo_folder


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    for fragment in fragments:
        assert fragment in result.stderr


def test_list_shows_every_model_with_its_published_figures() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "clean %" in lines[0] and "AutoAttack %" in lines[0] and "note" in lines[0]
    rows = {(line.split("|")[1].strip(), line.split("|")[2].strip()): line for line in lines[2:]}
    assert set(rows) == {
        ("cifar10", "Cui2023Decoupled_WRN-28-10"),
        ("cifar10", "Cui2023Decoupled_WRN-34-10"),
        ("cifar100", "Cui2023Decoupled_WRN-28-10"),
        ("cifar100", "Cui2023Decoupled_WRN-34-10"),
        ("cifar100", "Cui2023Decoupled_WRN-34-10_autoaug"),
        ("cifar10", "demo-resnet18"),
    }
    assert "92.16" in rows["cifar10", "Cui2023Decoupled_WRN-28-10"]
    assert "67.73" in rows["cifar10", "Cui2023Decoupled_WRN-28-10"]
    assert "31.91" in rows["cifar100", "Cui2023Decoupled_WRN-34-10"]
    assert "Linf 8/255" in rows["cifar100", "Cui2023Decoupled_WRN-34-10_autoaug"]
    assert "not IKL-AT" in rows["cifar10", "demo-resnet18"]
    only_100 = run("list", "--dataset", "cifar100").stdout
    assert "cifar100" in only_100 and "cifar10 " not in only_100 and "demo-resnet18" not in only_100


def test_download_prints_path_and_sha256(fake_hub, tiny_entry, tiny_model, tmp_path) -> None:
    fake_hub.add_folder(
        "ikl-zoo/tiny-wrn-cifar10", save_zoo_folder(tiny_model, tmp_path / "p", entry_or_config=tiny_entry)
    )
    result = run("download", "tiny-wrn")
    assert result.exit_code == 0, result.output
    path_line, sha_line = result.stdout.splitlines()
    path = path_line.removeprefix("path: ")
    assert path.endswith(WEIGHTS_NAME) and sha_line == f"sha256: {file_sha256(path)}"


def test_convert_writes_a_hub_ready_folder(tmp_path, tiny_entry, tiny_model) -> None:
    checkpoint = tmp_path / "ikl_at_epoch110.pth"
    torch.save(
        {"model_state_dict": {"module." + k: v for k, v in tiny_model.state_dict().items()}}, checkpoint
    )
    out = tmp_path / "tiny-wrn-cifar10"
    result = run("convert", str(checkpoint), "--model", "tiny-wrn", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config["sha256"] == file_sha256(out / WEIGHTS_NAME) and config["sha256"] in result.stdout
    assert config["source"] == {"checkpoint": checkpoint.name, "sha256": file_sha256(checkpoint)}
    card = (out / CARD_NAME).read_text()
    assert card.startswith("---\n") and "tiny-wrn" in card and config["sha256"] in card
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_model(str(out))(x), tiny_model(x))


def test_push_validates_then_uploads_the_three_files(tmp_path, tiny_entry, tiny_model, monkeypatch) -> None:
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create_repo", repo_id, kw))
    )
    monkeypatch.setattr(
        HfApi, "create_branch", lambda self, repo_id, **kw: calls.append(("create_branch", repo_id, kw))
    )

    def upload_folder(self, **kw):
        calls.append(("upload_folder", kw["repo_id"], kw))
        return "https://hub.example/my-org/tiny/commit/abc"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(
        HfApi, "repo_info", lambda self, repo_id, **kw: calls.append(("repo_info", repo_id, kw)) or repo
    )
    repo = types.SimpleNamespace(private=True)
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    result = run("push", str(folder), "--repo-id", "my-org/tiny", "--revision", "v1", "--private")
    assert result.exit_code == 0, result.output
    assert [name for name, *_ in calls] == ["create_repo", "repo_info", "create_branch", "upload_folder"]
    assert calls[0][2]["private"] is True and calls[2][2]["branch"] == "v1"
    upload = calls[3][2]
    assert upload["revision"] == "v1" and upload["folder_path"] == str(folder)
    assert sorted(upload["allow_patterns"]) == [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME]
    assert "https://hub.example/my-org/tiny/commit/abc" in result.stdout

    # --private and a repository that already exists as public: nothing is uploaded.
    calls.clear()
    repo.private = False
    assert_one_line_error(
        run("push", str(folder), "--repo-id", "my-org/tiny", "--private"),
        "my-org/tiny already exists and is public",
    )
    assert [name for name, *_ in calls] == ["create_repo", "repo_info"]


# --- bad input: one line, exit status 2 ---------------------------------------------------------------


def test_unknown_model_suggests_names_and_the_other_dataset() -> None:
    assert_one_line_error(
        run("download", "Cui2023Decoupled_WRN-34-1"), "did you mean Cui2023Decoupled_WRN-34-10"
    )
    assert_one_line_error(
        run("download", "Cui2023Decoupled_WRN-34-10_autoaug"), "exists for cifar100: pass --dataset cifar100"
    )


def test_convert_html_page(tmp_path, tiny_entry) -> None:
    page = tmp_path / "checkpoint.pt"
    page.write_text("\n  <!DOCTYPE html>\n<html><title>Google Drive - Virus scan warning</title></html>")
    assert_one_line_error(
        run("convert", str(page), "--model", "tiny-wrn", "-o", str(tmp_path / "out")),
        "is an HTML page, not weights (Google Drive quota?)",
    )
    assert not (tmp_path / "out").exists()


def test_convert_truncated_file(tmp_path, tiny_entry, tiny_model) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save(tiny_model.state_dict(), path)
    path.write_bytes(path.read_bytes()[:-300])
    assert_one_line_error(
        run("convert", str(path), "--model", "tiny-wrn", "-o", str(tmp_path / "out")), "truncated or corrupt"
    )


def test_convert_wrong_class_count(tmp_path, tiny_entry) -> None:
    from ikl_zoo.zoo.registry import get_model_entry

    path = tmp_path / "cifar100.pt"
    torch.save(get_model_entry("tiny-wrn", dataset="cifar100").build().state_dict(), path)
    assert_one_line_error(
        run("convert", str(path), "--model", "tiny-wrn", "-o", str(tmp_path / "out")),
        "has 100 classes but tiny-wrn for cifar10 expects 10: pass --dataset cifar100",
    )


def test_download_checksum_mismatch(fake_hub, tiny_entry, tiny_model, tmp_path, pin_tiny_sha256) -> None:
    fake_hub.add_folder(
        "ikl-zoo/tiny-wrn-cifar10", save_zoo_folder(tiny_model, tmp_path / "p", entry_or_config=tiny_entry)
    )
    pin_tiny_sha256("f" * 64)
    assert_one_line_error(run("download", "tiny-wrn"), f"expected {'f' * 64}, got ", "rerun")


def test_download_offline_not_cached(fake_hub, tiny_entry, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert_one_line_error(run("download", "tiny-wrn"), "not in the Hub cache", "unset HF_HUB_OFFLINE")


@pytest.mark.parametrize("damage", ["no_config", "tampered_weights", "not_a_folder"])
def test_push_refuses_a_bad_folder(tmp_path, tiny_entry, tiny_model, monkeypatch, damage) -> None:
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("nothing may be uploaded"))
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    if damage == "no_config":
        (folder / CONFIG_NAME).unlink()
        expected = "config.json is missing"
    elif damage == "tampered_weights":
        save_file({k: v.clone() * 2 for k, v in tiny_model.state_dict().items()}, str(folder / WEIGHTS_NAME))
        expected = "sha256 mismatch"
    else:
        folder = folder / WEIGHTS_NAME
        expected = "is a file"
    result = run("push", str(folder), "--repo-id", "my-org/tiny")
    if damage == "not_a_folder":  # click validates the argument itself (exit 2, usage message)
        assert result.exit_code == 2 and expected in result.stderr
        return
    assert_one_line_error(result, "not pushing", expected)


def test_convert_never_overwrites_a_folder_that_is_not_empty_unless_asked(tmp_path, tiny_entry, tiny_model):
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(tiny_model.state_dict(), checkpoint)
    out = tmp_path / "my-model"
    out.mkdir()
    (out / CARD_NAME).write_text("my own notes\n")
    (out / "notes.txt").write_text("keep me\n")
    assert_one_line_error(
        run("convert", str(checkpoint), "--model", "tiny-wrn", "-o", str(out)),
        "is not empty (README.md, notes.txt)", "--overwrite",
    )
    assert sorted(p.name for p in out.iterdir()) == [CARD_NAME, "notes.txt"]
    assert (out / CARD_NAME).read_text() == "my own notes\n"

    result = run("convert", str(checkpoint), "--model", "tiny-wrn", "-o", str(out), "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, "notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me\n"
    assert (out / CARD_NAME).read_text().startswith("---\n")


def test_convert_overwrite_into_its_own_folder_keeps_the_source(tmp_path, tiny_entry, tiny_model):
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(tiny_model.state_dict(), checkpoint)
    out = tmp_path / "my-model"
    assert run("convert", str(checkpoint), "--model", "tiny-wrn", "-o", str(out)).exit_code == 0
    source = {"checkpoint": checkpoint.name, "sha256": file_sha256(checkpoint)}
    for again in (out, out / WEIGHTS_NAME):  # the folder itself, or its weights file
        result = run("convert", str(again), "--model", "tiny-wrn", "-o", str(out), "--overwrite")
        assert result.exit_code == 0, result.output
        assert json.loads((out / CONFIG_NAME).read_text())["source"] == source


def test_convert_into_a_folder_that_cannot_be_made(tmp_path, tiny_entry, tiny_model) -> None:
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(tiny_model.state_dict(), checkpoint)
    (tmp_path / "a-file").write_text("")
    assert_one_line_error(
        run("convert", str(checkpoint), "--model", "tiny-wrn", "-o", str(tmp_path / "a-file" / "out")),
        "cannot write", "pass an -o/--out folder you can write",
    )


@pytest.mark.parametrize(
    ("name", "data"), [("empty.safetensors", b""), ("notes.pt", b"not a checkpoint at all")]
)
def test_convert_empty_or_garbage_file(tmp_path, tiny_entry, name, data) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    result = run("convert", str(path), "--model", "tiny-wrn", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, str(path))
    assert not (tmp_path / "out").exists()


def _edit_config(folder, **changes) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    config.update(changes)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ({"dataset": "cifar100"}, "says cifar100 (100 classes) but the network has 10 outputs"),
        ({"threat_model": "Linf-ish"}, "field 'threat_model' must be one of Linf, L2, L1, not 'Linf-ish'"),
        ({"eps": "8/255"}, "field 'eps' must be a positive number such as 8/255 = 0.0314, not '8/255'"),
        ({"sha256": 123}, "field 'sha256' must be 64 hex digits, not 123"),
    ],
)
def test_push_refuses_a_config_that_would_publish_a_wrong_card(
    tmp_path, tiny_entry, tiny_model, monkeypatch, damage, expected
) -> None:
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("nothing may be uploaded"))
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    _edit_config(folder, **damage)
    assert_one_line_error(run("push", str(folder), "--repo-id", "my-org/tiny"), "not pushing", expected)


def test_push_refuses_non_finite_weights(tmp_path, tiny_entry, tiny_model, monkeypatch) -> None:
    from huggingface_hub import HfApi

    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **k: pytest.fail("nothing may be uploaded"))
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    state = {key: value.clone() for key, value in tiny_model.state_dict().items()}
    state["fc.bias"][0] = float("nan")
    save_file(state, str(folder / WEIGHTS_NAME))
    _edit_config(folder, sha256=file_sha256(folder / WEIGHTS_NAME))
    assert_one_line_error(run("push", str(folder), "--repo-id", "my-org/tiny"), "NaN or infinite", "fc.bias",
                          "convert another checkpoint")


def test_push_bad_repo_id_revision_and_unreachable_hub(tmp_path, tiny_entry, tiny_model, monkeypatch) -> None:
    import socket

    from huggingface_hub import constants

    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    bad_id = run("push", str(folder), "--repo-id", "my-org/tiny/extra")
    assert_one_line_error(bad_id, "invalid --repo-id 'my-org/tiny/extra'")
    assert "log in" not in bad_id.stderr
    empty_revision = run("push", str(folder), "--repo-id", "my-org/tiny", "--revision", " ")
    assert_one_line_error(empty_revision, "empty --revision")

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    monkeypatch.setenv("HF_TOKEN", "hf_loopbackTestToken")
    assert_one_line_error(
        run("push", str(folder), "--repo-id", "my-org/tiny"),
        f"could not reach the Hub at {closed}", "HF_ENDPOINT",
    )


def _hub_response(status: int):
    """A response of the HTTP client huggingface_hub uses (httpx2, or httpx before it)."""
    import importlib

    for client in ("httpx2", "httpx"):
        try:
            http = importlib.import_module(client)
        except ImportError:
            continue
        return http.Response(status, request=http.Request("POST", "http://hub.invalid/api/repos/create"))
    pytest.skip("neither httpx2 nor httpx is installed: huggingface_hub's HTTP errors cannot be built")


@pytest.mark.parametrize(
    ("status", "advice"),
    [(401, "log in with `hf auth login`"), (403, "may not write to my-org"), (404, "my-org does not exist"),
     (400, "HTTP 400")],
)
def test_push_refusal_advice_follows_the_hubs_answer(
    tmp_path, tiny_entry, tiny_model, monkeypatch, status, advice
) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    def refuse(*args, **kwargs):
        raise HfHubHTTPError(f"{status} Client Error", response=_hub_response(status))

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    folder = save_zoo_folder(tiny_model, tmp_path / "zoo", entry_or_config=tiny_entry)
    result = run("push", str(folder), "--repo-id", "my-org/tiny")
    assert_one_line_error(result, "the Hub refused the upload to my-org/tiny", advice)
    assert ("log in" in result.stderr) == (status == 401)
