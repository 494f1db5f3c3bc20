"""RobustBench submissions: the ``model_info`` JSON, the filled "[New Model]" issue and the model-zoo entry.

A submission is refused, with every reason at once, when the result could not stand on RobustBench's board:
fewer than 10,000 test examples, anything but AutoAttack's standard version at the board's eps, or a gap in
its seed, provenance or per-example flags. ``draft=True`` writes the files anyway, marked as a draft.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ikl_zoo.atomic import write_text_atomic
from ikl_zoo.errors import IklZooError
from ikl_zoo.leaderboard.provenance import checkpoint_sha256, describe, missing_facts, replaced_weights
from ikl_zoo.leaderboard.records import (
    Measurement,
    ModelMetadata,
    model_metadata,
    output_errors,
    registry_entry,
    robustbench_model_info,
)
from ikl_zoo.leaderboard.reference import (
    STANDARD_EPS,
    is_standard_eps,
    reference_entry,
)
from ikl_zoo.threat import format_eps

if TYPE_CHECKING:
    from ikl_zoo.evaluate.result import EvalResult

MIN_EXAMPLES = 10_000
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z-]*\d{4}[A-Z][A-Za-z0-9]*(?:_[A-Za-z0-9-]+)*$")
"""RobustBench's model names: ``<FirstAuthor><Year><FirstWordOfTitle>[_<variant>]``."""
FILE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""What even a draft's name must be: one file name inside ``model_info/<dataset>/<threat>/``."""
BOARDS = {("cifar10", "Linf"), ("cifar10", "L2"), ("cifar100", "Linf")}
"""The CIFAR leaderboards RobustBench runs."""
CODE_URL = "https://github.com/jiequancui/DKL"
ISSUE_FILE = "new-model-issue.md"
ZOO_ENTRY_FILE = "model_zoo_entry.py"
ARCHITECTURES_URL = (
    "https://github.com/RobustBench/robustbench/tree/master/robustbench/model_zoo/architectures"
)
ROBUSTBENCH_ARCHITECTURES = {"WideResNet", "DMWideResNet"}
_NORMALISATION = {
    (0.4914, 0.4822, 0.4465): "CIFAR10_MEAN",
    (0.2471, 0.2435, 0.2616): "CIFAR10_STD",
    (0.5071, 0.4865, 0.4409): "CIFAR100_MEAN",
    (0.2673, 0.2564, 0.2762): "CIFAR100_STD",
}
INFO_KEYS = (
    "paper_title",
    "link",
    "authors",
    "venue",
    "architecture",
    "additional_data",
    "number_forward_passes",
    "footnote",
    "reported",
    "checkpoint_url",
    "gdrive_id",
)
"""What ``info`` may set for a model RobustBench does not list yet (and override for one it does)."""
_INFO_OPTIONS = {
    "paper_title": "--paper-title",
    "link": "--paper-url",
    "authors": "--authors",
    "venue": "--venue",
    "architecture": "--architecture",
    "additional_data": "--additional-data",
}


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
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def model_info_path(self) -> PurePosixPath:
        """Where the JSON goes in the RobustBench repository."""
        return PurePosixPath("model_info", self.dataset, self.threat_model, f"{self.name}.json")

    @property
    def is_draft(self) -> bool:
        return bool(self.problems)


