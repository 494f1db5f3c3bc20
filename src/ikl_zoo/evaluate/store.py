"""The run directory, every file written atomically; a file that cannot be read back is one line naming it.

    OUT/manifest.json              what was evaluated and how (a resumed run must match it)
    OUT/batch_size.json            the batch size the next chunk runs at, when --batch-size is auto
    OUT/chunks/chunk_00003.json    flags of examples 1500-1999, after each attack, with times
    OUT/result.json                the EvalResult, written when every chunk is done
    OUT/lock.json                  {pid, host, since} of the run using the directory, while it runs
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ikl_zoo.atomic import write_json_atomic
from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate.distributed import Shard
from ikl_zoo.evaluate.result import EvalResult
from ikl_zoo.evaluate.settings import EvalSettings

MANIFEST_FORMAT = 2
"""2: the identity holds the settings of an EvalSettings."""

_NEW_OUT = "choose another --out"
_START_OVER = "choose another --out, or delete the directory to start over"
_REDO_CHUNK = "delete it and rerun with --resume to redo that chunk"
_RESUME_AFTER_WRITE = (
    "the chunks finished before are kept: free space (or fix the folder) and rerun the same command with "
    "--resume to continue"
)
_REDO_BATCH_SIZE = "delete it and rerun with --resume (the size is then taken from the finished chunks)"


@dataclass
class ChunkOutcome:
    """One finished chunk: examples ``start:stop`` attacked with seed ``seed``, ``batch_size`` at a time."""

    index: int
    start: int
    stop: int
    seed: int
    batch_size: int
    clean_flags: list[bool]
    robust_flags: list[bool]
    attack_flags: dict[str, list[bool]]
    """Robust flags after each attack, in the order run (unchanged after an early stop)."""
    timings: dict[str, float] = field(default_factory=dict)
    model_passes: dict[str, int] = field(default_factory=dict)
    max_perturbation: float = 0.0
    device: str = ""
    rank: int = 0
    """The torch.distributed rank that attacked the chunk."""
    warnings: list[str] = field(default_factory=list)


class RunDir:
    """Reads and writes one evaluation's directory; refuses to mix runs made with different arguments."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.manifest_path, self.batch_size_path = self.path / "manifest.json", self.path / "batch_size.json"
        self.chunks_dir, self.result_path = self.path / "chunks", self.path / "result.json"

    def chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"chunk_{index:05d}.json"

    def _damaged(self, what: str, problem: str, fix: str) -> EvaluationError:
        return EvaluationError(f"run directory {self.path}: {what} is damaged ({problem})", fix=fix)

    def check(self, identity: dict[str, Any], *, resume: bool) -> dict[str, Any] | None:
        """Validate the directory for this run without writing; returns the existing manifest if any."""
        if self.path.exists() and not self.path.is_dir():
            raise _cannot_write(self.path, "it is a file, not a directory", _NEW_OUT)
        if (manifest := self._read_json(self.manifest_path, fix=_START_OVER)) is None:
            if any(self.chunks_dir.glob("chunk_*.json")):
                problem = f"{self.chunks_dir} holds chunk files but {self.path} has no manifest.json"
                raise EvaluationError(problem, fix=_NEW_OUT)
            return None
        if not (isinstance(manifest, dict) and isinstance(manifest.get("identity"), dict)):
            problem = "no identity object" if isinstance(manifest, dict) else _not_an_object(manifest)
            raise self._damaged("manifest.json", problem, _START_OVER)
        if (found := manifest.get("format")) != MANIFEST_FORMAT:
            problem = f"{self.manifest_path} has format {_show(found)}, this ikl-zoo writes {MANIFEST_FORMAT}"
            raise EvaluationError(problem, fix=_NEW_OUT)
        previous = manifest["identity"]
        differences = "; ".join(
            f"{key} {_show(previous.get(key))} there, {_show(identity.get(key))} now"
            for key in sorted(set(previous) | set(identity)) if previous.get(key) != identity.get(key)
        )
        if differences:
            where = f"--resume refused: {self.path} was made" if resume else f"{self.path} holds a run made"
            fix = "rerun with the same arguments, or choose another --out" if resume else _START_OVER
            raise EvaluationError(f"{where} with other arguments ({differences})", fix=fix)
        if not resume:
            state = "a finished" if self.result_path.is_file() else "an unfinished"
            problem = f"{self.path} already holds {state} evaluation with these arguments"
            raise EvaluationError(problem, fix="pass --resume to continue it, or choose another --out")
        return manifest

    def write_manifest(self, identity: dict[str, Any], *, settings: dict[str, Any]) -> None:
        if not self.manifest_path.is_file():
            manifest = dict(format=MANIFEST_FORMAT, created=now_utc(), identity=identity, settings=settings)
            self._write_json(self.manifest_path, manifest, fix=_NEW_OUT)

    def read_batch_size(self, *, limit: int) -> int | None:
        """The batch size an ``auto`` run settled on (probed, then halved on out-of-memory), if recorded."""
        if (data := self._read_json(self.batch_size_path, fix=_REDO_BATCH_SIZE)) is None:
            return None
        size = data.get("batch_size") if isinstance(data, dict) else None
        if not (_is_int(size) and 1 <= size <= limit):
            problem = f'expected {{"batch_size": N}} with 1 <= N <= {limit}'
            raise self._damaged("batch_size.json", problem, _REDO_BATCH_SIZE)
        return size

    def write_batch_size(self, batch_size: int) -> None:
        self._write_json(self.batch_size_path, {"batch_size": batch_size}, fix=_RESUME_AFTER_WRITE)

    def load_chunk(
        self, index: int, bounds: tuple[int, int], *, seed: int, attacks: Sequence[str]
    ) -> ChunkOutcome | None:
        (start, stop), what = bounds, f"chunk file {self.chunk_path(index).name}"
        if (data := self._read_json(self.chunk_path(index), damaged=what, fix=_REDO_CHUNK)) is None:
            return None
        if (problem := _chunk_problem(data, size=stop - start, attacks=attacks)) is not None:
            raise self._damaged(what, problem, _REDO_CHUNK)
        expected = {"index": index, "start": start, "stop": stop, "seed": seed}
        if foreign := ", ".join(f"{k} {data[k]} there, {v} now" for k, v in expected.items() if data[k] != v):
            problem = f"{what} does not belong to this run's chunk {index} ({foreign})"
            raise EvaluationError(f"run directory {self.path}: {problem}", fix=_REDO_CHUNK)
        return ChunkOutcome(**data)

    def save_chunk(self, outcome: ChunkOutcome) -> Path:
        return self._write_json(self.chunk_path(outcome.index), asdict(outcome), fix=_RESUME_AFTER_WRITE)

    def read_result(self) -> dict[str, Any] | None:
        """The stored result when this version can show it; None otherwise (it is then written again)."""
        with suppress(EvaluationError, ValueError, TypeError, KeyError, AttributeError):
            data = self._read_json(self.result_path)
            return data if EvalResult.from_dict(data) and format_utc(data["provenance"]["finished"]) else None
        return None

    def save_result(self, data: dict[str, Any]) -> Path:
        return self._write_json(self.result_path, data, fix=_RESUME_AFTER_WRITE)

    def _read_json(self, path: Path, *, damaged: str = "", fix: str = _NEW_OUT) -> Any | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):  # the write that follows names the problem
            return None
        except OSError as error:
            raise EvaluationError(f"cannot read {path}: {error.strerror or error}", fix=fix) from None
        except ValueError as error:  # UnicodeDecodeError or json.JSONDecodeError
            kind = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else "not valid JSON"
            raise self._damaged(damaged or path.name, f"{kind}: {error}", fix) from None

    def _write_json(self, path: Path, data: Any, *, fix: str) -> Path:
        """``fix``: another --out before the run has started, --resume once it has (a full disk late in a long
        run must not send the user to start over elsewhere)."""
        try:
            return write_json_atomic(path, data)
        except OSError as error:
            raise _cannot_write(self.path, error, fix) from None


