"""Result records, one JSON file per (model, dataset, threat model): RobustBench's ``model_info`` object (the
measured accuracies as strings in percent) plus an ``ikl_zoo`` section (measurement, settings, provenance)."""

from __future__ import annotations

import json
import numbers
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikl_zoo.atomic import write_json_atomic
from ikl_zoo.errors import IklZooError
from ikl_zoo.evaluate.settings import EvalSettings
from ikl_zoo.evaluate.summary import on_the_published_images
from ikl_zoo.leaderboard.reference import (
    Folder,
    LeaderboardError,
    ModelMetadata,
    check_board,
    is_standard_eps,
    model_metadata,
    robustbench_name,
)
from ikl_zoo.threat import format_eps

if TYPE_CHECKING:
    from ikl_zoo.evaluate.result import EvalResult

RECORD_FORMAT = 2  # keeps the evaluation's settings whole; earlier records are refused, never guessed at
DEFAULT_ROOT = "leaderboard"
STANDARD_ATTACK = "AutoAttack (standard)"  # the attack RobustBench's leaderboards are measured with
MODEL_INFO_KEYS = (
    "link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
    "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "external", "footnote", "unreliable",
)  # fmt: skip
"""RobustBench's ``model_info`` fields, in the order its own files use."""
METADATA_KEYS = (*MODEL_INFO_KEYS[:5], "venue", "architecture", "footnote")
"""Descriptive fields a user may edit by hand in a record; a new measurement keeps their edits."""
_MAPPING_FIELDS = ("per_attack", "timings", "model_passes", "provenance")
RERECORD_FIX = "re-run the evaluation and `ikl-zoo record --overwrite` the new result"


class RecordConflictError(LeaderboardError):
    """A new measurement would silently replace a stronger or different one."""


@contextmanager
def output_errors(path: Folder, *, fix: str = "choose a folder you can write") -> Iterator[None]:
    """Turn a failed write (not a directory, permission denied, disk full) into a one-line error."""
    try:
        yield
    except OSError as error:
        a_file = isinstance(error, FileExistsError | NotADirectoryError)
        why = "part of that path is a file, not a folder" if a_file else error.strerror or error
        raise LeaderboardError(f"cannot write {path}: {why}", fix=fix) from None


@dataclass(frozen=True)
class Measurement:
    """An evaluation's settings, figures and provenance without the per-example flags: what a record keeps."""

    model_id: str
    settings: EvalSettings
    clean_acc: float
    robust_acc: float
    attacks: tuple[str, ...] = ()
    per_attack: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model_passes: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: EvalResult | Measurement) -> Measurement:
        """The measurement of an ``EvalResult`` (its settings are checked by ``EvalSettings``)."""
        if isinstance(result, Measurement):
            return result
        kept = {item.name: getattr(result, item.name) for item in fields(cls) if item.name != "settings"}
        return cls.from_dict({**kept, "settings": result.settings.to_dict()})  # not the flags, 20,000 entries

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """A measurement as ``to_dict`` wrote it; ``TypeError``/``ValueError`` name a wrong field."""
        if not isinstance(data["settings"], dict):
            raise TypeError(f"settings is {data['settings']!r}, not an object")
        for key, wanted, valid in _CHECKS:
            if not valid(data.get(key)):
                raise ValueError(f"{key} is {data.get(key)!r}, not {wanted}")
        mappings = {key: dict(data.get(key) or {}) for key in _MAPPING_FIELDS}
        figures = (data["clean_acc"], data["robust_acc"], tuple(data.get("attacks") or ()))
        return cls(data["model_id"], EvalSettings.from_dict(data["settings"]), *figures, **mappings)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "settings": self.settings.to_dict()}

    batch_size = property(lambda self: {"auto": None}.get(self.settings.batch_size, self.settings.batch_size))
    board_id = property(lambda self: robustbench_name(self.model_id))
    attack = property(lambda self: attack_label(self.settings))
    standard_attack = property(lambda self: self.attack == STANDARD_ATTACK)

    @property
    def comparable_with_published(self) -> bool:
        """Standard AutoAttack at RobustBench's budget on its whole test set: only then does it compare."""
        standard = self.standard_attack and self.settings.precision != "bf16"
        on_board = is_standard_eps(self.eps, self.threat_model)
        return standard and on_board and on_the_published_images(self.n_examples, self.provenance)


def attack_label(settings: EvalSettings) -> str:
    """The attack an evaluation ran, as boards and cards name it: ``AutoAttack (standard)``, or its version,
    attacks and every setting changed, e.g. ``custom: apgd-ce (apgd.n_iter=10)``, never passed off as it."""
    options = ", ".join(f"{name}.{key}={value:g}" for name, values in settings.attack_options.items()
                        for key, value in values.items())  # fmt: skip
    if not settings.attacks:
        return f"AutoAttack ({', '.join(filter(None, [settings.version, options]))})"
    return f"{settings.version}: {', '.join(settings.attacks)}" + f" ({options})" * bool(options)


