"""Hugging Face model cards for IKL-AT models and for models trained with ikl-zoo.

The card's metadata is a ``model-index`` built with huggingface_hub's ``ModelCardData``/``EvalResult``:
clean and AutoAttack accuracy, published and (when given) measured, each with its source, so the Hub
shows them and ``ModelCard.load`` returns them. The body says what the model is, how to load it, how it
was trained, the results side by side, its limitations and the paper's BibTeX.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikl_zoo import __version__
from ikl_zoo.atomic import write_text_atomic
from ikl_zoo.errors import IklZooError
from ikl_zoo.evaluate.summary import FULL_TEST_SET, format_eps
from ikl_zoo.leaderboard.provenance import checkpoint_sha256, describe, recorded_fact, replaced_weights
from ikl_zoo.leaderboard.records import (
    DEFAULT_ROOT,
    Measurement,
    find_record,
    output_errors,
    registry_entry,
)
from ikl_zoo.leaderboard.reference import (
    ROBUSTBENCH_URL,
    STANDARD_EPS,
    reference_entry,
)
from ikl_zoo.paper import PAPER_TITLE, PAPER_URL
from ikl_zoo.reference import REFERENCE_COMMIT, published_from_row

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from ikl_zoo.evaluate.result import EvalResult
    from ikl_zoo.zoo.registry import ModelEntry

CARD_NAME = "README.md"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CODE_URL = "https://github.com/jiequancui/DKL"
AUTOATTACK_URL = "https://github.com/fra31/auto-attack"
BIBTEX = """@inproceedings{cui2024decoupled,
  title={Decoupled Kullback-Leibler Divergence Loss},
  author={Cui, Jiequan and Tian, Zhuotao and Zhong, Zhisheng and Qi, Xiaojuan and Yu, Bei and Zhang, Hanwang},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  year={2024}
}"""
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
BASE_TAGS = ["adversarial-robustness", "robustbench", "autoattack", "image-classification"]


class CardError(IklZooError):
    """A card that cannot be built as asked: unknown model, unreadable folder, mismatched result."""


@dataclass(frozen=True)
class CardSubject:
    """Everything a card says about a model, gathered from the registry or a zoo folder's config.json."""

    model_id: str
    dataset: str
    threat_model: str
    eps: float
    architecture: str
    architecture_config: dict[str, Any] | None
    training: str | dict[str, Any] | None
    is_ikl_at: bool
    in_registry: bool
    published: dict[str, Any] | None
    """Percent figures (``clean_acc``, ``autoattack_acc``, optional ``external``) and their ``source``."""
    robustbench_row: dict[str, Any] | None
    note: str = ""
    additional_data: bool = False
    hub_repo_id: str | None = None
    weights_sha256: str | None = None
    license: str = "mit"
    unverified_source: dict[str, Any] | None = None
    """For a folder converted for a registry id from a file no pinned sha256 confirms: its ``source``."""

    @property
    def threat_text(self) -> str:
        return f"{self.threat_model}, eps = {format_eps(self.eps, self.threat_model)}"


