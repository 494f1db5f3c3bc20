"""Hugging Face model cards: the ``model-index`` (published and measured accuracy, each with its source) is
written by huggingface_hub's ``ModelCardData``/``EvalResult``; the prose is ``templates/model_card.md.j2``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikl_zoo.atomic import write_text_atomic
from ikl_zoo.cards.subject import CONFIG_NAME, CardError, CardSubject, card_subject, render
from ikl_zoo.cards.submission import CODE_URL
from ikl_zoo.leaderboard import records
from ikl_zoo.leaderboard.records import DEFAULT_ROOT, Measurement, load_records, output_errors, record_path
from ikl_zoo.leaderboard.reference import ROBUSTBENCH_URL, STANDARD_EPS, Folder
from ikl_zoo.leaderboard.table import build_board
from ikl_zoo.paper import PAPER_URL
from ikl_zoo.reference import REFERENCE_COMMIT
from ikl_zoo.threat import DATASET_TITLES, same_eps

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from ikl_zoo.evaluate.result import EvalResult

CARD_NAME = "README.md"
AUTOATTACK_URL = "https://github.com/fra31/auto-attack"
BIBTEX = render("bibtex.txt").strip()
HUB_DATASETS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}
BASE_TAGS = ["adversarial-robustness", "robustbench", "autoattack", "image-classification"]


def build_model_card(
    model: Any, *, dataset: str = "cifar10", result: EvalResult | Measurement | None = None,
    config: Mapping[str, Any] | None = None, repo_id: str | None = None,
) -> ModelCard:
    """The card of ``model`` (a registry entry or id, a zoo folder, its config.json or that config as dict)
    with ``result``'s figures; ``config``: a registry entry's folder; ``repo_id``: the Hub repository."""
    from huggingface_hub import ModelCard, ModelCardData

    subject = card_subject(model, dataset=dataset, config=config)
    subject = replace(subject, hub_repo_id=repo_id) if repo_id else subject
    measurement = _checked_measurement(subject, result)
    ikl_tag = ["ikl-at"] if subject.is_ikl_at else []
    card_data = ModelCardData(
        license=subject.license, datasets=[HUB_DATASETS[subject.dataset]], metrics=["accuracy"],
        tags=[*BASE_TAGS, *ikl_tag, subject.dataset, "ikl-zoo", "pytorch", "safetensors"],
        pipeline_tag="image-classification", model_name=subject.model_id,
        eval_results=_eval_results(subject, measurement) or None,
    )
    text = render("model_card.md.j2", card_data=card_data.to_yaml(), **_card_context(subject, measurement))
    return ModelCard(text)


def write_model_card(
    model: Any, out_dir: Folder, *, dataset: str = "cifar10", result: EvalResult | Measurement | None = None,
    config: Mapping[str, Any] | None = None, repo_id: str | None = None,
) -> Path:
    """Write ``out_dir/README.md`` atomically and return its path."""
    card = build_model_card(model, dataset=dataset, result=result, config=config, repo_id=repo_id)
    with output_errors(out_dir, fix="pass an -o/--out folder you can write"):
        return write_text_atomic(Path(out_dir) / CARD_NAME, str(card))


def write_registry_cards(out_dir: Folder = "cards", *, records_root: Folder | None = DEFAULT_ROOT
                         ) -> list[Path]:
    """Cards of every IKL-AT registry model, one folder each named like its Hub repository, with records."""
    from ikl_zoo.zoo.registry import list_models

    paths, recorded = [], {r.path: r for r in load_records(records_root)} if records_root else {}
    for entry in filter(lambda entry: entry.is_ikl_at, list_models()):
        board = {"dataset": entry.dataset, "threat_model": entry.threat_model}
        record = recorded.get(record_path(entry.model_id, **board, root=records_root or DEFAULT_ROOT))
        folder = Path(out_dir) / (entry.hub_repo_name or f"{entry.model_id}-{entry.dataset}")
        paths.append(write_model_card(entry, folder, result=record.measurement if record else None))
    return paths


def _checked_measurement(subject: CardSubject, result: EvalResult | Measurement | None) -> Measurement | None:
    """The result as a measurement of the weights the card describes (at any budget), else a ``CardError``."""
    if result is None:
        return None
    m = Measurement.from_result(result)
    if m.dataset != subject.dataset:
        raise CardError(f"the result is for {m.dataset}, the card for {subject.dataset}",
                        fix=f"pass --dataset {m.dataset} or the matching result")
    if m.threat_model != subject.threat_model:
        raise CardError(f"the result is for {m.threat_model} eps {m.settings.eps_text}, the model for "
                        f"{subject.threat_model}, eps = {subject.eps_text}",
                        fix="evaluate it under the model's threat model")
    measured_sha256 = records.checkpoint_sha256(m.provenance)
    if subject.weights_sha256 and measured_sha256 == subject.weights_sha256:
        return m
    weights = records.replaced_weights(m.provenance)
    if weights is not None and subject.in_registry:
        convert = f"`ikl-zoo convert {weights} --model {m.model_id} --dataset {m.dataset} -o DIR`"
        raise CardError(f"the result measures {m.model_id} with weights from {weights}, not the published "
                        "weights this card describes",
                        fix=f"make a zoo folder of that checkpoint ({convert}), evaluate it and card DIR")
    known_other = measured_sha256 and subject.weights_sha256 and not subject.published_weights  # they differ
    if m.board_id != subject.model_id or known_other:
        hashes = (measured_sha256, subject.weights_sha256)
        result_sha, card_sha = (f" (sha256 {digest})" if digest else "" for digest in hashes)
        raise CardError(f"the result is for {m.model_id!r}{result_sha}, the card for {subject.model_id!r}"
                        f"{card_sha}: not the same {'weights' if known_other else 'model'}",
                        fix="evaluate these weights and pass that result")
    return m


def _eval_results(subject: CardSubject, m: Measurement | None) -> list[Any]:
    """The model-index as the Hub reads it: metric ``accuracy``, the attack and budget in its name and args;
    published figures (published weights only) on ``test``, measured on ``test[:n]``, each with its source."""
    from huggingface_hub import EvalResult as HubEvalResult

    groups = []
    if (published := subject.published) is not None and subject.published_weights:
        url = ROBUSTBENCH_URL if subject.robustbench_row else PAPER_URL
        figures = (published["clean_acc"], published["autoattack_acc"])
        groups.append(("published", "test", published["source"], url, figures, subject.eps_text, "AutoAttack",
                       {"version": "standard"}))  # fmt: skip
    if m is not None:
        version = records.recorded_fact(m.provenance, "ikl-zoo version") or "(version not recorded)"
        attack = "AutoAttack" if m.standard_attack else m.attack
        source = f"ikl-zoo {version} measurement with {attack} on {m.n_examples} test examples"
        figures = (round(100 * m.clean_acc, 2), round(100 * m.robust_acc, 2))
        groups.append(("ikl-zoo", f"test[:{m.n_examples}]", source, AUTOATTACK_URL, figures,
                       m.settings.eps_text, attack, {"version": m.version, "seed": m.seed}))
    results, threat = [], subject.threat_model
    for label, split, source, url, (clean, robust), eps, attack, run in groups:
        what = "AutoAttack robust accuracy" if attack == "AutoAttack" else f"Robust accuracy under {attack}"
        args = {"attack": attack, "threat_model": threat, "eps": eps, **run}
        metrics = [("Clean accuracy", clean, None), (f"{what}, {threat} eps {eps}", robust, args)]
        results += [HubEvalResult(
            task_type="image-classification", task_name="Image Classification",
            dataset_type=HUB_DATASETS[subject.dataset], dataset_name=DATASET_TITLES[subject.dataset],
            dataset_config="plain_text", dataset_split=split, source_name=source, source_url=url,
            metric_type="accuracy", metric_name=f"{title} ({label})", metric_value=value, metric_args=margs,
        ) for title, value, margs in metrics]
    return results


def _card_context(subject: CardSubject, m: Measurement | None) -> dict[str, Any]:
    """What the card template needs beyond the subject and the measurement: looked-up records."""
    standard_eps = STANDARD_EPS.get(subject.threat_model)
    return {
        "s": subject, "m": m, "rank": _robustbench_rank(subject) if subject.robustbench_row else None,
        "measured_facts": records.describe_provenance(m.provenance) if m else "",
        "nonstandard_eps": standard_eps is not None and not same_eps(subject.eps, standard_eps),
        "measured_eps": None if m is None or same_eps(m.eps, subject.eps) else m.settings.eps_text,
        "commit": REFERENCE_COMMIT, "code_url": CODE_URL, "bibtex": BIBTEX, "config_name": CONFIG_NAME,
    }


def _robustbench_rank(subject: CardSubject) -> tuple[int, int] | None:
    board = build_board(subject.dataset, subject.threat_model, records_root=None)
    match = board.rows[board.rows["model_id"] == subject.model_id]
    return None if match.empty else (int(match.iloc[0]["rank"]), len(board.rows))
