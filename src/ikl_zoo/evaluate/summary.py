"""The summary ``ikl-zoo eval`` prints: accuracy after each stage, the published figure beside it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tabulate import tabulate

from ikl_zoo.evaluate.result import EvalResult
from ikl_zoo.threat import format_eps

FULL_TEST_SET = 10_000


def on_the_published_images(n_examples: int, provenance: Mapping[str, Any]) -> bool:
    """A difference to a published figure means something only on the images it was measured on: all of
    the real test set (not a subset, not a folder ikl-zoo wrote)."""
    return n_examples == FULL_TEST_SET and bool(provenance.get("official_test_set"))


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of ``successes / n``: honest for small n and for 0% or 100%."""
    fraction, spread = successes / n, z * z / n
    centre = (fraction + spread / 2) / (1 + spread)
    half = z * math.sqrt(fraction * (1 - fraction) / n + spread / (4 * n)) / (1 + spread)
    return max(0.0, centre - half), min(1.0, centre + half)


def format_summary(result: EvalResult) -> str:
    """A header, the table of accuracies (clean, after each attack, final) and AutoAttack's warnings."""
    n, published = result.n_examples, result.published or {}
    comparable = on_the_published_images(n, result.provenance)

    def row(stage: str, fraction: float, published_key: str | None, seconds: float | None) -> list[str]:
        figure = published.get(published_key) if published_key else None
        cells = [stage, f"{100 * fraction:.2f}%", f"{round(fraction * n)}/{n}"]
        if published and figure is None:
            cells += ["", ""]
        elif published:
            cells += [f"{figure:.2f}%", f"{100 * fraction - figure:+.2f}" * comparable]
        return [*cells, f"{seconds:.1f} s" if seconds is not None else ""]

    rows = [
        row("clean", result.clean_acc, "clean_acc", result.timings.get("clean")),
        *(row(f"after {a}", result.per_attack[a], None, result.timings.get(a)) for a in result.attacks),
        row("AutoAttack (final)", result.robust_acc, "autoattack_acc", result.timings.get("total")),
    ]
    headers = ["", "accuracy", "correct", *(["published", "difference (pp)"] if published else []), "time"]
    table = tabulate(
        rows, headers=headers, colalign=("left", *["right"] * (len(headers) - 1)), disable_numparse=True
    )

    devices, passes = ", ".join(result.provenance.get("devices", [])) or "unknown device", result.model_passes
    lines = [
        f"{result.model_id} on {result.dataset} (first {n} test images), {result.threat_model} "
        f"eps {format_eps(result.eps, result.threat_model)}, AutoAttack {result.version} "
        f"({', '.join(result.attacks)}), seed {result.seed}",
        f"{devices}; precision {result.settings.precision}; batch {result.batch_size}, chunks of "
        f"{result.chunk_size}; {passes.get('forward', 0):,} forward and {passes.get('backward', 0):,} "
        f"backward passes; {_wall_time(result)}", "", table,
    ]
    if published:
        source = published.get("source", "registry")
        note = f"published: {source}, on the full {FULL_TEST_SET:,}-image test set"
        if n != FULL_TEST_SET:
            note += f"; this run used {n} images, so no difference is given (not a like-for-like comparison)"
        elif not comparable:
            note += "; this run's images are not the real test set, so no difference is given"
        lines += ["", note]
    if result.settings.precision == "bf16":
        lines.append("bf16 screen: not a leaderboard number (measure that with --precision pytorch)")
    if data_source := result.provenance.get("data_source"):
        lines.append(f"data: {data_source}")
    return "\n".join([*lines, *(f"warning: {message}" for message in result.warnings)])


def _wall_time(result: EvalResult) -> str:
    """This run's wall time, and the earlier runs' share of a resumed one."""
    wall, earlier = result.timings.get("wall", 0.0), result.timings.get("earlier_runs", 0.0)
    if result.provenance.get("resumed_chunks") == result.settings.n_chunks:
        return f"{wall + earlier:.1f} s wall (all of it in an earlier run)"
    return f"{wall:.1f} s wall this run, {wall + earlier:.1f} s in all" if earlier else f"{wall:.1f} s wall"