def submission_problems(result: EvalResult | Measurement, *, name: str, metadata: ModelMetadata) -> list[str]:
    """Every reason the result cannot go to RobustBench as it stands (empty when it can)."""
    measurement = Measurement.from_result(result)
    problems = []
    if (measurement.dataset, measurement.threat_model) not in BOARDS:
        problems.append(f"RobustBench has no {measurement.dataset} {measurement.threat_model} leaderboard")
    if measurement.n_examples < MIN_EXAMPLES:
        problems.append(
            f"it covers {measurement.n_examples} test examples; RobustBench needs all {MIN_EXAMPLES:,} "
            f"(rerun `ikl-zoo eval` with --n-examples {MIN_EXAMPLES})"
        )
    if measurement.version != "standard" or tuple(measurement.attacks) != STANDARD_ATTACKS:
        problems.append(
            f"it ran AutoAttack version {measurement.version!r} "
            f"({', '.join(measurement.attacks) or 'no attacks'}); "
            f"RobustBench needs version 'standard' ({', '.join(STANDARD_ATTACKS)})"
        )
    if measurement.threat_model in STANDARD_EPS and not is_standard_eps(
        measurement.eps, measurement.threat_model
    ):
        standard = format_eps(STANDARD_EPS[measurement.threat_model], measurement.threat_model)
        problems.append(
            f"it used eps {format_eps(measurement.eps, measurement.threat_model)}; RobustBench's "
            f"{measurement.threat_model} board uses {standard}"
        )
    if measurement.seed is None:
        problems.append("it records no seed, so nobody can rerun it exactly")
    gaps = missing_facts(measurement.provenance)
    if gaps:
        problems.append(f"its provenance lacks the {', '.join(gaps)} (rerun with `ikl-zoo eval`)")
    problems += _flag_gaps(result)
    weights = replaced_weights(measurement.provenance)
    if weights is not None:
        problems.append(
            f"it measures {measurement.model_id} with weights from {weights}, not its published weights "
            "(make a zoo folder of that checkpoint with `ikl-zoo convert`, evaluate the folder, and pass "
            "--model-dir and a new --name)"
        )
    if not NAME_PATTERN.match(name):
        problems.append(
            f"{name!r} is not a RobustBench name: pass --name <FirstAuthor><Year><FirstWordOfTitle>, "
            "e.g. Cui2023Decoupled_WRN-28-10"
        )
    missing = [option for key, option in _INFO_OPTIONS.items() if _blank(getattr(metadata, key))]
    if missing:
        problems.append(f"RobustBench needs the paper's details: pass {', '.join(missing)}")
    return problems


