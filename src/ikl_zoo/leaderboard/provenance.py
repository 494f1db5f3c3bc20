"""The facts of an evaluation's provenance that records, cards and submissions rely on, read by their keys.

The evaluator records versions under ``torch``, ``pyautoattack`` and ``ikl_zoo`` (at the top level or in a
``versions`` mapping), the device under ``devices`` (or ``device``), the checkpoint file's hash under
``checkpoint_sha256`` and a local checkpoint standing in for published weights under ``replaced_weights``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REQUIRED_FACTS = {
    "torch version": ("torch",),
    "AutoAttack version": ("pyautoattack", "autoattack"),
    "ikl-zoo version": ("ikl_zoo",),
    "device": ("devices", "device"),
    "checkpoint sha256": ("checkpoint_sha256",),
}
"""What a result must record to be trusted by a submission, and the keys that record it. The checkpoint's
sha256 is the hash of the file a reviewer downloads; the evaluator's ``weights_sha256`` (a digest of the
tensors) and ``data_sha256`` are other hashes and never stand in for it."""


def recorded_fact(provenance: Mapping[str, Any], fact: str) -> Any:
    """The recorded value of ``fact`` (a key of ``REQUIRED_FACTS``), or None when it is not recorded."""
    versions = provenance.get("versions")
    places = [provenance, versions] if isinstance(versions, Mapping) else [provenance]
    for place in places:
        for key in REQUIRED_FACTS[fact]:
            if place.get(key) not in (None, "", [], {}):
                return place[key]
    return None


def missing_facts(provenance: Mapping[str, Any]) -> list[str]:
    """The required facts a result does not state, so that a submission can name what to add."""
    return [fact for fact in REQUIRED_FACTS if recorded_fact(provenance, fact) is None]


def checkpoint_sha256(provenance: Mapping[str, Any]) -> str | None:
    """The evaluated checkpoint file's sha256: ties the figures to the weights."""
    value = recorded_fact(provenance, "checkpoint sha256")
    return str(value) if value is not None else None


def describe(provenance: Mapping[str, Any]) -> str:
    """``torch 2.14.1, AutoAttack 0.2.0, ikl-zoo 0.1.0 on NVIDIA H100``: the facts in one line."""
    labels = {"torch": "torch version", "AutoAttack": "AutoAttack version", "ikl-zoo": "ikl-zoo version"}
    values = {label: recorded_fact(provenance, fact) for label, fact in labels.items()}
    text = ", ".join(f"{label} {value}" for label, value in values.items() if value is not None)
    device = recorded_fact(provenance, "device")
    if isinstance(device, list | tuple):  # one entry per rank's device, e.g. ["cuda:0 (NVIDIA H100)"]
        device = ", ".join(dict.fromkeys(map(str, device)))
    if device is not None:
        text = f"{text} on {device}" if text else str(device)
    return text


def replaced_weights(provenance: Mapping[str, Any]) -> str | None:
    """The local checkpoint a registered model was evaluated with instead of its published weights, if any:
    such a measurement is of that file, and must never stand for the model's published figures."""
    recorded = provenance.get("replaced_weights")
    return str(recorded) if recorded else None
