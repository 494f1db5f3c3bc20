"""The run directory: a manifest of the run's arguments, one file per finished chunk, the merged result.

::

    OUT/manifest.json              what was evaluated and how (a resumed run must match it)
    OUT/chunks/chunk_00003.json    flags of examples 1500-1999, after each attack, with times
    OUT/result.json                the EvalResult, written when every chunk is done

Every file is written atomically, so a kill at any moment leaves only whole chunks behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ikl_zoo.atomic import write_json_atomic
from ikl_zoo.errors import EvaluationError

MANIFEST_FORMAT = 1


@dataclass
class ChunkOutcome:
    """One finished chunk: examples ``start:stop`` attacked with seed ``seed``."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkOutcome:
        return cls(**data)


class RunDir:
    """Reads and writes one evaluation's directory; refuses to mix runs made with different arguments."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.manifest_path = self.path / "manifest.json"
        self.chunks_dir = self.path / "chunks"
        self.result_path = self.path / "result.json"

    def chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"chunk_{index:05d}.json"

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as error:
            raise EvaluationError(
                f"{self.manifest_path} is not valid JSON ({error}): choose another --out"
            ) from None

    def check(self, identity: dict[str, Any], *, resume: bool) -> dict[str, Any] | None:
        """Validate the directory for this run without writing; returns the existing manifest if any."""
        manifest = self.read_manifest()
        if manifest is None:
            if self.chunks_dir.is_dir() and any(self.chunks_dir.glob("chunk_*.json")):
                raise EvaluationError(
                    f"{self.chunks_dir} holds chunk files but {self.path} has no manifest.json: "
                    "choose another --out"
                )
            return None
        if not resume:
            state = "a finished" if self.result_path.is_file() else "an unfinished"
            raise EvaluationError(
                f"{self.path} already holds {state} evaluation: pass --resume to continue it, "
                "or choose another --out"
            )
        if manifest.get("format") != MANIFEST_FORMAT:
            raise EvaluationError(
                f"{self.manifest_path} has format {manifest.get('format')}, this ikl-zoo writes "
                f"{MANIFEST_FORMAT}: choose another --out"
            )
        previous = manifest.get("identity", {})
        differences = [
            f"{key} {_show(previous.get(key))} there, {_show(identity.get(key))} now"
            for key in sorted(set(previous) | set(identity))
            if previous.get(key) != identity.get(key)
        ]
        if differences:
            raise EvaluationError(
                f"--resume refused: {self.path} was made with other arguments ({'; '.join(differences)}): "
                "rerun with the same arguments, or choose another --out"
            )
        return manifest

    def write_manifest(self, identity: dict[str, Any], *, settings: dict[str, Any]) -> None:
        if self.manifest_path.is_file():
            return
        write_json_atomic(self.manifest_path, {
            "format": MANIFEST_FORMAT,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "identity": identity,
            "settings": settings,
        })

    def load_chunk(self, index: int, *, start: int, stop: int, seed: int) -> ChunkOutcome | None:
        path = self.chunk_path(index)
        if not path.is_file():
            return None
        try:
            outcome = ChunkOutcome.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise EvaluationError(f"{path} is not a chunk file ({error}): delete it to redo it") from None
        size = stop - start
        consistent = (
            (outcome.index, outcome.start, outcome.stop, outcome.seed) == (index, start, stop, seed)
            and len(outcome.clean_flags) == size and len(outcome.robust_flags) == size
            and all(len(flags) == size for flags in outcome.attack_flags.values())
        )
        if not consistent:
            raise EvaluationError(f"{path} does not belong to this run's chunk {index}: delete it to redo it")
        return outcome

    def save_chunk(self, outcome: ChunkOutcome) -> Path:
        return write_json_atomic(self.chunk_path(outcome.index), outcome.to_dict())


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "..."  # a sha256
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value)
