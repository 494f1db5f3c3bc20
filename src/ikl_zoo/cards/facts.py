"""The facts an evaluation records in its provenance, read by the keys the evaluator writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VERSION_KEYS = {"torch": "torch", "AutoAttack": "pyautoattack", "ikl-zoo": "ikl_zoo"}
"""Label -> provenance key of a package version (at the top level or under ``versions``)."""


def version(provenance: Mapping[str, Any], label: str) -> str | None:
    value = provenance.get(VERSION_KEYS[label]) or (provenance.get("versions") or {}).get(VERSION_KEYS[label])
    return str(value) if value else None


def devices(provenance: Mapping[str, Any]) -> str | None:
    """The devices the attack ran on, in one line (each rank's device once)."""
    value = provenance.get("devices") or provenance.get("device")
    value = ", ".join(dict.fromkeys(map(str, value))) if isinstance(value, list | tuple) else value
    return str(value) if value else None


def checkpoint_sha256(provenance: Mapping[str, Any]) -> str | None:
    """The sha256 of the checkpoint file evaluated: what ties the figures to weights a reviewer downloads."""
    return provenance.get("checkpoint_sha256") or None


def replaced_weights(provenance: Mapping[str, Any]) -> str | None:
    """The local checkpoint a registered model was evaluated with instead of its published weights."""
    return provenance.get("replaced_weights") or None


def missing_facts(provenance: Mapping[str, Any]) -> list[str]:
    """What a result must record to be trusted by a submission, and does not."""
    missing = [f"{label} version" for label in VERSION_KEYS if version(provenance, label) is None]
    others = (("device", devices(provenance)), ("checkpoint sha256", checkpoint_sha256(provenance)))
    return missing + [fact for fact, value in others if not value]


def describe(provenance: Mapping[str, Any]) -> str:
    """``torch 2.14.1, AutoAttack 0.2.0, ikl-zoo 0.1.0 on NVIDIA H100``: the facts in one line."""
    text = ", ".join(f"{label} {version(provenance, label)}" for label in VERSION_KEYS
                     if version(provenance, label))
    device = devices(provenance)
    return f"{text} on {device}" if text and device else text or device or ""