_SETTINGS = ("dataset", "eps", "version", "n_examples", "seed", "chunk_size")
for _name, _setting in {"threat_model": "norm", **{name: name for name in _SETTINGS}}.items():
    setattr(Measurement, _name, property(attrgetter(f"settings.{_setting}")))  # as ``EvalResult`` has them


@dataclass(frozen=True)
class Record:
    """One recorded measurement, read back from its file under the records folder."""

    path: Path
    model_info: dict[str, Any]
    measurement: Measurement
    is_ikl_at: bool


def robustbench_model_info(measurement: Measurement, metadata: ModelMetadata) -> dict[str, Any]:
    """The ``model_info`` object RobustBench would hold for this measurement, in its order and spelling."""
    robust = f"{100 * measurement.robust_acc:.2f}"
    info = {key: getattr(metadata, key) for key in METADATA_KEYS if key != "name"} | {
        "name": metadata.paper_title, "dataset": measurement.dataset, "eps": measurement.settings.eps_text,
        "clean_acc": f"{100 * measurement.clean_acc:.2f}", "autoattack_acc": robust, "unreliable": False,
        "reported": f"{metadata.reported:.2f}" if metadata.reported is not None else robust,
    }  # fmt: skip
    return {key: info[key] for key in MODEL_INFO_KEYS if key in info and (key != "footnote" or info[key])}


def record_path(model_id: str, *, dataset: str, threat_model: str, root: Folder = DEFAULT_ROOT,
                precision: str = "pytorch", eps: float | None = None) -> Path:
    """``<root>/<dataset>/<threat_model>/<RobustBench id>.json`` as in RobustBench's ``model_info/``; a bf16
    screen (``_bf16``) or another budget (``_eps4_255``) beside it, never in its place."""
    other_eps = eps is not None and not is_standard_eps(eps, threat_model)
    name = robustbench_name(model_id) + (f"_eps{format_eps(eps or 0, threat_model)}" if other_eps else "")
    name += "_bf16" * (precision == "bf16")
    return Path(root) / dataset / threat_model / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.json"


def replaced_weights_error(model_id: str, weights: str, *, dataset: str) -> LeaderboardError:
    """Why a registered model measured with a local checkpoint is not recorded, and the fixing command."""
    return LeaderboardError(
        f"the result measures {model_id} with weights from {weights}, not its published weights, so it "
        f"cannot be recorded as {model_id}",
        fix=f"make a zoo folder of that checkpoint (`ikl-zoo convert {weights} --model {model_id} --dataset "
        f"{dataset} -o DIR`) and evaluate the folder (`--model DIR`)",
    )