def build_model_card(
    entry_or_config: ModelEntry | Mapping[str, Any] | str | os.PathLike[str],
    *,
    dataset: str = "cifar10",
    result: EvalResult | Measurement | None = None,
    config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """The model card of a registry model or a zoo folder, with measured figures when ``result`` is given.

    ``entry_or_config`` is a registry ``ModelEntry``, a registry id (for ``dataset``), a zoo folder (or its
    config.json) or that config as a mapping. ``config`` adds a zoo folder's config.json to a registry entry
    (its weights' sha256, training recipe). ``repo_id`` names the Hub repository in the loading snippet.
    """
    from huggingface_hub import ModelCard, ModelCardData

    subject = card_subject(entry_or_config, dataset=dataset, config=config)
    if repo_id:
        subject = replace(subject, hub_repo_id=repo_id)
    measurement = _checked_measurement(subject, result)
    tags = [*BASE_TAGS, *(["ikl-at"] if subject.is_ikl_at else []), subject.dataset, "pytorch", "safetensors"]
    card_data = ModelCardData(
        license=subject.license,
        library_name="ikl-zoo",
        tags=tags,
        datasets=[HUB_DATASETS[subject.dataset]],
        metrics=["accuracy"],
        pipeline_tag="image-classification",
        model_name=subject.model_id,
        eval_results=_eval_results(subject, measurement) or None,
    )
    template = "---\n{{ card_data }}\n---\n\n{{ body }}"
    return ModelCard.from_template(card_data, template_str=template, body=_body(subject, measurement))


def write_model_card(
    entry_or_config: ModelEntry | Mapping[str, Any] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dataset: str = "cifar10",
    result: EvalResult | Measurement | None = None,
    config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``out_dir/README.md`` atomically and return its path."""
    card = build_model_card(entry_or_config, dataset=dataset, result=result, config=config, repo_id=repo_id)
    with output_errors(out_dir, fix="pass an -o/--out folder you can write"):
        return write_text_atomic(Path(out_dir) / CARD_NAME, str(card))


def write_registry_cards(
    out_dir: str | os.PathLike[str] = "cards", *, records_root: str | os.PathLike[str] | None = DEFAULT_ROOT
) -> list[Path]:
    """Cards of every IKL-AT registry model, one folder each (named like its Hub repository).

    A model's result record under ``records_root`` (written by ``ikl-zoo eval --record``), when there is one,
    adds its measured figures to the card.
    """
    from ikl_zoo.zoo.registry import list_models

    paths = []
    for entry in list_models():
        if not entry.is_ikl_at:
            continue
        record = None
        if records_root is not None:
            record = find_record(
                entry.model_id, dataset=entry.dataset, threat_model=entry.threat_model, root=records_root
            )
        folder = Path(out_dir) / (entry.pretrained.hub_repo_name or f"{entry.model_id}-{entry.dataset}")
        paths.append(write_model_card(entry, folder, result=record.measurement if record else None))
    return paths


def card_subject(
    entry_or_config: ModelEntry | Mapping[str, Any] | str | os.PathLike[str],
    *,
    dataset: str = "cifar10",
    config: Mapping[str, Any] | None = None,
) -> CardSubject:
    """Normalise the ways a model can be named into what the card needs."""
    from ikl_zoo.zoo.registry import ModelEntry, get_model_entry

    if isinstance(entry_or_config, ModelEntry):
        return _subject_from_entry(entry_or_config, config)
    if isinstance(entry_or_config, Mapping):
        return _subject_from_config(dict(entry_or_config))
    path = Path(entry_or_config)
    if path.exists():
        return _subject_from_config(read_config(path))
    return _subject_from_entry(get_model_entry(str(entry_or_config), dataset=dataset), config)


def _subject_from_entry(entry: ModelEntry, config: Mapping[str, Any] | None) -> CardSubject:
    row = reference_entry(entry.model_id, dataset=entry.dataset, threat_model=entry.threat_model)
    published = None
    if row is not None:
        published = published_from_row(row)
    elif entry.published is not None:
        published = entry.published.to_dict()
    config = dict(config or {})
    return CardSubject(
        model_id=entry.model_id,
        dataset=entry.dataset,
        threat_model=entry.threat_model,
        eps=entry.eps,
        architecture=entry.architecture,
        architecture_config=json.loads(json.dumps(entry.config)) if entry.config else None,
        training=config.get("training") or entry.training or None,
        is_ikl_at=entry.is_ikl_at,
        in_registry=True,
        published=published,
        robustbench_row=row,
        note=entry.note,
        additional_data=entry.additional_data,
        hub_repo_id=entry.pretrained.hub_repo_id(),
        weights_sha256=config.get("sha256") or entry.pretrained.sha256,
        unverified_source=_unverified_source(entry, config),
    )


def _unverified_source(entry: ModelEntry, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A folder's converted-from record when no pinned sha256 confirms it holds the registry's weights."""
    source = config.get("source")
    if not isinstance(source, Mapping) or _pinned_sha256s(entry):
        return None  # with a pin, other weights never reach a registry card (see _known_other_weights)
    if entry.pretrained.gdrive_id and source.get("gdrive_id") == entry.pretrained.gdrive_id:
        return None  # converted by the Drive fallback from the authors' own file (RobustBench's id)
    return dict(source)


def _subject_from_config(config: dict[str, Any]) -> CardSubject:
    missing = [key for key in ("model_id", "dataset", "threat_model", "eps") if key not in config]
    if missing:
        raise CardError(
            f"config.json lacks {', '.join(missing)}: rewrite it with `ikl-zoo convert` or training"
        )
    dataset = str(config["dataset"])
    if dataset not in HUB_DATASETS:
        raise CardError(
            f"config.json names dataset {dataset!r}; ikl-zoo cards cover {', '.join(HUB_DATASETS)}"
        )
    entry = registry_entry(str(config["model_id"]), dataset)
    if entry is not None and not config.get("training") and not _known_other_weights(entry, config):
        return _subject_from_entry(entry, config)
    architecture = config.get("architecture")
    training = config.get("training")
    return CardSubject(
        model_id=str(config["model_id"]),
        dataset=dataset,
        threat_model=str(config["threat_model"]),
        eps=float(config["eps"]),
        architecture=architecture_name(architecture),
        architecture_config=architecture if isinstance(architecture, dict) else None,
        training=training,
        is_ikl_at=_trained_with_ikl(training),
        in_registry=False,
        published=None,
        robustbench_row=None,
        note=str(config.get("note") or ""),
        additional_data=bool(config.get("additional_data", False)),
        hub_repo_id=config.get("repo_id"),
        weights_sha256=config.get("sha256"),
        license=str(config.get("license") or "unknown"),
    )


def _known_other_weights(entry: ModelEntry, config: Mapping[str, Any]) -> bool:
    """A folder converted for a registry id from a checkpoint that the pinned sha256 says is not its own.

    Its card must not be the registry model's (published figures, loading the published weights). Without a
    pinned sha256 nothing can tell, and a folder naming a registry id is taken as that model's weights.
    """
    pinned = _pinned_sha256s(entry)
    source = config.get("source")
    hashes = {config.get("sha256"), source.get("sha256") if isinstance(source, Mapping) else None}
    return bool(pinned) and not pinned & hashes


def _pinned_sha256s(entry: ModelEntry) -> set[str]:
    """The hashes the registry pins for an entry's published weights (none yet for most)."""
    return {entry.pretrained.sha256, entry.pretrained.package_file_sha256} - {None}


def architecture_name(architecture: Any) -> str:
    """``WideResNet-34-10`` from a zoo config's architecture object (or the string it already is)."""
    if not isinstance(architecture, Mapping):
        return str(architecture or "unknown architecture")
    name = architecture.get("architecture_class", "unknown architecture")
    if name == "WideResNet":
        return f"WideResNet-{architecture.get('depth')}-{architecture.get('widen_factor')}"
    if name == "DMWideResNet":
        activation = architecture.get("activation", "SiLU")
        return f"WideResNet-{architecture.get('depth')}-{architecture.get('width')} ({activation}, DeepMind)"
    if name == "CifarResNet":
        blocks = list(architecture.get("blocks_per_stage", []))
        return "ResNet-18 (CIFAR)" if blocks == [2, 2, 2, 2] else f"ResNet (CIFAR, blocks {blocks})"
    return str(name)


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A zoo folder's config.json (or that file itself) as a dict, with a one-line error otherwise."""
    path = Path(path)
    config_path = path / CONFIG_NAME if path.is_dir() else path
    if not config_path.is_file():
        raise CardError(
            f"{path} holds no {CONFIG_NAME}: pass a zoo folder (from `ikl-zoo convert` or training)"
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CardError(f"cannot read {config_path}: {error}") from None
    if not isinstance(config, dict):
        raise CardError(f"{config_path} is not a JSON object: rewrite it with `ikl-zoo convert`")
    return config


def _checked_measurement(subject: CardSubject, result: EvalResult | Measurement | None) -> Measurement | None:
    """The result as a measurement, refusing one of another model, dataset or threat model."""
    if result is None:
        return None
    measurement = Measurement.from_result(result)
    if measurement.dataset != subject.dataset:
        raise CardError(
            f"the result is for {measurement.dataset}, the card for {subject.dataset}: "
            f"pass --dataset {measurement.dataset} or the matching result"
        )
    if measurement.threat_model != subject.threat_model or not math.isclose(
        measurement.eps, subject.eps, rel_tol=0, abs_tol=1e-7
    ):
        raise CardError(
            f"the result is for {measurement.threat_model} "
            f"eps {format_eps(measurement.eps, measurement.threat_model)}, "
            f"the model for {subject.threat_text}: evaluate it under the model's threat model"
        )
    weights = replaced_weights(measurement.provenance)
    if weights is not None and subject.in_registry:
        raise CardError(
            f"the result measures {measurement.model_id} with weights from {weights}, not the published "
            f"weights this card describes: make a zoo folder of that checkpoint (`ikl-zoo convert "
            f"{weights} --model {measurement.model_id} --dataset {measurement.dataset} -o DIR`), evaluate it "
            "and card DIR"
        )
    same_weights = (
        subject.weights_sha256 and checkpoint_sha256(measurement.provenance) == subject.weights_sha256
    )
    if measurement.board_id != subject.model_id and not same_weights:
        raise CardError(
            f"the result is for {measurement.model_id!r}, the card for {subject.model_id!r} "
            f"(and its checkpoint sha256 does not match the folder's weights): pass the matching result"
        )
    return measurement


def _trained_with_ikl(training: Any) -> bool:
    """IKL-AT by what the config says was done (``ikl-zoo train`` writes ``method: IKL-AT``; a hand-written
    config may name the loss), never by the word "ikl" elsewhere, e.g. in ``trained_with: ikl-zoo``."""
    if not isinstance(training, dict):
        return False
    method, loss = str(training.get("method", "")), str(training.get("loss", ""))
    return method.upper() == "IKL-AT" or loss.lower() == "ikl"


def _eval_results(subject: CardSubject, measurement: Measurement | None) -> list[Any]:
    from huggingface_hub import EvalResult as HubEvalResult

    common = {
        "task_type": "image-classification",
        "task_name": "Image Classification",
        "dataset_type": HUB_DATASETS[subject.dataset],
        "dataset_name": DATASET_TITLES[subject.dataset],
    }
    threat_args = {"threat_model": subject.threat_model, "eps": format_eps(subject.eps, subject.threat_model)}
    results = []
    if subject.published is not None:
        listed = subject.robustbench_row is not None
        source = {
            "source_name": subject.published["source"],
            "source_url": ROBUSTBENCH_URL if listed else PAPER_URL,
        }
        examples = {"dataset_args": {"n_examples": FULL_TEST_SET}, "dataset_split": "test"}
        results += [
            HubEvalResult(
                **common,
                **examples,
                **source,
                metric_type="accuracy",
                metric_name="Clean accuracy (published)",
                metric_value=subject.published["clean_acc"],
            ),
            HubEvalResult(
                **common,
                **examples,
                **source,
                metric_type="robust_accuracy",
                metric_name="AutoAttack robust accuracy (published)",
                metric_value=subject.published["autoattack_acc"],
                metric_args={**threat_args, "attack": "AutoAttack", "version": "standard"},
            ),
        ]
    if measurement is not None:
        source = {
            "source_name": f"ikl-zoo {_measured_version(measurement)} measurement with AutoAttack on "
            f"{measurement.n_examples} test examples",
            "source_url": AUTOATTACK_URL,
        }
        # RobustBench's protocol takes the first n test images; the distinct split keeps this group (and its
        # source) apart from the published one in the model-index.
        examples = {
            "dataset_args": {"n_examples": measurement.n_examples},
            "dataset_split": f"test[:{measurement.n_examples}]",
        }
        results += [
            HubEvalResult(
                **common,
                **examples,
                **source,
                metric_type="accuracy",
                metric_name="Clean accuracy (ikl-zoo)",
                metric_value=round(100 * measurement.clean_acc, 2),
            ),
            HubEvalResult(
                **common,
                **examples,
                **source,
                metric_type="robust_accuracy",
                metric_name="AutoAttack robust accuracy (ikl-zoo)",
                metric_value=round(100 * measurement.robust_acc, 2),
                metric_args={
                    **threat_args,
                    "attack": "AutoAttack",
                    "version": measurement.version,
                    "seed": measurement.seed,
                },
            ),
        ]
    return results


def _measured_version(measurement: Measurement) -> str:
    version = str(recorded_fact(measurement.provenance, "ikl-zoo version") or "").strip()
    return version or "(version not recorded)"


def _body(subject: CardSubject, measurement: Measurement | None) -> str:
    sections = [
        f"# {subject.model_id} ({DATASET_TITLES[subject.dataset]})",
        _summary(subject),
        "## How to load it",
        _usage(subject),
        "## Training",
        _training(subject),
        "## Results",
        _results(subject, measurement),
        "## Limitations",
        _limitations(subject, measurement),
        "## License",
        _license(subject),
    ]
    if subject.is_ikl_at:
        sections += ["## Citation", f"```bibtex\n{BIBTEX}\n```"]
    sections.append(f"*This card was generated by ikl-zoo {__version__} (`ikl-zoo card`).*")
    return "\n\n".join(sections) + "\n"


def _summary(subject: CardSubject) -> str:
    data = DATASET_TITLES[subject.dataset]
    if subject.is_ikl_at and subject.in_registry:
        text = (
            f"An adversarially robust {subject.architecture} classifier for {data}, trained with IKL-AT: "
            f"adversarial training with the Improved Kullback-Leibler (IKL) loss of "
            f"*[{PAPER_TITLE}]({PAPER_URL})* (Cui et al., NeurIPS 2024). It is trained to resist "
            f"{subject.threat_text} perturbations of its input images."
        )
    elif subject.in_registry:
        text = (
            f"A {subject.architecture} classifier for {data} shipped with ikl-zoo for demonstrations: "
            f"{subject.note or 'not IKL-AT'}. Its numbers are never IKL-AT results."
        )
    elif not subject.training:  # e.g. a checkpoint converted for a registry architecture: origin unknown
        text = (
            f"A {subject.architecture} classifier for {data}, checked against {subject.threat_text} "
            f"perturbations; its config.json does not record how it was trained. "
            f"It is not one of the paper's published checkpoints."
        )
    else:
        how = "IKL-AT (the IKL loss in adversarial training)" if subject.is_ikl_at else "ikl-zoo's training"
        text = (
            f"A {subject.architecture} classifier for {data}, trained with {how} against "
            f"{subject.threat_text} perturbations, using ikl-zoo. "
            f"It is not one of the paper's published checkpoints."
        )
    row = subject.robustbench_row
    if row is not None:
        rank = _robustbench_rank(subject)
        text += (
            f"\n\nIt is listed on [RobustBench]({ROBUSTBENCH_URL}) as `{subject.model_id}`"
            f"{f', rank {rank[0]} of {rank[1]} on its {data} {subject.threat_model} board' if rank else ''}"
            f" (RobustBench's `model_info/` at commit {REFERENCE_COMMIT})."
        )
        source = subject.unverified_source
        if source is None:
            text += (
                " The weights are the authors' checkpoint from RobustBench's model zoo, converted to "
                "safetensors by ikl-zoo."
            )
        else:
            # A folder converted from another zoo folder records no file hash of its own.
            origin = f"`{source['checkpoint']}`" if source.get("checkpoint") else "a local checkpoint"
            digest = f" (sha256 `{source['sha256']}`)" if source.get("sha256") else ""
            text += (
                f" The weights in this repository were converted by ikl-zoo from {origin}{digest}, which "
                "nothing pins to the authors' checkpoint: the published figures describe these weights only "
                "if that file is the authors' checkpoint from RobustBench's model zoo. Evaluate them "
                "(`ikl-zoo eval`) to know."
            )
    return text


def _robustbench_rank(subject: CardSubject) -> tuple[int, int] | None:
    from ikl_zoo.leaderboard.table import build_board

    board = build_board(subject.dataset, subject.threat_model, records_root=None)
    match = board.rows[board.rows["model_id"] == subject.model_id]
    if match.empty:
        return None
    return int(match.iloc[0]["rank"]), len(board.rows)


def _usage(subject: CardSubject) -> str:
    eps = format_eps(subject.eps, subject.threat_model)
    if subject.in_registry:
        load = f'model = ikl_zoo.load_model("{subject.model_id}", dataset="{subject.dataset}")'
        evaluate = f"--model {subject.model_id} --dataset {subject.dataset}"
        prelude = ""
        where = (
            (
                f"The weights come from the Hugging Face Hub (`{subject.hub_repo_id}`), verified by sha256, "
                "and are cached."
            )
            if subject.hub_repo_id
            else ""
        )
    else:
        repo = subject.hub_repo_id or "ORG/NAME"
        prelude = (
            f"from huggingface_hub import snapshot_download\n\n"
            f'folder = snapshot_download("{repo}")  # or the path of a local copy of this folder\n'
        )
        load = "model = ikl_zoo.load_model(folder)"
        evaluate = "--model path/to/this/folder"
        where = (
            f"`{WEIGHTS_NAME}` holds the weights, `{CONFIG_NAME}` the architecture and how it was trained."
        )
    if subject.weights_sha256:
        where += f" sha256 of `{WEIGHTS_NAME}`: `{subject.weights_sha256}`."
    return (
        f"```python\nimport ikl_zoo\n{prelude}\n{load}  # eval mode, on the CPU\n"
        "# images: float tensor (N, 3, 32, 32) in [0, 1]; any normalisation happens inside the model\n"
        "logits = model(images)\n```\n\n"
        f"{where}\n\n"
        f"Measure it the way RobustBench does (AutoAttack, standard version, full test set):\n\n"
        f"```sh\nikl-zoo eval {evaluate} --n-examples 10000 --eps {eps} "
        f"--norm {subject.threat_model} --version standard --record\n```"
    ).replace("\n\n\n", "\n\n")


def _training(subject: CardSubject) -> str:
    training = subject.training
    if isinstance(training, Mapping):
        lines = [
            "Trained with `ikl-zoo train`; the recipe recorded in `config.json`:",
            "",
            "| setting | value |",
            "|---|---|",
        ]
        for key, value in training.items():
            if key == "eps" and isinstance(value, int | float):
                shown = format_eps(value, subject.threat_model)  # 8/255, as the paper writes it
            else:
                shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
            lines.append(f"| {key} | {shown.replace('|', '/')} |")
        return "\n".join(lines)
    text = f"{str(training).rstrip('.')}." if training else "Not recorded."
    if subject.is_ikl_at and subject.in_registry:
        text += (
            " IKL-AT replaces the KL term of TRADES-style adversarial training with the IKL loss, which "
            "decouples KL into a weighted mean-square-error term and a cross-entropy term with soft labels, "
            "breaks the asymmetry of its gradients and adds class-wise global information. The authors' "
            f"code: {CODE_URL}."
        )
    footnote = (subject.robustbench_row or {}).get("footnote")
    if footnote:
        text += f"\n\nRobustBench's note on this model: {footnote}"
    return text


def _results(subject: CardSubject, measurement: Measurement | None) -> str:
    threat = f"AutoAttack ({subject.threat_model}, {format_eps(subject.eps, subject.threat_model)})"
    lines = [
        f"Accuracy in % on the {DATASET_TITLES[subject.dataset]} test set.",
        "",
        f"| | Clean | {threat} | Test examples | Source |",
        "|---|---:|---:|---:|---|",
    ]
    published = subject.published
    if published is not None:
        best = published.get("external")
        robust = f"{published['autoattack_acc']:.2f}"
        if best is not None:
            robust += f" (best known: {best:.2f})"
        lines.append(
            f"| Published | {published['clean_acc']:.2f} | {robust} | {FULL_TEST_SET:,} | "
            f"{published['source']} |"
        )
    if measurement is not None:
        clean, robust = 100 * measurement.clean_acc, 100 * measurement.robust_acc
        n = measurement.n_examples
        how = f"ikl-zoo, AutoAttack {measurement.version}, seed {measurement.seed}"
        facts = describe(measurement.provenance)
        if facts:
            how += f"; {facts}"
        lines.append(
            f"| Measured | {clean:.2f} {_wilson_interval(measurement.clean_acc, n)} | "
            f"{robust:.2f} {_wilson_interval(measurement.robust_acc, n)} | {n:,} | {how} |"
        )
        like_for_like = measurement.comparable_with_published
        if published is not None and like_for_like:
            lines.append(
                f"| Difference | {clean - published['clean_acc']:+.2f} | "
                f"{robust - published['autoattack_acc']:+.2f} | | measured minus published |"
            )
        lines += ["", "In brackets: the 95% Wilson interval over the test examples evaluated."]
        if published is not None and not like_for_like:
            lines[-1] += (
                " No difference to the published figures is given: they are standard AutoAttack on the full "
                f"{FULL_TEST_SET:,}-image test set, and this measurement is not."
            )
    if published is None and measurement is None:
        lines = [
            "No published or measured figures yet: run `ikl-zoo eval` and rebuild this card with "
            "`ikl-zoo card ... --result result.json`."
        ]
    return "\n".join(lines)


def _wilson_interval(fraction: float, n: int, z: float = 1.959964) -> str:
    """The 95% Wilson score interval in percent, ``[low, high]``.

    Given as its bounds, not as ``± half-width``: the interval is centred away from the measured fraction
    (0/4 correct spans 0-49%), so a ``±`` around the measurement would understate the upper bound.
    """
    denominator = 1 + z * z / n
    centre = (fraction + z * z / (2 * n)) / denominator
    spread = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n)) / denominator
    low, high = max(0.0, centre - spread), min(1.0, centre + spread)
    return f"[{100 * low:.2f}, {100 * high:.2f}]"


def _license(subject: CardSubject) -> str:
    if subject.in_registry and subject.robustbench_row is not None:
        return (
            f"`{subject.license}`: RobustBench's model zoo asks authors to release submitted models under "
            f"the MIT license unless they name their own; check the authors' repository ({CODE_URL}) before "
            "relying on it."
        )
    if subject.in_registry:
        return f"`{subject.license}`, as ikl-zoo itself."
    if subject.license == "unknown":
        return "Not stated: set `license` in config.json and rebuild the card with `ikl-zoo card`."
    return f"`{subject.license}` (from `license` in config.json)."


def _limitations(subject: CardSubject, measurement: Measurement | None) -> str:
    eps = format_eps(subject.eps, subject.threat_model)
    items = [
        "AutoAttack bounds robust accuracy from above: a stronger or adaptive attack may find more "
        "adversarial examples, so the true robust accuracy can only be lower than the figure shown.",
        f"Robustness is claimed only for {subject.threat_model} perturbations of size {eps} on "
        f"{DATASET_TITLES[subject.dataset]}-sized 32x32 images; other norms, larger budgets, "
        "common corruptions and distribution shift are not covered.",
    ]
    if subject.threat_model in STANDARD_EPS and not math.isclose(
        subject.eps, STANDARD_EPS[subject.threat_model]
    ):
        items.append(
            f"eps {eps} is not RobustBench's standard budget, so the figures do not compare with its "
            "leaderboard."
        )
    data_note = " ".join(filter(None, [(subject.robustbench_row or {}).get("footnote"), subject.note]))
    if subject.additional_data:
        items.append("Trained with extra real data beyond the CIFAR training set.")
    if "synthetic" in data_note.lower():
        items.append(
            "Trained with additional images generated by a diffusion model (see Training). RobustBench "
            "does not count generated images as extra data, but they account for much of the gap to "
            "models trained on the CIFAR training set alone."
        )
    if measurement is not None and measurement.n_examples < FULL_TEST_SET:
        items.append(
            f"The measured figures cover {measurement.n_examples} of the {FULL_TEST_SET:,} test images: "
            "they estimate, not reproduce, a full-test-set figure."
        )
    if measurement is not None and measurement.version != "standard":
        items.append(
            f"The measurement used AutoAttack version {measurement.version!r} "
            f"({', '.join(measurement.attacks)}), not the standard suite RobustBench requires."
        )
    if not subject.is_ikl_at:
        items.append("Not trained with IKL-AT: do not report its figures as IKL-AT results.")
    return "\n".join(f"- {item}" for item in items)