def _cannot_write(directory: Path, error: OSError | str, fix: str) -> EvaluationError:
    """One line for a run directory that cannot be written: the reason, the file if another, the fix."""
    reason = error if isinstance(error, str) else error.strerror or str(error)
    if isinstance(error, OSError) and error.filename not in (None, str(directory)):
        reason += f" ({error.filename})"
    return EvaluationError(f"cannot write the run directory {directory}: {reason}", fix=fix)


def open_run_dir(
    run_dir: RunDir, identity: dict[str, Any], *, settings: EvalSettings, resume: bool, shard: Shard
) -> None:
    """Every rank validates before anyone writes, and rank 0 writes before the others; a failure on any
    rank is raised on every rank, so none waits for the others forever."""
    manifest, problem = _attempt(lambda: run_dir.check(identity, resume=resume))
    _raise_first(shard.all_gather(problem))
    if resume and manifest is None and shard.is_main:
        tqdm.write(f"--resume: {run_dir.path} holds no run yet; starting a new one there")
    write = partial(run_dir.write_manifest, identity, settings=settings.to_dict())
    _raise_first([shard.broadcast(_attempt(write)[1] if shard.is_main else None)])
    _raise_first(shard.all_gather(_attempt(write)[1]))  # ranks on another machine keep their own copy


def _attempt(action: Callable[[], Any]) -> tuple[Any, EvaluationError | None]:
    """``action``'s value, or the EvaluationError it raised (it pickles with its fix, to pass to other
    ranks)."""
    try:
        return action(), None
    except EvaluationError as error:
        return None, error


def _raise_first(problems: list[EvaluationError | None]) -> None:
    if (problem := next(filter(None, problems), None)) is not None:
        raise problem


_CHUNK_INTS = ("index", "start", "stop", "seed", "batch_size", "rank")
_CHUNK_FIELDS = {item.name for item in fields(ChunkOutcome)}