def build_submission(
    result: EvalResult | Measurement,
    *,
    name: str | None = None,
    draft: bool = False,
    info: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Submission:
    """Everything a RobustBench submission needs, or ``SubmissionRefusedError`` listing what is wrong.

    ``info`` supplies the paper's details for a model RobustBench does not list (keys: ``INFO_KEYS``);
    ``config`` is the model's zoo folder config.json, used for the model-zoo entry of a model that is not in
    the registry. With ``draft=True`` a refused submission is built anyway and says so everywhere.
    """
    measurement = Measurement.from_result(result)
    info = dict(info or {})
    unknown = sorted(set(info) - set(INFO_KEYS))
    if unknown:
        raise ValueError(f"unknown info keys {unknown}; expected some of {list(INFO_KEYS)}")
    if name is None and not FILE_NAME_PATTERN.match(measurement.board_id):
        # A zoo folder is measured under its path, which names no file: the name has to come from the user.
        raise SubmissionRefusedError(
            f"the result's model id {measurement.model_id!r} cannot name model_info/{measurement.dataset}/"
            f"{measurement.threat_model}/<name>.json: pass --name <FirstAuthor><Year><FirstWordOfTitle>, "
            "e.g. Cui2023Decoupled_WRN-28-10"
        )
    name = name or measurement.board_id
    if not FILE_NAME_PATTERN.match(name):
        raise SubmissionRefusedError(
            f"--name {name!r} cannot name model_info/{measurement.dataset}/{measurement.threat_model}/"
            "<name>.json: use letters, digits, '_', '-' and '.', e.g. Cui2023Decoupled_WRN-28-10"
        )
    metadata = _with_info(
        model_metadata(
            measurement.model_id,
            dataset=measurement.dataset,
            threat_model=measurement.threat_model,
            published=getattr(result, "published", None),
        ),
        info,
    )
    problems = submission_problems(result, name=name, metadata=metadata)
    if problems and not draft:
        raise SubmissionRefusedError(
            "not submittable to RobustBench: " + "; ".join(problems) + " (or pass --draft to write a draft)"
        )
    model_info = robustbench_model_info(measurement, metadata)
    notes = []
    if reference_entry(name, dataset=measurement.dataset, threat_model=measurement.threat_model) is not None:
        notes.append(
            f"{name} is already on RobustBench's {measurement.dataset} {measurement.threat_model} board: "
            "open a new external evaluation rather than a new model, or pick a new --name"
        )
    zoo_entry, constructor_known = _model_zoo_entry(name, measurement, info, config)
    if not constructor_known:
        notes.append(
            f"write the model's constructor into {ZOO_ENTRY_FILE} before proposing it for the model zoo"
        )
    return Submission(
        name=name,
        dataset=measurement.dataset,
        threat_model=measurement.threat_model,
        model_info=model_info,
        issue_text=_issue_text(name, measurement, metadata, info, config, problems, constructor_known),
        model_zoo_entry=zoo_entry,
        problems=tuple(problems),
        notes=tuple(notes),
    )


def write_submission(
    result: EvalResult | Measurement,
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    draft: bool = False,
    info: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> tuple[Submission, list[Path]]:
    """Write ``model_info/<dataset>/<threat>/<name>.json``, the issue text and the model-zoo entry."""
    submission = build_submission(result, name=name, draft=draft, info=info, config=config)
    out_dir = Path(out_dir)
    with output_errors(out_dir, fix="pass an -o/--out folder you can write"):
        paths = [
            write_text_atomic(
                out_dir / submission.model_info_path,
                json.dumps(submission.model_info, indent=2, ensure_ascii=False) + "\n",
            ),
            write_text_atomic(out_dir / ISSUE_FILE, submission.issue_text),
            write_text_atomic(out_dir / ZOO_ENTRY_FILE, submission.model_zoo_entry),
        ]
    return submission, paths


def _flag_gaps(result: EvalResult | Measurement) -> list[str]:
    """Per-example flags that do not add up to the reported accuracies mean lost or mixed-up chunks."""
    robust_flags = getattr(result, "robust_flags", None)
    clean_flags = getattr(result, "clean_flags", None)
    if robust_flags is None or clean_flags is None:
        return ["it carries no per-example flags (pass the result.json of `ikl-zoo eval`, not a record)"]
    n = result.n_examples
    if len(robust_flags) != n or len(clean_flags) != n:
        return [
            f"it has {len(clean_flags)} clean and {len(robust_flags)} robust flags for {n} examples "
            "(an evaluation with missing chunks: finish it with `ikl-zoo eval --resume`)"
        ]
    problems = []
    if not math.isclose(sum(map(bool, robust_flags)) / max(n, 1), result.robust_acc, abs_tol=1e-9):
        problems.append("its robust accuracy does not match its per-example flags")
    if not math.isclose(sum(map(bool, clean_flags)) / max(n, 1), result.clean_acc, abs_tol=1e-9):
        problems.append("its clean accuracy does not match its per-example flags")
    if any(robust and not clean for robust, clean in zip(robust_flags, clean_flags, strict=True)):
        problems.append("some examples count as robust but not as clean")
    return problems


def _with_info(metadata: ModelMetadata, info: Mapping[str, Any]) -> ModelMetadata:
    changes = {
        key: value
        for key, value in info.items()
        if key in ModelMetadata.__dataclass_fields__ and value is not None
    }
    return replace(metadata, **changes)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _architecture_config(measurement: Measurement, config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if config is not None and isinstance(config.get("architecture"), Mapping):
        return dict(config["architecture"])
    entry = registry_entry(measurement.model_id, measurement.dataset)
    return json.loads(json.dumps(entry.config)) if entry is not None and entry.config else None


def _constructor(architecture: Mapping[str, Any] | None, dataset: str) -> str | None:
    """The constructor call as robustbench's model zoo writes it, or None for an architecture it lacks."""
    if not architecture:
        return None
    kind = architecture.get("architecture_class")
    num_classes = architecture.get("num_classes", 10)
    if kind == "WideResNet":
        classes = f", num_classes={num_classes}" if num_classes != 10 else ""
        return (
            f"WideResNet(depth={architecture.get('depth')}, widen_factor={architecture.get('widen_factor')}"
            f"{classes}, sub_block1=False)"
        )
    if kind == "DMWideResNet":
        activation = architecture.get("activation", "SiLU")
        activation_fn = "Swish" if activation == "Swish" else f"nn.{activation}"
        default_prefix = "CIFAR100" if dataset == "cifar100" else "CIFAR10"
        mean = _normalisation_name(architecture.get("mean"), f"{default_prefix}_MEAN")
        std = _normalisation_name(architecture.get("std"), f"{default_prefix}_STD")
        return (
            f"DMWideResNet(num_classes={num_classes}, depth={architecture.get('depth')}, "
            f"width={architecture.get('width')}, activation_fn={activation_fn}, mean={mean}, std={std})"
        )
    return None


def _normalisation_name(values: Any, default: str) -> str:
    if values is None:
        return default
    rounded = tuple(round(float(v), 4) for v in values)
    return _NORMALISATION.get(rounded, repr(rounded))


def _gdrive_id(measurement: Measurement, info: Mapping[str, Any]) -> str | None:
    if info.get("gdrive_id"):
        return str(info["gdrive_id"])
    entry = registry_entry(measurement.model_id, measurement.dataset)
    return entry.pretrained.gdrive_id if entry is not None else None


def _model_zoo_entry(
    name: str, measurement: Measurement, info: Mapping[str, Any], config: Mapping[str, Any] | None
) -> tuple[str, bool]:
    constructor = _constructor(_architecture_config(measurement, config), measurement.dataset)
    gdrive_id = _gdrive_id(measurement, info)
    dict_name = {"Linf": "linf", "L2": "l2"}.get(measurement.threat_model, measurement.threat_model.lower())
    lines = [
        f"# Entry for `{dict_name}` in robustbench/model_zoo/{measurement.dataset}.py",
        "# (an OrderedDict of (name, entry) pairs; robustbench downloads 'gdrive_id' from Google Drive).",
    ]
    if constructor is None:
        lines.append("# TODO: the constructor of the model's architecture; add its file under")
        lines.append("# robustbench/model_zoo/architectures/ if robustbench lacks it.")
    lines += [
        f"('{name}', {{",
        "    'model':",
        f"    lambda: {constructor or 'TODO_ARCHITECTURE()'},",
        "    'gdrive_id':",
        f"    '{gdrive_id or 'TODO_GOOGLE_DRIVE_ID'}'",
        "}),",
    ]
    return "\n".join(lines) + "\n", constructor is not None


def _issue_text(
    name: str,
    measurement: Measurement,
    metadata: ModelMetadata,
    info: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    problems: list[str],
    constructor_known: bool,
) -> str:
    """RobustBench's "New Model(s)" issue template, filled in (title and labels in the first comment)."""

    def shown(value: Any) -> str:
        return "(fill in)" if _blank(value) else str(value)

    sha = checkpoint_sha256(measurement.provenance)
    evaluation = (
        f"AutoAttack, version {measurement.version!r} ({', '.join(measurement.attacks)}), on the first "
        f"{measurement.n_examples} images of the {measurement.dataset} test set, seed {measurement.seed}"
        f"{f', batch size {measurement.batch_size}' if measurement.batch_size else ''}; run with ikl-zoo"
    )
    facts = describe(measurement.provenance)
    if facts:
        evaluation += f" ({facts})"
    if sha:
        evaluation += f"; checkpoint sha256 {sha}"
    gdrive_id = _gdrive_id(measurement, info)
    drive_url = f"https://drive.google.com/file/d/{gdrive_id}" if gdrive_id else None
    checkpoint = info.get("checkpoint_url") or drive_url
    code = CODE_URL if metadata.is_ikl_at else None
    links = "; ".join(
        filter(None, [f"checkpoint: {checkpoint}" if checkpoint else None, f"code: {code}" if code else None])
    )
    architecture_class = (_architecture_config(measurement, config) or {}).get("architecture_class")
    not_included = architecture_class is not None and architecture_class not in ROBUSTBENCH_ARCHITECTURES
    lines = [f"<!-- Issue title: [New Model] {name}   labels: new-model -->"]
    if problems:
        lines += ["", "> **DRAFT, not ready to submit:** " + "; ".join(problems) + "."]
    lines += [
        "",
        "# Paper Information",
        "",
        f"- **Paper Title**: {shown(metadata.paper_title)}",
        f"- **Paper URL**: {shown(metadata.link)}",
        f"- **Paper authors**: {shown(metadata.authors)}",
        "",
        "# Leaderboard Claim(s)",
        "",
        "## Model 1",
        "",
        f"- **Architecture**: {shown(metadata.architecture)}",
        f"- **Threat Model**: {measurement.threat_model}",
        f"- **eps**: {format_eps(measurement.eps, measurement.threat_model)}",
        f"- **Clean accuracy**: {100 * measurement.clean_acc:.2f}%",
        f"- **Robust accuracy**: {100 * measurement.robust_acc:.2f}%",
        f"- **Additional data**: {shown(_json_bool(metadata.additional_data))}",
        f"- **Evaluation method**: {evaluation}",
        f"- **Checkpoint and code**: {links or '(fill in the URL of the checkpoint and of the code)'}",
        "",
        "# Model Zoo:",
        "",
        f"- [{'x' if checkpoint and constructor_known else ' '}] I want to add my models to the Model Zoo "
        "(check if true)",
        f"- [{'x' if not_included else ' '}] I use an architecture that is **not** included among those "
        f"[here]({ARCHITECTURES_URL}) (check if true).",
        "- [ ] I agree to release my model(s) under MIT license (check if true) **OR**",
        "- [ ] I want my models to be released under a custom license, located here: "
        "(custom license URL here)",
        "",
        "<!-- The license is the authors' choice: tick one of the two boxes above. -->",
        f"<!-- model_info file: model_info/{measurement.dataset}/{measurement.threat_model}/{name}.json; "
        f"model zoo entry: {ZOO_ENTRY_FILE} -->",
    ]
    return "\n".join(lines) + "\n"


def _json_bool(value: bool | None) -> str | None:
    return None if value is None else json.dumps(value)
