"""RobustBench submissions: the ``model_info`` JSON, the filled "[New Model]" issue and the model-zoo entry
(templates); a result RobustBench would refuse is refused with every reason at once, unless ``draft=True``."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ikl_zoo.atomic import write_text_atomic
from ikl_zoo.cards.subject import render
from ikl_zoo.errors import IklZooError
from ikl_zoo.evaluate.result import EvalResult
from ikl_zoo.leaderboard import records
from ikl_zoo.leaderboard.records import Measurement, ModelMetadata, model_metadata, output_errors
from ikl_zoo.leaderboard.reference import STANDARD_EPS, is_standard_eps, reference_entry, registry_entry

STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z-]*\d{4}[A-Z][A-Za-z0-9]*(?:_[A-Za-z0-9-]+)*$")
"""RobustBench's model names: ``<FirstAuthor><Year><FirstWordOfTitle>[_<variant>]``."""
FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""What even a draft's name must be: one file name inside ``model_info/<dataset>/<threat>/``."""
NAME_FIX = "pass --name <FirstAuthor><Year><FirstWordOfTitle>, e.g. Cui2023Decoupled_WRN-28-10"
BOARDS = {("cifar10", "Linf"), ("cifar10", "L2"), ("cifar100", "Linf")}
CODE_URL = "https://github.com/jiequancui/DKL"
ISSUE_FILE, ZOO_ENTRY_FILE = "new-model-issue.md", "model_zoo_entry.py"
ROBUSTBENCH_ARCHITECTURES = {"WideResNet", "DMWideResNet"}
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
    """What a RobustBench pull request needs for one model; ``problems`` say why it is only a draft."""

    name: str
    dataset: str
    threat_model: str
    model_info: dict[str, Any]
    issue_text: str
    model_zoo_entry: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    model_info_path = property(lambda self: PurePosixPath("model_info", self.dataset, self.threat_model,
                                                          f"{self.name}.json"))
    is_draft = property(lambda self: bool(self.problems))


def submission_problems(result: EvalResult | Measurement, *, name: str, metadata: ModelMetadata) -> list[str]:
    """Every reason the result cannot go to RobustBench as it stands (empty when it can)."""
    m = Measurement.from_result(result)
    standard_eps = STANDARD_EPS.get(m.threat_model)
    return render(
        "submission_problems.txt.j2", m=m, name=name, name_fix=NAME_FIX, boards=BOARDS, meta=metadata,
        standard_attacks=STANDARD_ATTACKS, standard_eps=standard_eps, options=_INFO_OPTIONS,
        is_standard=standard_eps is not None and is_standard_eps(m.eps, m.threat_model),
        missing_facts=records.missing_facts(m.provenance), flag_gaps=_flag_gaps(result),
        replaced_weights=records.replaced_weights(m.provenance), valid_name=bool(NAME_PATTERN.match(name)),
    ).splitlines()


