"""RobustBench submissions: the ``model_info`` JSON, the filled "[New Model]" issue and the model-zoo entry.

A submission is refused, with every reason at once, when the result could not stand on RobustBench's board:
fewer than 10,000 test examples, anything but AutoAttack's standard version at the board's eps, or a gap in
its seed, provenance or per-example flags. ``draft=True`` writes the files anyway, marked as a draft. The
issue and the model-zoo entry are templates under ``templates/``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ikl_zoo.atomic import write_text_atomic
from ikl_zoo.cards import facts
from ikl_zoo.cards.render import render
from ikl_zoo.errors import IklZooError
from ikl_zoo.leaderboard.records import (
    Measurement,
    ModelMetadata,
    model_metadata,
    output_errors,
    registry_entry,
    robustbench_model_info,
)
from ikl_zoo.leaderboard.reference import STANDARD_EPS, is_standard_eps, reference_entry
from ikl_zoo.threat import format_eps

if TYPE_CHECKING:
    from ikl_zoo.evaluate.result import EvalResult

MIN_EXAMPLES = 10_000
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z-]*\d{4}[A-Z][A-Za-z0-9]*(?:_[A-Za-z0-9-]+)*$")
"""RobustBench's model names: ``<FirstAuthor><Year><FirstWordOfTitle>[_<variant>]``."""
FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""What even a draft's name must be: one file name inside ``model_info/<dataset>/<threat>/``."""
NAME_FIX = "pass --name <FirstAuthor><Year><FirstWordOfTitle>, e.g. Cui2023Decoupled_WRN-28-10"
BOARDS = {("cifar10", "Linf"), ("cifar10", "L2"), ("cifar100", "Linf")}
"""The CIFAR leaderboards RobustBench runs."""
CODE_URL = "https://github.com/jiequancui/DKL"
ISSUE_FILE = "new-model-issue.md"
ZOO_ENTRY_FILE = "model_zoo_entry.py"
ROBUSTBENCH_ARCHITECTURES = {"WideResNet", "DMWideResNet"}
NORMALISATIONS = {
    "0.4914, 0.4822, 0.4465": "CIFAR10_MEAN", "0.2471, 0.2435, 0.2616": "CIFAR10_STD",
    "0.5071, 0.4865, 0.4409": "CIFAR100_MEAN", "0.2673, 0.2564, 0.2762": "CIFAR100_STD",
}
"""The names robustbench's model zoo gives the normalisations of its architectures."""
_INFO_OPTIONS = {
    "paper_title": "--paper-title", "link": "--paper-url", "authors": "--authors", "venue": "--venue",
    "architecture": "--architecture", "additional_data": "--additional-data",
}
INFO_KEYS = (*_INFO_OPTIONS, "number_forward_passes", "footnote", "reported", "checkpoint_url", "gdrive_id")
"""What ``info`` may set for a model RobustBench does not list yet (and override for one it does)."""


class SubmissionRefusedError(IklZooError):
    """The result cannot be submitted to RobustBench as it stands; the message lists every reason."""


@dataclass(frozen=True)
class Submission:
    """What a RobustBench pull request needs for one model: model_info JSON, issue text, model zoo entry."""

    name: str
    dataset: str
    threat_model: str
    model_info: dict[str, Any]
    issue_text: str
    model_zoo_entry: str
    problems: tuple[str, ...] = ()
    """Reasons RobustBench would not accept it; empty for a complete submission."""
    notes: tuple[str, ...] = ()

    @property
    def model_info_path(self) -> PurePosixPath:
        """Where the JSON goes in the RobustBench repository."""
        return PurePosixPath("model_info", self.dataset, self.threat_model, f"{self.name}.json")

    @property
    def is_draft(self) -> bool:
        return bool(self.problems)


