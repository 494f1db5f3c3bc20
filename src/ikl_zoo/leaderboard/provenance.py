"""The facts of an evaluation's provenance that records, cards and submissions rely on, read by the keys
the evaluator writes (``evaluate.merge``): ``torch``, ``pyautoattack``, ``ikl_zoo``, ``devices``,
``checkpoint_sha256`` and ``replaced_weights``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REQUIRED_FACTS = {
    "torch version": "torch", "AutoAttack version": "pyautoattack", "ikl-zoo version": "ikl_zoo",
    "device": "devices", "checkpoint sha256": "checkpoint_sha256",
}  # fmt: skip
"""What a result must record to be trusted by a submission, and its key. The checkpoint's sha256 is the hash
of the file a reviewer downloads, never the evaluator's ``weights_sha256`` or ``data_sha256``."""


def recorded_fact(provenance: Mapping[str, Any], fact: str) -> Any:
    """The recorded value of ``fact`` (a key of ``REQUIRED_FACTS``), or None when it is not recorded."""
    value = provenance.get(REQUIRED_FACTS[fact])
    return None if value in (None, "", []) else value


def missing_facts(provenance: Mapping[str, Any]) -> list[str]:
    return [fact for fact in REQUIRED_FACTS if recorded_fact(provenance, fact) is None]


def checkpoint_sha256(provenance: Mapping[str, Any]) -> str | None:
    return recorded_fact(provenance, "checkpoint sha256")


def describe(provenance: Mapping[str, Any]) -> str:
    """``torch 2.14.1, AutoAttack 0.2.0, ikl-zoo 0.1.0 on NVIDIA H100``: each rank's device once."""
    labels = {"torch": "torch version", "AutoAttack": "AutoAttack version", "ikl-zoo": "ikl-zoo version"}
    values = {label: recorded_fact(provenance, fact) for label, fact in labels.items()}
    text = ", ".join(f"{label} {value}" for label, value in values.items() if value is not None)
    device = ", ".join(dict.fromkeys(map(str, recorded_fact(provenance, "device") or [])))
    return f"{text} on {device}" if text and device else text or device


def replaced_weights(provenance: Mapping[str, Any]) -> str | None:
    """The local checkpoint a registered model was evaluated with instead of its published weights, if any:
    such a measurement is of that file, and must never stand for the model's published figures."""
    return provenance.get("replaced_weights") or None