def _chunk_problem(data: Any, *, size: int, attacks: Sequence[str]) -> str | None:
    """What is wrong with a chunk file's JSON for a chunk of ``size`` examples, or None."""
    if not isinstance(data, dict):
        return _not_an_object(data)
    if (missing := sorted(_CHUNK_FIELDS - set(data))) or (unexpected := sorted(set(data) - _CHUNK_FIELDS)):
        return f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(unexpected)}"
    for key in _CHUNK_INTS:
        if not _is_int(data[key]) or data[key] < (least := int(key == "batch_size")):
            return f"{key} is {_show(data[key])}, not an integer >= {least}"
    if not isinstance(after := data["attack_flags"], dict) or list(after) != list(attacks):
        found = ", ".join(after) or "no attack" if isinstance(after, dict) else "no object"
        return f"attack_flags gives the flags after {found}, not after {', '.join(attacks)}"
    stages = {"clean_flags": data["clean_flags"], **{f"attack_flags[{name}]": after[name] for name in after}}
    for name, flags in {**stages, "robust_flags": data["robust_flags"]}.items():
        if not _all(flags, list, lambda flag: isinstance(flag, bool)):
            return f"{name} is not a list of true/false"
        if len(flags) != size:
            return f"{name} has {len(flags)} entries, the chunk has {size} examples"
    # Each attack can only remove survivors; the last attack's survivors are the robust ones.
    flags = list(stages.values())
    added = any(a and not b for before, after in pairwise(flags) for b, a in zip(before, after, strict=True))
    checks = {
        "the flags after the attacks contradict each other": not added and flags[-1] == data["robust_flags"],
        "timings are not numbers": _all(data["timings"], dict, _is_number),
        "model_passes are not integers": _all(data["model_passes"], dict, _is_int),
        "max_perturbation is not a number": _is_number(data["max_perturbation"]),
        "device is not a string": isinstance(data["device"], str),
        "warnings are not a list of strings": _all(data["warnings"], list, lambda text: type(text) is str),
    }
    return next((problem for problem, fine in checks.items() if not fine), None)


def _all(value: Any, kind: type, test: Callable[[Any], bool]) -> bool:
    """``value`` is a ``kind`` (list or dict) whose items (values) all pass ``test``."""
    return isinstance(value, kind) and all(map(test, value.values() if kind is dict else value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _not_an_object(value: Any) -> str:
    kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return f"a JSON {kind.get(type(value), type(value).__name__)}, not an object"


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "..."  # a sha256
    return f"{value:.6g}" if isinstance(value, float) else json.dumps(value)


def format_utc(iso: str) -> str:
    """``2026-12-04 06:30 UTC`` from an ISO time this package wrote."""
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def run_dir_lock(path: str | os.PathLike[str], *, shard: Shard) -> Iterator[None]:
    """One evaluation per run directory: rank 0 holds ``lock.json`` for its ranks until the run ends or
    fails; another run is refused at once, naming the holder. A lock whose process is gone from this host is
    taken over; one from another host never is."""
    held, problem = _attempt(lambda: _take_lock(Path(path).expanduser())) if shard.is_main else (None, None)
    _raise_first([shard.broadcast(problem)])
    try:
        yield
    finally:
        with suppress(OSError, ValueError, TypeError):
            if held is not None and json.loads(held[0].read_text(encoding="utf-8")) == held[1]:
                held[0].unlink()
                if held[2]:  # made by this run and left empty: it failed before writing anything
                    held[0].parent.rmdir()


def _take_lock(directory: Path) -> tuple[Path, dict[str, Any], bool] | None:
    """Create ``lock.json`` atomically (mode "x": O_CREAT|O_EXCL); None when this process holds it already or
    ``directory`` is a file (the check names that)."""
    if directory.exists() and not directory.is_dir():
        return None
    created, lock = not directory.exists(), directory / "lock.json"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_utc()}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a lock released, or taken over, between the create and the read: once more
            with suppress(FileExistsError), open(lock, "x", encoding="utf-8") as file:
                json.dump(me, file)
                return lock, me, created
            if _holder(lock) == (me["pid"], me["host"]):
                return None
    except OSError as error:
        raise _cannot_write(directory, error, _NEW_OUT) from None
    raise EvaluationError(f"{directory}: other runs keep taking {lock}: wait for them, or use another --out")


def _holder(lock: Path) -> tuple[int, str] | None:
    """The (pid, host) holding ``lock``; None once it is gone (released, or a gone process's, removed).
    A live process's lock is refused, and so is any lock of another host."""
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
        pid, host, since = int(holder["pid"]), str(holder["host"]), format_utc(holder["since"])
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        problem = f"{lock} is damaged (not a lock of ikl-zoo)"
        raise EvaluationError(problem, fix=f"delete it if no evaluation runs in {lock.parent}") from None
    held = f"{lock.parent} is in use by pid {pid} on host {host} since {since}"
    if host != socket.gethostname():
        fix = f"wait for it to finish, or use another --out; if that run is gone, delete {lock}"
        raise EvaluationError(f"{held} (another machine)", fix=fix)
    if pid == os.getpid():
        return pid, host
    with suppress(PermissionError):  # another user's live process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tqdm.write(f"{lock.parent}: taking over the lock of pid {pid} (since {since}), which is gone")
            lock.unlink(missing_ok=True)
            return None
    raise EvaluationError(f"{held}: wait for it to finish, or use another --out")
