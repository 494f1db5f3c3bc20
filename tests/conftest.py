"""Shared fixtures: a loopback Hugging Face Hub, real CIFAR images, and evaluation results.

``fake_hub`` serves ``HEAD``/``GET /{namespace}/{name}/resolve/{revision}/{filename}`` on 127.0.0.1 the
way huggingface.co does: ``X-Repo-Commit``, ``ETag`` and ``Content-Length`` on small files; large
(``.safetensors``) files redirect to a second origin standing in for the CDN, with ``X-Linked-Etag`` and
``X-Linked-Size``; missing repositories, revisions and files answer 404 with the Hub's ``X-Error-Code``.
The real ``huggingface_hub.hf_hub_download`` runs against it (``huggingface_hub.constants`` are
patched, since the library reads ``HF_ENDPOINT`` once at import), with the Hub cache in a temporary folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from ikl_zoo.evaluate.result import EvalResult
from ikl_zoo.evaluate.settings import EvalSettings
from ikl_zoo.threat import DATASETS


@dataclass
class HubRequest:
    origin: str
    """``"hub"`` or ``"cdn"``."""
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeRepo:
    files: dict[str, bytes] = field(default_factory=dict)
    commit: str = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """A Hub endpoint and its CDN on two loopback ports; every request is recorded in ``requests``."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[HubRequest] = []
        self._lock = threading.Lock()
        self._hub = self._serve("hub")
        self._cdn = self._serve("cdn")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def add_file(self, repo_id: str, filename: str, data: bytes) -> None:
        self.repos.setdefault(repo_id, FakeRepo()).files[filename] = data

    def add_folder(self, repo_id: str, folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                self.add_file(repo_id, path.name, path.read_bytes())

    def file_gets(self, filename: str) -> list[HubRequest]:
        """GETs that transferred ``filename`` (from the Hub itself or from the CDN)."""
        blobs = {
            hashlib.sha256(data).hexdigest()
            for repo in self.repos.values()
            for name, data in repo.files.items()
            if name == filename
        }
        return [
            request
            for request in self.requests
            if request.method == "GET"
            and (request.path.endswith(f"/{filename}") or request.path.rsplit("/", 1)[-1] in blobs)
        ]

    def close(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    # -- HTTP ---------------------------------------------------------------------------------------

    def _serve(self, origin: str) -> ThreadingHTTPServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802
                hub._handle(self, origin, send_body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._handle(self, origin, send_body=True)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return server

    def _handle(self, handler: BaseHTTPRequestHandler, origin: str, *, send_body: bool) -> None:
        with self._lock:
            self.requests.append(
                HubRequest(
                    origin, handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}
                )
            )
        if origin == "cdn":
            self._serve_blob(handler, send_body)
        else:
            self._serve_resolve(handler, send_body)

    def _serve_blob(self, handler: BaseHTTPRequestHandler, send_body: bool) -> None:
        digest = handler.path.rsplit("/", 1)[-1]
        for repo in self.repos.values():
            for data in repo.files.values():
                if hashlib.sha256(data).hexdigest() == digest:
                    self._reply(handler, 200, {"ETag": f'"{digest}"'}, data, send_body)
                    return
        self._reply(handler, 404, {}, b"no such blob", send_body)

    def _serve_resolve(self, handler: BaseHTTPRequestHandler, send_body: bool) -> None:
        parts = unquote(handler.path.split("?", 1)[0]).lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._reply(handler, 404, {"X-Error-Code": "RepoNotFound"}, b"not found", send_body)
            return
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            self._reply(handler, 404, {"X-Error-Code": "RepoNotFound"}, b"Repository not found", send_body)
            return
        if revision not in ("main", repo.commit):
            self._reply(handler, 404, {"X-Error-Code": "RevisionNotFound"}, b"Invalid rev id", send_body)
            return
        commit = {"X-Repo-Commit": repo.commit}
        data = repo.files.get(filename)
        if data is None:
            self._reply(
                handler, 404, {**commit, "X-Error-Code": "EntryNotFound"}, b"Entry not found", send_body
            )
            return
        digest = hashlib.sha256(data).hexdigest()
        if filename.endswith(".safetensors"):  # stored with LFS: the Hub redirects to its CDN
            headers = {
                **commit,
                "Location": f"{self.cdn}/blobs/{digest}",
                "X-Linked-Etag": f'"{digest}"',
                "X-Linked-Size": str(len(data)),
                "ETag": '"lfs-pointer"',
            }
            self._reply(handler, 302, headers, b"", send_body)
            return
        self._reply(handler, 200, {**commit, "ETag": f'"{digest[:40]}"'}, data, send_body)

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes, send_body: bool
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if send_body:
            handler.wfile.write(body)


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A loopback Hub as ``HF_ENDPOINT``, an empty Hub cache and ikl-zoo cache, online, no token."""
    from huggingface_hub import constants

    hub = FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    if hasattr(constants, "AGENT_HARNESSES_PATH"):  # a registry huggingface_hub fetches from the endpoint
        monkeypatch.setattr(
            constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf_home" / ".agent_harnesses.json")
        )
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "IKL_ZOO_CACHE", "IKL_ZOO_HUB_NAMESPACE"):
        monkeypatch.delenv(variable, raising=False)
    yield hub
    hub.close()


FOOLBOX_CIFAR10_COUNT = 20


@pytest.fixture(scope="session")
def foolbox_cifar10():
    """The first 20 CIFAR-10 test images foolbox ships: ``(x, y)``, x float32 NCHW in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "foolbox is a test dependency"
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = sorted(data_dir.glob("cifar10_*.png"))
    assert len(files) == FOOLBOX_CIFAR10_COUNT, (
        f"expected 20 CIFAR-10 images in {data_dir}, found {len(files)}"
    )
    images = [np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0 for path in files]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([int(path.stem.rsplit("_", 1)[1]) for path in files])
    return x, y


# EvalResult objects built directly, shaped like the evaluator's output (records, boards, cards, submissions).

STANDARD_ATTACKS = ["apgd-ce", "apgd-t", "fab-t", "square"]
PROVENANCE = {
    "ikl_zoo": "0.1.0",
    "torch": "2.14.1",
    "pyautoattack": "0.2.0",
    "devices": ["NVIDIA H100 80GB HBM3"],
    "checkpoint_sha256": "ab" * 32,
    "data": "cifar10 test split, torchvision layout",
    "official_test_set": True,
}


def build_result(
    model_id: str = "Cui2023Decoupled_WRN-28-10",
    *,
    dataset: str = "cifar10",
    n_examples: int = 10_000,
    clean: float = 0.9215,
    robust: float = 0.6770,
    threat_model: str = "Linf",
    eps: float = 8 / 255,
    version: str = "standard",
    seed: int = 0,
    provenance: dict | None = None,
) -> EvalResult:
    n_clean, n_robust = round(clean * n_examples), round(robust * n_examples)
    custom = version == "custom"
    settings = EvalSettings(
        eps=eps, norm=threat_model, version=version, attacks=["apgd-ce"] if custom else None, seed=seed,
        batch_size=500, chunk_size=500, dataset=dataset if dataset in DATASETS else "cifar10",
        n_examples=n_examples,
    )
    if dataset not in DATASETS:  # a hand-edited result: the evaluator never writes one
        object.__setattr__(settings, "dataset", dataset)
    return EvalResult(
        model_id=model_id,
        settings=settings,
        attacks=list(STANDARD_ATTACKS) if version == "standard" else ["apgd-ce"],
        batch_size=500,
        clean_acc=n_clean / n_examples,
        robust_acc=n_robust / n_examples,
        clean_flags=[i < n_clean for i in range(n_examples)],
        robust_flags=[i < n_robust for i in range(n_examples)],
        per_attack={
            "apgd-ce": (n_robust + 50) / n_examples,
            "apgd-t": n_robust / n_examples,
            "fab-t": n_robust / n_examples,
            "square": n_robust / n_examples,
        },
        timings={"total": 3600.0, "clean": 10.0},
        model_passes={"forward": 123456, "backward": 98765},
        provenance=dict(PROVENANCE if provenance is None else provenance),
    )


@pytest.fixture
def make_result() -> Callable[..., EvalResult]:
    return build_result
