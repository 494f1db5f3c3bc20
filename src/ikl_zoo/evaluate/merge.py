"""One result from a run's chunks: flags joined, accuracies, times and passes summed, warnings once."""

from __future__ import annotations

import logging
import platform
from collections import Counter
from collections.abc import Iterable
from itertools import groupby
from operator import itemgetter
from typing import Any

import pyautoattack
import torch
from pyautoattack.checks import check_square_sr

from ikl_zoo import __version__
from ikl_zoo.evaluate.attacks import AUTOATTACK_LOGGER, collect_autoattack_warnings
from ikl_zoo.evaluate.result import EvalResult, ModelFacts
from ikl_zoo.evaluate.settings import EvalSettings
from ikl_zoo.evaluate.store import ChunkOutcome, now_utc


def merge_chunks(
    outcomes: list[ChunkOutcome], *, settings: EvalSettings, facts: ModelFacts, attacks: list[str],
    extra: dict[str, Any], wall: dict[str, float],
) -> EvalResult:
    """The chunks' flags, times and warnings as one result; ``extra`` joins its provenance, ``wall`` (this
    run's seconds, and those of the chunks finished in earlier runs) its timings."""
    clean_flags = [flag for outcome in outcomes for flag in outcome.clean_flags]
    robust_flags = [flag for outcome in outcomes for flag in outcome.robust_flags]
    n, clean_acc, requested = len(clean_flags), sum(clean_flags) / len(clean_flags), settings.batch_size
    per_attack = {attack: sum(sum(o.attack_flags[attack]) for o in outcomes) / n for attack in attacks}
    return EvalResult(
        model_id=facts.model_id, settings=settings, attacks=list(attacks),
        batch_size=requested if isinstance(requested, int) else min(o.batch_size for o in outcomes),
        clean_acc=clean_acc, robust_acc=sum(robust_flags) / n, clean_flags=clean_flags,
        robust_flags=robust_flags, per_attack=per_attack, timings={
            **wall, **_summed(o.timings for o in outcomes),
            "total": sum(sum(o.timings.values()) for o in outcomes),
        },
        model_passes=_summed(o.model_passes for o in outcomes),
        provenance=_provenance(outcomes, settings=settings, extra={**extra, **(facts.provenance or {})}),
        published=dict(facts.published) if facts.published is not None else None,
        warnings=_warnings(outcomes, per_attack=per_attack, clean_acc=clean_acc),
    )


def _summed(counts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)  # update, unlike +, keeps zero counts
    return dict(total)


def _warnings(outcomes: list[ChunkOutcome], *, per_attack: dict[str, float], clean_acc: float) -> list[str]:
    """The chunks' warnings, AutoAttack's on Square's success over the whole run, a mixed batch size: once."""
    with collect_autoattack_warnings() as square_warning:  # Square found points the others missed
        check_square_sr({"clean": clean_acc, **per_attack}, logger=logging.getLogger(AUTOATTACK_LOGGER))
    batch_sizes = [outcome.batch_size for outcome in outcomes]
    mixed = [_describe_batch_sizes(batch_sizes)] if len(set(batch_sizes)) > 1 else []
    messages = [*(message for outcome in outcomes for message in outcome.warnings), *square_warning, *mixed]
    return list(dict.fromkeys(messages))


def _provenance(outcomes: list[ChunkOutcome], *, settings: EvalSettings, extra: dict[str, Any]) -> dict:
    return {
        "ikl_zoo": __version__, "torch": torch.__version__, "pyautoattack": pyautoattack.__version__,
        "python": platform.python_version(), "devices": sorted({outcome.device for outcome in outcomes}),
        "attack_options": settings.attack_options, "chunk_batch_sizes": [o.batch_size for o in outcomes],
        "max_perturbation": max((outcome.max_perturbation for outcome in outcomes), default=0.0),
        "finished": now_utc(), **extra,
    }


def _describe_batch_sizes(batch_sizes: list[int]) -> str:
    """``chunks ran at different batch sizes: 10 (chunk 0), 5 (chunks 1-3, 5)`` for a mixed run."""
    runs: dict[int, list[str]] = {}
    for size, run in groupby(enumerate(batch_sizes), key=itemgetter(1)):
        first, *rest = (index for index, _ in run)
        runs.setdefault(size, []).append(f"{first}-{rest[-1]}" if rest else str(first))
    parts = ", ".join(
        f"{size} (chunk{'s' * (len(listed) > 1 or '-' in listed[0])} {', '.join(listed)})"
        for size, listed in runs.items()
    )
    mixed = f"chunks ran at different batch sizes: {parts} (an out-of-memory back-off)"
    return f"{mixed}; a flag depends on its chunk's batch size"