def write_record(result: EvalResult | Measurement, *, root: Folder = DEFAULT_ROOT, overwrite: bool = False
                 ) -> Path:
    """Add or update the record of the result's (model, dataset, threat model, eps), atomically, keeping hand
    edits to its descriptive fields (``_kept_edits`` says when it may replace a record)."""
    check_board(result.dataset, result.threat_model)
    m = Measurement.from_result(result)
    if (weights := replaced_weights(m.provenance)) is not None:
        raise replaced_weights_error(m.model_id, weights, dataset=m.dataset)
    board = {"dataset": m.dataset, "threat_model": m.threat_model}
    path = record_path(m.model_id, **board, root=root, precision=m.settings.precision, eps=m.eps)
    metadata = model_metadata(m.model_id, **board, published=getattr(result, "published", None))
    info = robustbench_model_info(m, metadata)
    if path.exists():
        info.update(_kept_edits(read_record(path), m, overwrite=overwrite))
    info["ikl_zoo"] = {
        "record_format": RECORD_FORMAT, "model_id": m.model_id, "threat_model": m.threat_model,
        "is_ikl_at": metadata.is_ikl_at, "published": metadata.published, "measurement": m.to_dict(),
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    with output_errors(path, fix="pass a --records folder you can write"):
        return write_json_atomic(path, info)


def read_record(path: Folder) -> Record:
    """One record file, with a one-line error for anything that is not an ikl-zoo record of this format."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        section = data["ikl_zoo"]
        if section.get("record_format") != RECORD_FORMAT:
            raise LeaderboardError(f"{path} is a record of an earlier ikl-zoo format", fix=RERECORD_FIX)
        measurement = Measurement.from_dict(section["measurement"])
    except LeaderboardError:
        raise
    except (OSError, KeyError, TypeError, ValueError, IklZooError) as error:
        rewrite = "remove it or rewrite it with `ikl-zoo eval --record`"
        fix = RERECORD_FIX if isinstance(error, IklZooError) else rewrite
        problem = f"{path} is not an ikl-zoo result record ({type(error).__name__}: {error})"
        raise LeaderboardError(problem, fix=fix) from None
    model_info = {key: data[key] for key in MODEL_INFO_KEYS if key in data}
    return Record(path, model_info, measurement, is_ikl_at=bool(section["is_ikl_at"]))


def load_records(root: Folder = DEFAULT_ROOT, *, dataset: str | None = None,
                 threat_model: str | None = None) -> list[Record]:
    """Every record under ``root``, optionally of one board; an unreadable one is named and skipped."""
    records = []  # a missing folder holds none
    for path in sorted(Path(root).glob(f"{dataset or '*'}/{threat_model or '*'}/*.json")):
        try:
            records.append(read_record(path))
        except LeaderboardError as error:
            print(f"skipped {path}: {str(error).replace(f'{path} ', 'it ', 1)}", file=sys.stderr)
    return records


def read_result(path: Folder) -> EvalResult:
    """An ``EvalResult`` from a result.json, with a one-line error for anything else."""
    from ikl_zoo.evaluate.result import EvalResult

    fix, problem = "pass the result.json that `ikl-zoo eval` wrote", f"{path} is not an ikl-zoo result.json"
    try:
        result = EvalResult.load(path)
        Measurement.from_result(result)  # the figures every reader relies on have the right types
        for flags in ("clean_flags", "robust_flags"):
            if not isinstance(getattr(result, flags), list):
                raise TypeError(f"{flags} is {getattr(result, flags)!r}, not a list")
        return result
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as error:
        raise LeaderboardError(f"{problem} ({type(error).__name__}: {error})", fix=fix) from None
    except IklZooError as error:
        raise LeaderboardError(f"{problem} ({error.problem})", fix=error.fix or fix) from None


def _kept_edits(existing: Record, new: Measurement, *, overwrite: bool) -> dict[str, Any]:
    """The hand edits of a record ``new`` may replace (on fewer examples or another attack: ``overwrite``)."""
    old = existing.measurement
    if old.board_id != new.board_id:
        raise RecordConflictError(f"{existing.path} holds the record of {old.model_id!r}, not of "
                                  f"{new.model_id!r} (both ids map to this file name)",
                                  fix="rename one of the models")
    n_old, n_new = old.n_examples, new.n_examples
    reasons = [f"it holds {old.attack}, this result {new.attack}"] * (old.attack != new.attack)
    reasons += [f"it holds {n_old} examples, this result {n_new}"] * (n_new < n_old)
    if reasons and not overwrite:
        fix = "pass overwrite=True / --overwrite, or delete the record"
        raise RecordConflictError(f"{existing.path} not replaced: {'; '.join(reasons)}", fix=fix)
    info = existing.model_info
    return {key: info[key] for key in METADATA_KEYS if info.get(key) not in (None, "")}


_CHECKS = [
    ("model_id", "text", lambda v: isinstance(v, str)),
    *((key, "a fraction in [0, 1]", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)
       and 0 <= v <= 1) for key in ("clean_acc", "robust_acc")),
    ("attacks", "a list of attack names",
     lambda v: isinstance(v or [], list | tuple) and all(isinstance(a, str) for a in v or [])),
    *((key, "an object", lambda v: v is None or isinstance(v, dict)) for key in _MAPPING_FIELDS),
]  # fmt: skip


# Provenance facts that records, cards and submissions rely on, by the keys evaluate.merge writes.
REQUIRED_FACTS = {
    "torch version": "torch", "AutoAttack version": "pyautoattack", "ikl-zoo version": "ikl_zoo",
    "device": "devices", "checkpoint sha256": "checkpoint_sha256",
}  # fmt: skip
"""What a result must record to be trusted by a submission, and its key. The checkpoint's sha256 is the hash
of the file a reviewer downloads, never the evaluator's ``weights_sha256`` or ``data_sha256``."""


def recorded_fact(provenance: Mapping[str, Any], fact: str) -> Any:
    """The recorded value of ``fact`` (a key of ``REQUIRED_FACTS``), or None when it is not recorded."""
    value = provenance.get(REQUIRED_FACTS[fact])
    return None if value in (None, "", []) else value


def missing_facts(provenance: Mapping[str, Any]) -> list[str]:
    return [fact for fact in REQUIRED_FACTS if recorded_fact(provenance, fact) is None]


def checkpoint_sha256(provenance: Mapping[str, Any]) -> str | None:
    return recorded_fact(provenance, "checkpoint sha256")


def describe_provenance(provenance: Mapping[str, Any]) -> str:
    """``torch 2.14.1, AutoAttack 0.2.0, ikl-zoo 0.1.0 on NVIDIA H100``: each rank's device once."""
    labels = {"torch": "torch version", "AutoAttack": "AutoAttack version", "ikl-zoo": "ikl-zoo version"}
    values = {label: recorded_fact(provenance, fact) for label, fact in labels.items()}
    text = ", ".join(f"{label} {value}" for label, value in values.items() if value is not None)
    device = ", ".join(dict.fromkeys(map(str, recorded_fact(provenance, "device") or [])))
    return f"{text} on {device}" if text and device else text or device


def replaced_weights(provenance: Mapping[str, Any]) -> str | None:
    """The local checkpoint a registered model was evaluated with instead of its published weights, if any:
    such a measurement is of that file, and must never stand for the model's published figures."""
    return provenance.get("replaced_weights") or None
