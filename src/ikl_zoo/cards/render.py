"""The cards' prose lives in Jinja templates under ``templates/``; a missing value fails loudly."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ikl_zoo.cards", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, /, **context: Any) -> str:
    """The template named ``template`` filled with ``context``."""
    return _environment().get_template(template).render(**context)