def submission_problems(result: EvalResult | Measurement, *, name: str, metadata: ModelMetadata) -> list[str]:
    """Every reason the result cannot go to RobustBench as it stands (empty when it can)."""
    m = Measurement.from_result(result)
    standard_eps = STANDARD_EPS.get(m.threat_model)
    text = render(
        "submission_problems.txt.j2", m=m, name=name, name_fix=NAME_FIX, boards=BOARDS,
        min_examples=MIN_EXAMPLES, standard_attacks=STANDARD_ATTACKS, standard_eps=standard_eps,
        is_standard=standard_eps is not None and is_standard_eps(m.eps, m.threat_model),
        missing_facts=facts.missing_facts(m.provenance), flag_gaps=_flag_gaps(result),
        replaced_weights=facts.replaced_weights(m.provenance), valid_name=bool(NAME_PATTERN.match(name)),
        missing_options=[option for key, option in _INFO_OPTIONS.items() if _blank(getattr(metadata, key))],
    )
    return text.splitlines()


def build_submission(
    result: EvalResult | Measurement, *, name: str | None = None, draft: bool = False,
    info: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
) -> Submission:
    """Everything a RobustBench submission needs, or ``SubmissionRefusedError`` listing what is wrong.

    ``info`` supplies the paper's details for a model RobustBench does not list (keys: ``INFO_KEYS``);
    ``config`` is the model's zoo folder config.json, used for the model-zoo entry of a model that is not in
    the registry. With ``draft=True`` a refused submission is built anyway and says so everywhere.
    """
    m = Measurement.from_result(result)
    info = dict(info or {})
    if unknown := sorted(set(info) - set(INFO_KEYS)):
        raise ValueError(f"unknown info keys {unknown}; expected some of {list(INFO_KEYS)}")
    target = f"model_info/{m.dataset}/{m.threat_model}/<name>.json"
    if name is None and not FILE_NAME_PATTERN.match(m.board_id):  # a zoo folder is measured under its path
        raise SubmissionRefusedError(f"the result's model id {m.model_id!r} cannot name {target}", fix=NAME_FIX)
    name = name or m.board_id
    if not FILE_NAME_PATTERN.match(name):
        raise SubmissionRefusedError(f"--name {name!r} cannot name {target}",
                                     fix="use letters, digits, '_', '-' and '.', e.g. Cui2023Decoupled_WRN-28-10")
    metadata = model_metadata(m.model_id, dataset=m.dataset, threat_model=m.threat_model,
                              published=getattr(result, "published", None))
    metadata = replace(metadata, **{key: value for key, value in info.items()
                                    if key in ModelMetadata.__dataclass_fields__ and value is not None})
    problems = submission_problems(result, name=name, metadata=metadata)
    if problems and not draft:
        raise SubmissionRefusedError("not submittable to RobustBench: " + "; ".join(problems),
                                     fix="fix each, or pass --draft to write a draft")
    architecture = _architecture(m, config)
    known = architecture.get("architecture_class") in ROBUSTBENCH_ARCHITECTURES
    gdrive_id = info.get("gdrive_id") or _registry_gdrive_id(m)
    notes = []
    if reference_entry(name, dataset=m.dataset, threat_model=m.threat_model) is not None:
        notes.append(f"{name} is already on RobustBench's {m.dataset} {m.threat_model} board: open a new "
                     "external evaluation rather than a new model, or pick a new --name")
    if not known:
        notes.append(f"write the model's constructor into {ZOO_ENTRY_FILE} before proposing it for the model zoo")
    context = {"name": name, "m": m, "architecture": architecture, "gdrive_id": gdrive_id, "known": known}
    return Submission(
        name=name, dataset=m.dataset, threat_model=m.threat_model,
        model_info=robustbench_model_info(m, metadata),
        issue_text=render("new_model_issue.md.j2", **context, **_issue_context(m, metadata, info, problems),
                          architecture_class=architecture.get("architecture_class")),
        model_zoo_entry=render("model_zoo_entry.py.j2", **context, normalisations=NORMALISATIONS),
        problems=tuple(problems), notes=tuple(notes),
    )


