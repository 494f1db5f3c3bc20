"""Hugging Face model cards for IKL-AT models and for models trained with ikl-zoo.

The metadata is a ``model-index`` written by huggingface_hub's ``ModelCardData``/``EvalResult``: clean and
AutoAttack accuracy, published and (when given) measured, each with its source, so the Hub shows them and
``ModelCard.load`` returns them. The prose lives in ``templates/model_card.md.j2``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikl_zoo import __version__
from ikl_zoo.atomic import write_text_atomic
from ikl_zoo.cards import facts
from ikl_zoo.cards.render import render
from ikl_zoo.cards.subject import CONFIG_NAME, CardError, CardSubject, card_subject, read_config
from ikl_zoo.evaluate.summary import FULL_TEST_SET
from ikl_zoo.leaderboard.records import DEFAULT_ROOT, Measurement, find_record, output_errors
from ikl_zoo.leaderboard.reference import ROBUSTBENCH_URL, STANDARD_EPS
from ikl_zoo.paper import PAPER_TITLE, PAPER_URL
from ikl_zoo.reference import REFERENCE_COMMIT
from ikl_zoo.threat import format_eps

if TYPE_CHECKING:
    from huggingface_hub import EvalResult as HubEvalResult
    from huggingface_hub import ModelCard

    from ikl_zoo.evaluate.result import EvalResult
    from ikl_zoo.zoo.registry import ModelEntry

__all__ = ["CardError", "CardSubject", "build_model_card", "card_subject", "read_config", "write_model_card",
           "write_registry_cards"]
CARD_NAME = "README.md"
WEIGHTS_NAME = "model.safetensors"
CODE_URL = "https://github.com/jiequancui/DKL"
AUTOATTACK_URL = "https://github.com/fra31/auto-attack"
BIBTEX = render("bibtex.txt").strip()
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
BASE_TAGS = ["adversarial-robustness", "robustbench", "autoattack", "image-classification"]
Model = Any  # a registry ModelEntry or id, a zoo folder, its config.json or that config as a mapping


def build_model_card(
    model: ModelEntry | Mapping[str, Any] | str | os.PathLike[str],
    *,
    dataset: str = "cifar10",
    result: EvalResult | Measurement | None = None,
    config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """The model card of a registry model or a zoo folder, with measured figures when ``result`` is given.

    ``config`` adds a zoo folder's config.json to a registry entry (its weights' sha256, training recipe);
    ``repo_id`` names the Hub repository in the loading snippet.
    """
    from huggingface_hub import ModelCard, ModelCardData

    subject = card_subject(model, dataset=dataset, config=config)
    if repo_id:
        subject = replace(subject, hub_repo_id=repo_id)
    measurement = _checked_measurement(subject, result)
    card_data = ModelCardData(
        license=subject.license,
        library_name="ikl-zoo",
        tags=[*BASE_TAGS, *(["ikl-at"] if subject.is_ikl_at else []), subject.dataset, "pytorch", "safetensors"],
        datasets=[HUB_DATASETS[subject.dataset]],
        metrics=["accuracy"],
        pipeline_tag="image-classification",
        model_name=subject.model_id,
        eval_results=_eval_results(subject, measurement) or None,
    )
    return ModelCard(render("model_card.md.j2", card_data=card_data.to_yaml(),
                            **_card_context(subject, measurement)))


def write_model_card(
    model: Model, out_dir: str | os.PathLike[str], *, dataset: str = "cifar10",
    result: EvalResult | Measurement | None = None, config: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``out_dir/README.md`` atomically and return its path."""
    card = build_model_card(model, dataset=dataset, result=result, config=config, repo_id=repo_id)
    with output_errors(out_dir, fix="pass an -o/--out folder you can write"):
        return write_text_atomic(Path(out_dir) / CARD_NAME, str(card))


def write_registry_cards(
    out_dir: str | os.PathLike[str] = "cards", *, records_root: str | os.PathLike[str] | None = DEFAULT_ROOT
) -> list[Path]:
    """Cards of every IKL-AT registry model, one folder each (named like its Hub repository), with the
    measured figures of its result record under ``records_root`` when there is one."""
    from ikl_zoo.zoo.registry import list_models

    paths = []
    for entry in filter(lambda entry: entry.is_ikl_at, list_models()):
        record = records_root and find_record(
            entry.model_id, dataset=entry.dataset, threat_model=entry.threat_model, root=records_root
        )
        folder = Path(out_dir) / (entry.pretrained.hub_repo_name or f"{entry.model_id}-{entry.dataset}")
        paths.append(write_model_card(entry, folder, result=record.measurement if record else None))
    return paths


