"""The cards' prose lives in Jinja templates under ``templates/``; a missing value fails loudly."""

from __future__ import annotations

import json

from ikl_zoo.evaluate.estimate import wilson_interval
from ikl_zoo.leaderboard.render import template_renderer
from ikl_zoo.threat import format_eps


def wilson_text(fraction: float, n: int) -> str:
    """The 95% Wilson interval in percent as bounds: skewed (0/4 spans 0-49%), so no ``± half-width``."""
    low, high = wilson_interval(round(fraction * n), n)
    return f"[{100 * low:.2f}, {100 * high:.2f}]"


render = template_renderer("ikl_zoo.cards", eps=format_eps, json=json.dumps, wilson=wilson_text)
