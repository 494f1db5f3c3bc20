"""The cards' prose lives in Jinja templates under ``templates/``; a missing value fails loudly."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jinja2

from ikl_zoo.evaluate.estimate import wilson_interval
from ikl_zoo.threat import format_eps


def wilson_text(fraction: float, n: int) -> str:
    """The 95% Wilson interval in percent as its bounds: centred away from the measured fraction (0/4 spans
    0-49%), so a ``± half-width`` would understate the upper bound."""
    low, high = wilson_interval(round(fraction * n), n)
    return f"[{100 * low:.2f}, {100 * high:.2f}]"


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("ikl_zoo.cards", "templates"), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    environment.filters.update(eps=format_eps, json=json.dumps, wilson=wilson_text)
    return environment


def render(template: str, /, **context: Any) -> str:
    """The template named ``template`` filled with ``context``."""
    return _environment().get_template(template).render(**context)