def _checked_measurement(subject: CardSubject, result: EvalResult | Measurement | None) -> Measurement | None:
    """The result as a measurement, refusing one of another model, dataset, threat model or weights."""
    if result is None:
        return None
    measurement = Measurement.from_result(result)
    if measurement.dataset != subject.dataset:
        raise CardError(f"the result is for {measurement.dataset}, the card for {subject.dataset}",
                        fix=f"pass --dataset {measurement.dataset} or the matching result")
    if measurement.threat_model != subject.threat_model or not math.isclose(
        measurement.eps, subject.eps, rel_tol=0, abs_tol=1e-7
    ):
        raise CardError(
            f"the result is for {measurement.threat_model} eps "
            f"{format_eps(measurement.eps, measurement.threat_model)}, the model for "
            f"{subject.threat_model}, eps = {subject.eps_text}", fix="evaluate it under the model's threat model"
        )
    weights = facts.replaced_weights(measurement.provenance)
    if weights is not None and subject.in_registry:
        raise CardError(
            f"the result measures {measurement.model_id} with weights from {weights}, not the published "
            "weights this card describes",
            fix=f"make a zoo folder of that checkpoint (`ikl-zoo convert {weights} --model "
            f"{measurement.model_id} --dataset {measurement.dataset} -o DIR`), evaluate it and card DIR",
        )
    same_weights = subject.weights_sha256 and facts.checkpoint_sha256(measurement.provenance) == (
        subject.weights_sha256
    )
    if measurement.board_id != subject.model_id and not same_weights:
        raise CardError(
            f"the result is for {measurement.model_id!r}, the card for {subject.model_id!r} "
            "(and its checkpoint sha256 does not match the folder's weights)", fix="pass the matching result"
        )
    return measurement


def _eval_results(subject: CardSubject, measurement: Measurement | None) -> list[HubEvalResult]:
    """The model-index: a published group (RobustBench's full test set) and a measured one (``test[:n]``,
    a distinct split that keeps the two groups and their sources apart)."""
    threat_args = {"threat_model": subject.threat_model, "eps": subject.eps_text, "attack": "AutoAttack"}
    results = []
    if subject.published is not None:
        results += _result_pair(
            subject, n_examples=FULL_TEST_SET, split="test", label="published",
            figures=(subject.published["clean_acc"], subject.published["autoattack_acc"]),
            source=(subject.published["source"], ROBUSTBENCH_URL if subject.robustbench_row else PAPER_URL),
            attack_args={**threat_args, "version": "standard"},
        )
    if measurement is not None:
        n = measurement.n_examples
        version = facts.version(measurement.provenance, "ikl-zoo") or "(version not recorded)"
        results += _result_pair(
            subject, n_examples=n, split=f"test[:{n}]", label="ikl-zoo",
            figures=(round(100 * measurement.clean_acc, 2), round(100 * measurement.robust_acc, 2)),
            source=(f"ikl-zoo {version} measurement with AutoAttack on {n} test examples", AUTOATTACK_URL),
            attack_args={**threat_args, "version": measurement.version, "seed": measurement.seed},
        )
    return results


def _result_pair(
    subject: CardSubject, *, n_examples: int, split: str, label: str, figures: tuple[float, float],
    source: tuple[str, str], attack_args: dict[str, Any],
) -> list[HubEvalResult]:
    """Clean and AutoAttack accuracy of one source as two Hub ``EvalResult`` entries."""
    from huggingface_hub import EvalResult as HubEvalResult

    common = {
        "task_type": "image-classification", "task_name": "Image Classification",
        "dataset_type": HUB_DATASETS[subject.dataset], "dataset_name": DATASET_TITLES[subject.dataset],
        "dataset_args": {"n_examples": n_examples}, "dataset_split": split,
        "source_name": source[0], "source_url": source[1],
    }
    return [
        HubEvalResult(**common, metric_type="accuracy", metric_name=f"Clean accuracy ({label})",
                      metric_value=figures[0]),
        HubEvalResult(**common, metric_type="robust_accuracy", metric_value=figures[1],
                      metric_name=f"AutoAttack robust accuracy ({label})", metric_args=attack_args),
    ]


def _card_context(subject: CardSubject, measurement: Measurement | None) -> dict[str, Any]:
    """What the card template needs beyond the subject and the measurement: looked-up facts."""
    footnote = (subject.robustbench_row or {}).get("footnote")
    standard_eps = STANDARD_EPS.get(subject.threat_model)
    return {
        "s": subject, "m": measurement, "data": DATASET_TITLES[subject.dataset], "footnote": footnote,
        "rank": _robustbench_rank(subject) if subject.robustbench_row else None,
        "measured_facts": facts.describe(measurement.provenance) if measurement else "",
        "nonstandard_eps": standard_eps is not None and not math.isclose(subject.eps, standard_eps),
        "synthetic_data": "synthetic" in f"{footnote} {subject.note}".lower(), "full_test_set": FULL_TEST_SET,
        "paper_title": PAPER_TITLE, "paper_url": PAPER_URL, "robustbench_url": ROBUSTBENCH_URL,
        "commit": REFERENCE_COMMIT, "code_url": CODE_URL, "bibtex": BIBTEX, "version": __version__,
        "weights_name": WEIGHTS_NAME, "config_name": CONFIG_NAME,
    }


def _robustbench_rank(subject: CardSubject) -> tuple[int, int] | None:
    from ikl_zoo.leaderboard.table import build_board

    board = build_board(subject.dataset, subject.threat_model, records_root=None)
    match = board.rows[board.rows["model_id"] == subject.model_id]
    return None if match.empty else (int(match.iloc[0]["rank"]), len(board.rows))