def build_submission(
    result: EvalResult | Measurement, *, name: str | None = None, draft: bool = False,
    info: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
) -> Submission:
    """What a RobustBench submission needs, or ``SubmissionRefusedError`` naming every problem (a ``draft``
    is built anyway, saying so). ``info``: the paper's details (``INFO_KEYS``); ``config``: a zoo folder's."""
    m = Measurement.from_result(result)
    if m.settings.precision == "bf16":  # never a number to submit, not even as a draft
        raise SubmissionRefusedError("a bf16 screen is not submittable to RobustBench, not even as a draft",
                                     fix="re-run the evaluation with --precision pytorch")
    info = dict(info or {})
    if unknown := sorted(set(info) - set(INFO_KEYS)):
        raise ValueError(f"unknown info keys {unknown}; expected some of {list(INFO_KEYS)}")
    name = _file_name(m, name)
    metadata = model_metadata(m.model_id, dataset=m.dataset, threat_model=m.threat_model,
                              published=getattr(result, "published", None))
    metadata = replace(metadata, **{key: value for key, value in info.items()
                                    if key in ModelMetadata.__dataclass_fields__ and value is not None})
    problems = submission_problems(result, name=name, metadata=metadata)
    if problems and not draft:
        raise SubmissionRefusedError("not submittable to RobustBench: " + "; ".join(problems),
                                     fix="fix each, or pass --draft to write a draft")
    entry = registry_entry(m.model_id, m.dataset)
    architecture = (config or {}).get("architecture")  # the zoo folder's, else the registry entry's
    architecture = dict(architecture if isinstance(architecture, Mapping) else (entry and entry.config) or {})
    known = architecture.get("architecture_class") in ROBUSTBENCH_ARCHITECTURES
    context = {
        "name": name, "m": m, "meta": metadata, "problems": problems, "architecture": architecture,
        "known": known, "gdrive_id": info.get("gdrive_id") or (entry and entry.gdrive_id),
        "checkpoint_url": info.get("checkpoint_url"), "code_url": CODE_URL,
        "facts": records.describe_provenance(m.provenance), "sha": records.checkpoint_sha256(m.provenance),
    }
    listed = reference_entry(name, dataset=m.dataset, threat_model=m.threat_model) is not None
    return Submission(
        name=name, dataset=m.dataset, threat_model=m.threat_model,
        model_info=records.robustbench_model_info(m, metadata),
        issue_text=render("new_model_issue.md.j2", **context),
        model_zoo_entry=render("model_zoo_entry.py.j2", **context),
        problems=tuple(problems),
        notes=tuple(render("submission_notes.txt.j2", **context, listed=listed).splitlines()),
    )


def _file_name(m: Measurement, name: str | None) -> str:
    """The submission's name, refused unless it is one file name inside ``model_info/<dataset>/<threat>/``."""
    if FILE_NAME_PATTERN.match(name or m.board_id):
        return name or m.board_id
    what, fix = (f"the result's model id {m.model_id!r}", NAME_FIX) if name is None else (  # a folder's path
        f"--name {name!r}", "use letters, digits, '_', '-' and '.', e.g. Cui2023Decoupled_WRN-28-10")
    target = f"model_info/{m.dataset}/{m.threat_model}/<name>.json"
    raise SubmissionRefusedError(f"{what} cannot name {target}", fix=fix)


def write_submission(
    result: EvalResult | Measurement, out_dir: str | os.PathLike[str], *, name: str | None = None,
    draft: bool = False, info: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
) -> tuple[Submission, list[Path]]:
    """Write ``model_info/<dataset>/<threat>/<name>.json``, the issue text and the model-zoo entry."""
    submission = build_submission(result, name=name, draft=draft, info=info, config=config)
    model_info = json.dumps(submission.model_info, indent=2, ensure_ascii=False) + "\n"
    files = {submission.model_info_path: model_info, ISSUE_FILE: submission.issue_text,
             ZOO_ENTRY_FILE: submission.model_zoo_entry}
    with output_errors(out_dir, fix="pass an -o/--out folder you can write"):
        return submission, [write_text_atomic(Path(out_dir, path), text) for path, text in files.items()]


def _flag_gaps(result: EvalResult | Measurement) -> list[str]:
    """Per-example flags that do not add up to the reported accuracies mean lost or mixed-up chunks."""
    robust_flags, clean_flags = getattr(result, "robust_flags", None), getattr(result, "clean_flags", None)
    if robust_flags is None or clean_flags is None:
        return ["it carries no per-example flags (pass the result.json of `ikl-zoo eval`, not a record)"]
    n = result.n_examples
    if len(robust_flags) != n or len(clean_flags) != n:
        return [f"it has {len(clean_flags)} clean and {len(robust_flags)} robust flags for {n} examples "
                "(an evaluation with missing chunks: finish it with `ikl-zoo eval --resume`)"]
    pairs = (("robust", robust_flags, result.robust_acc), ("clean", clean_flags, result.clean_acc))
    problems = [f"its {kind} accuracy does not match its per-example flags" for kind, flags, accuracy in pairs
                if not math.isclose(sum(map(bool, flags)) / max(n, 1), accuracy, abs_tol=1e-9)]
    if any(robust and not clean for robust, clean in zip(robust_flags, clean_flags, strict=True)):
        problems.append("some examples count as robust but not as clean")
    return problems