def write_submission(
    result: EvalResult | Measurement, out_dir: str | os.PathLike[str], *, name: str | None = None,
    draft: bool = False, info: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
) -> tuple[Submission, list[Path]]:
    """Write ``model_info/<dataset>/<threat>/<name>.json``, the issue text and the model-zoo entry."""
    submission = build_submission(result, name=name, draft=draft, info=info, config=config)
    out_dir = Path(out_dir)
    model_info = json.dumps(submission.model_info, indent=2, ensure_ascii=False) + "\n"
    with output_errors(out_dir, fix="pass an -o/--out folder you can write"):
        paths = [
            write_text_atomic(out_dir / submission.model_info_path, model_info),
            write_text_atomic(out_dir / ISSUE_FILE, submission.issue_text),
            write_text_atomic(out_dir / ZOO_ENTRY_FILE, submission.model_zoo_entry),
        ]
    return submission, paths


def _flag_gaps(result: EvalResult | Measurement) -> list[str]:
    """Per-example flags that do not add up to the reported accuracies mean lost or mixed-up chunks."""
    robust_flags, clean_flags = getattr(result, "robust_flags", None), getattr(result, "clean_flags", None)
    if robust_flags is None or clean_flags is None:
        return ["it carries no per-example flags (pass the result.json of `ikl-zoo eval`, not a record)"]
    n = result.n_examples
    if len(robust_flags) != n or len(clean_flags) != n:
        return [f"it has {len(clean_flags)} clean and {len(robust_flags)} robust flags for {n} examples "
                "(an evaluation with missing chunks: finish it with `ikl-zoo eval --resume`)"]
    problems = [
        f"its {kind} accuracy does not match its per-example flags"
        for kind, flags, accuracy in (("robust", robust_flags, result.robust_acc),
                                      ("clean", clean_flags, result.clean_acc))
        if not math.isclose(sum(map(bool, flags)) / max(n, 1), accuracy, abs_tol=1e-9)
    ]
    if any(robust and not clean for robust, clean in zip(robust_flags, clean_flags, strict=True)):
        problems.append("some examples count as robust but not as clean")
    return problems


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _issue_context(m: Measurement, metadata: ModelMetadata, info: Mapping[str, Any],
                   problems: list[str]) -> dict[str, Any]:
    """The issue's filled-in fields; a blank one reads "(fill in)"."""
    gdrive_id = info.get("gdrive_id") or _registry_gdrive_id(m)
    shown = {key: "(fill in)" if _blank(getattr(metadata, key)) else str(getattr(metadata, key))
             for key in ("paper_title", "link", "authors", "architecture")}
    additional = metadata.additional_data
    shown["additional_data"] = "(fill in)" if additional is None else json.dumps(additional)
    checkpoint = info.get("checkpoint_url") or (gdrive_id and f"https://drive.google.com/file/d/{gdrive_id}")
    links = [f"checkpoint: {checkpoint}"] if checkpoint else []
    return {
        "problems": problems, "shown": shown, "facts": facts.describe(m.provenance),
        "sha": facts.checkpoint_sha256(m.provenance), "eps": format_eps(m.eps, m.threat_model),
        "checkpoint": checkpoint, "links": "; ".join(links + ([f"code: {CODE_URL}"] if metadata.is_ikl_at else [])),
    }


def _architecture(m: Measurement, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The architecture object of the model's zoo folder, else of its registry entry ({} when unknown)."""
    if config is not None and isinstance(config.get("architecture"), Mapping):
        return dict(config["architecture"])
    entry = registry_entry(m.model_id, m.dataset)
    return dict(entry.config or {}) if entry is not None else {}


def _registry_gdrive_id(m: Measurement) -> str | None:
    entry = registry_entry(m.model_id, m.dataset)
    return entry.pretrained.gdrive_id if entry is not None else None
