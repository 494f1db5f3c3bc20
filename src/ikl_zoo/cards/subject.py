"""What a card says about a model (from the registry or a zoo config.json); ``render`` fills its templates."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikl_zoo.errors import IklZooError
from ikl_zoo.evaluate.summary import wilson_interval
from ikl_zoo.leaderboard.reference import reference_entry, registry_entry
from ikl_zoo.leaderboard.render import template_renderer
from ikl_zoo.reference import published_from_row
from ikl_zoo.threat import CONFIG_NAME, DATASETS, HF_HUB_PREFIX, format_eps

if TYPE_CHECKING:
    from ikl_zoo.zoo.registry import ModelEntry



def wilson_text(fraction: float, n: int) -> str:
    """The 95% Wilson interval in percent as bounds: skewed (0/4 spans 0-49%), so no ``± half-width``."""
    low, high = wilson_interval(round(fraction * n), n)
    return f"[{100 * low:.2f}, {100 * high:.2f}]"


render = template_renderer("ikl_zoo.cards", eps=format_eps, json=json.dumps, wilson=wilson_text)


class CardError(IklZooError):
    """A card that cannot be built as asked: unknown model, unreadable folder, mismatched result."""


@dataclass(frozen=True, kw_only=True)
class CardSubject:
    """Everything a card says about a model."""

    model_id: str
    dataset: str
    threat_model: str
    eps: float
    architecture: str | dict[str, Any]  # a name, or a zoo config's architecture object (named in the card)
    training: str | dict[str, Any] | None
    is_ikl_at: bool
    robust: bool = True
    in_registry: bool
    published: dict[str, Any] | None = None  # percent clean_acc, autoattack_acc (external) and source
    robustbench_row: dict[str, Any] | None = None
    note: str = ""
    additional_data: bool = False
    hub_repo_id: str | None = None
    hub_revision: str | None = None
    hub_commit: str | None = None  # from an ``hf-hub:`` repository: the revision asked for, the commit served
    weights_sha256: str | None = None
    pinned_revision: str | None = None  # for a registry entry that pins its Hub copy: its sha256's revision
    license: str = "mit"
    unverified_source: dict[str, Any] | None = None  # a registry id's folder converted from an unpinned file

    eps_text = property(lambda self: format_eps(self.eps, self.threat_model))
    # The published weights (pinned, or the registry's own file): only they get the published model-index.
    published_weights = property(lambda self: self.in_registry and self.unverified_source is None)


def card_subject(model: Any, *, dataset: str = "cifar10", config: Mapping[str, Any] | None = None
                 ) -> CardSubject:
    """A registry entry, a registry id (for ``dataset``), a zoo folder or its config, as a card subject; an
    ``hf-hub:`` repository's from its config.json as the Hub served it (weights verified)."""
    from ikl_zoo.zoo.hub import fetch_hub_model, parse_hub_name
    from ikl_zoo.zoo.registry import ModelEntry, get_model_entry

    if isinstance(model, ModelEntry):
        return _subject_from_entry(model, config or {})
    if isinstance(model, Mapping):
        return _subject_from_config(dict(model))
    if str(model).startswith(HF_HUB_PREFIX):
        repo_id, revision = parse_hub_name(str(model))
        weights = fetch_hub_model(repo_id, revision)
        subject = _subject_from_config({**weights.spec.to_json(), "repo_id": repo_id})
        return replace(subject, hub_repo_id=repo_id, hub_revision=revision, hub_commit=weights.commit)
    if Path(model).exists():
        return _subject_from_config(read_config(model))
    return _subject_from_entry(get_model_entry(str(model), dataset=dataset), config or {})


def _subject_from_entry(entry: ModelEntry, config: Mapping[str, Any]) -> CardSubject:
    row = reference_entry(entry.model_id, dataset=entry.dataset, threat_model=entry.threat_model)
    published = published_from_row(row) if row is not None else entry.published and entry.published.to_dict()
    source = config.get("source")
    unverified = isinstance(source, Mapping) and not _pinned_sha256s(entry) and not (
        entry.gdrive_id and source.get("gdrive_id") == entry.gdrive_id
    )  # with a pin, other weights never reach a registry card; the Drive fallback fetched the authors' file
    return CardSubject(
        model_id=entry.model_id, dataset=entry.dataset, threat_model=entry.threat_model, eps=entry.eps,
        architecture=entry.architecture, training=config.get("training") or entry.training or None,
        is_ikl_at=entry.is_ikl_at, robust=entry.robust, in_registry=True, published=published,
        robustbench_row=row,
        note=entry.note, additional_data=entry.additional_data, hub_repo_id=entry.hub_repo_id(),
        pinned_revision=entry.revision if entry.hub_repo_name and entry.sha256 else None,
        weights_sha256=config.get("sha256") or entry.sha256,
        unverified_source=dict(source) if unverified else None,
    )


def _subject_from_config(config: dict[str, Any]) -> CardSubject:
    if missing := [key for key in ("model_id", "dataset", "threat_model", "eps") if key not in config]:
        raise CardError(f"config.json lacks {', '.join(missing)}",
                        fix="rewrite it with `ikl-zoo convert` or training")
    if config["dataset"] not in DATASETS:
        raise CardError(f"config.json names dataset {config['dataset']!r}",
                        fix=f"ikl-zoo cards cover {', '.join(DATASETS)}")
    entry = registry_entry(str(config["model_id"]), config["dataset"])
    training = config.get("training")
    get = training.get if isinstance(training, dict) else {}.get  # never IKL-AT by "ikl" elsewhere (ikl-zoo)
    ikl_at = str(get("method", "")).upper() == "IKL-AT" or str(get("loss", "")).lower() == "ikl"
    if entry is not None and not training and not _known_other_weights(entry, config):
        return _subject_from_entry(entry, config)
    return CardSubject(
        model_id=str(config["model_id"]), dataset=config["dataset"], threat_model=str(config["threat_model"]),
        eps=float(config["eps"]), architecture=config.get("architecture") or "unknown architecture",
        training=training, is_ikl_at=ikl_at, in_registry=False,
        note=str(config.get("note") or ""), additional_data=bool(config.get("additional_data", False)),
        hub_repo_id=config.get("repo_id"), weights_sha256=config.get("sha256"),
        license=str(config.get("license") or "unknown"),
    )


def _known_other_weights(entry: ModelEntry, config: Mapping[str, Any]) -> bool:
    """A registry id's folder converted from a file its pinned sha256 rejects (unpinned: taken as its own)."""
    source = config.get("source")
    hashes = {config.get("sha256"), source.get("sha256") if isinstance(source, Mapping) else None}
    return bool(_pinned_sha256s(entry)) and not _pinned_sha256s(entry) & hashes


def _pinned_sha256s(entry: ModelEntry) -> set[str]:
    return {entry.sha256, entry.package_file_sha256} - {None}


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A zoo folder's config.json (or that file itself) as a dict, with a one-line error otherwise."""
    path = Path(path)
    config_path = path / CONFIG_NAME if path.is_dir() else path
    if not config_path.is_file():
        raise CardError(f"{path} holds no {CONFIG_NAME}",
                        fix="pass a zoo folder (from `ikl-zoo convert` or training)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CardError(f"cannot read {config_path}: {error}") from None
    if not isinstance(config, dict):
        raise CardError(f"{config_path} is not a JSON object", fix="rewrite it with `ikl-zoo convert`")
    return config
