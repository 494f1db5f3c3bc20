"""Zoo fixtures: small registered models, so that loading, download and conversion run in milliseconds."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

from ikl_zoo.threat import DATASETS, NUM_CLASSES
from ikl_zoo.zoo import registry
from ikl_zoo.zoo.spec import ModelSpec

TINY_ID = "tiny-wrn"
TINY_GDRIVE_ID = "1-tinyDriveIdForTests"


def tiny_entry_for(dataset: str, *, sha256: str | None = None) -> ModelSpec:
    return ModelSpec(
        model_id=TINY_ID,
        dataset=dataset,
        architecture_class="WideResNet",
        arguments={"depth": 10, "widen_factor": 1, "num_classes": NUM_CLASSES[dataset]},
        architecture="WideResNet-10-1",
        hub_repo_name=f"{TINY_ID}-{dataset}",
        gdrive_id=TINY_GDRIVE_ID,
        sha256=sha256,
        training="test fixture",
    )


@pytest.fixture
def tiny_entry(monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """A WRN-10-1 registered as ``tiny-wrn`` for CIFAR-10 (and CIFAR-100) for the duration of a test."""
    for dataset in DATASETS:
        entry = tiny_entry_for(dataset)
        monkeypatch.setitem(registry._REGISTRY, (entry.dataset, entry.model_id), entry)
    return registry.get_model_entry(TINY_ID, dataset="cifar10")


@pytest.fixture
def pin_tiny_sha256(monkeypatch: pytest.MonkeyPatch, tiny_entry: ModelSpec):
    """Give the CIFAR-10 tiny entry a registry sha256, as published entries have."""

    def pin(sha256: str) -> ModelSpec:
        entry = dataclasses.replace(tiny_entry, sha256=sha256)
        monkeypatch.setitem(registry._REGISTRY, (entry.dataset, entry.model_id), entry)
        return entry

    return pin


@pytest.fixture
def tiny_model(tiny_entry: ModelSpec) -> torch.nn.Module:
    """A tiny-wrn with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = tiny_entry.build()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.fixture
def writable_hub(fake_hub):
    """``fake_hub`` that also takes what ``create_repo``, ``upload_folder`` and ``create_tag`` send, as the
    Hub's HTTP API does (regular base64 uploads), and serves tags: ``tags[repo][tag]`` is a commit, ``posts``
    the paths posted."""
    fake_hub.tags, fake_hub.posts = {}, []
    fake_hub._hub.RequestHandlerClass.do_POST = lambda handler: _hub_post(fake_hub, handler)
    serve_resolve = fake_hub._serve_resolve

    def resolve_tags(handler, send_body):
        parts = handler.path.split("/")
        if len(parts) > 4 and parts[3] == "resolve":
            parts[4] = fake_hub.tags.get(f"{parts[1]}/{parts[2]}", {}).get(parts[4], parts[4])
            handler.path = "/".join(parts)
        serve_resolve(handler, send_body)

    fake_hub._serve_resolve = resolve_tags
    return fake_hub


def _hub_post(hub, handler) -> None:
    path = unquote(handler.path.split("?", 1)[0])
    body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    hub.posts.append(path)
    if path == "/api/repos/create":
        data = json.loads(body)
        repo_id = f"{data.get('organization') or 'user'}/{data['name']}"
        return _json(handler, {"url": f"{hub.endpoint}/{repo_id}"})
    if not path.startswith("/api/models/"):  # e.g. /api/validate-yaml: accepted
        return _json(handler, {})
    _, _, _, owner, name, action, revision = path.split("/", 6)
    repo_id = f"{owner}/{name}"
    if action == "preupload":
        files = json.loads(body)["files"]
        return _json(handler, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in files]})
    if action == "commit":
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                hub.add_file(repo_id, item["value"]["path"], base64.b64decode(item["value"]["content"]))
        hub.repos[repo_id].commit = hashlib.sha1(body).hexdigest()
        commit = hub.repos[repo_id].commit
        return _json(handler, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{commit}", "commitOid": commit})
    tag = json.loads(body)["tag"]
    if tag in hub.tags.get(repo_id, {}):
        return _json(handler, {"error": f"tag {tag} exists"}, status=409)
    hub.tags.setdefault(repo_id, {})[tag] = hub.repos[repo_id].commit if revision == "main" else revision
    return _json(handler, {})


def _json(handler, data, *, status: int = 200) -> None:
    body = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def drive_server(monkeypatch, tmp_path):
    """A loopback stand-in for Google Drive: real ``gdown`` downloads ``files[gdrive_id]`` from it."""
    import gdown

    files: dict[str, Path] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            requests.append(self.path + " " + str(self.headers.get("Authorization")))
            path = files.get(self.path.partition("id=")[2])
            data = path.read_bytes() if path else b"<html>not found</html>"
            self.send_response(200 if path else 404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real_download = gdown.download
    url = f"http://127.0.0.1:{server.server_address[1]}/uc?id="
    monkeypatch.setattr(gdown, "download",
                        lambda *, id, output, quiet: real_download(url=url + id, output=output, quiet=True))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield types.SimpleNamespace(files=files, requests=requests)
    server.shutdown()
    server.server_close()
