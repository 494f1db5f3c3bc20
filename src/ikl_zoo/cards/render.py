"""The cards' prose lives in Jinja templates under ``templates/``; a missing value fails loudly."""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import jinja2

from ikl_zoo.threat import format_eps


def wilson_interval(fraction: float, n: int, z: float = 1.959964) -> str:
    """The 95% Wilson score interval in percent, as its bounds: it is centred away from the measured
    fraction (0/4 correct spans 0-49%), so a ``± half-width`` would understate the upper bound."""
    denominator = 1 + z * z / n
    centre = (fraction + z * z / (2 * n)) / denominator
    spread = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n)) / denominator
    return f"[{100 * max(0.0, centre - spread):.2f}, {100 * min(1.0, centre + spread):.2f}]"


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("ikl_zoo.cards", "templates"), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    environment.filters.update(eps=format_eps, json=json.dumps, wilson=wilson_interval)
    return environment


def render(template: str, /, **context: Any) -> str:
    """The template named ``template`` filled with ``context``."""
    return _environment().get_template(template).render(**context)
