"""Reading an evaluation's provenance without depending on how the evaluator nests it.

Provenance is a free-form mapping (versions, device, checkpoint sha256, data source, times); these helpers
find a fact by the name of its key at any depth, so records, cards and submissions agree on what counts as
"recorded".
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Any

REQUIRED_FACTS = {
    "torch version": ({"torch"}, ()),
    "AutoAttack version": ({"autoattack", "pyautoattack"}, ()),
    "ikl-zoo version": ({"iklzoo"}, ()),
    "device": (set(), ("device",)),
    "checkpoint sha256": ({"checkpointsha256"}, ()),
}
"""What a result must record to be trusted by a submission: each fact, named by a key segment equal to one
of the names (``torch``, ``torch_version``, ``versions.torch`` all match ``torch``, ``torchvision`` does not)
or containing one of the fragments. The checkpoint's sha256 is the hash of the file a reviewer downloads
(``checkpoint_sha256`` or ``checkpoint.sha256``); the evaluator's ``weights_sha256`` (a digest of the tensors)
and ``data_sha256`` are other hashes and never stand in for it."""


def flatten(provenance: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``("versions.torch", "2.14.1")`` pairs for every leaf of a nested mapping."""
    for key, value in provenance.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, prefix=f"{name}.")
        else:
            yield name, value


def find_fact(provenance: Mapping[str, Any], fact: str) -> Any:
    """The first non-empty leaf that records ``fact`` (a key of ``REQUIRED_FACTS``), or None."""
    names, fragments = REQUIRED_FACTS[fact]
    for key, value in flatten(provenance):
        if value in (None, "", [], {}):
            continue
        parts = key.split(".")
        segments = [_normalise(segment) for segment in parts]
        segments += [_normalise(first + second) for first, second in itertools.pairwise(parts)]
        if any(segment in names or any(f in segment for f in fragments) for segment in segments):
            return value
    return None


def _normalise(segment: str) -> str:
    return re.sub(r"[^a-z0-9]", "", segment.lower()).replace("versions", "").replace("version", "")


def missing_facts(provenance: Mapping[str, Any]) -> list[str]:
    """The required facts a result does not state, so that a submission can name what to add."""
    return [fact for fact in REQUIRED_FACTS if find_fact(provenance, fact) is None]


def checkpoint_sha256(provenance: Mapping[str, Any]) -> str | None:
    """The evaluated checkpoint's sha256 (however the provenance spells its key): ties figures to weights."""
    value = find_fact(provenance, "checkpoint sha256")
    return str(value) if value is not None else None


def describe(provenance: Mapping[str, Any]) -> str:
    """``torch 2.14.1, AutoAttack 0.2.0, ikl-zoo 0.1.0 on NVIDIA H100``: the facts in one line."""
    parts = []
    for label, fact in (
        ("torch", "torch version"),
        ("AutoAttack", "AutoAttack version"),
        ("ikl-zoo", "ikl-zoo version"),
    ):
        value = find_fact(provenance, fact)
        if value is not None:
            parts.append(f"{label} {value}")
    device = find_fact(provenance, "device")
    if isinstance(device, list | tuple):  # one entry per rank's device, e.g. ["cuda:0 (NVIDIA H100)"]
        device = ", ".join(dict.fromkeys(map(str, device)))
    text = ", ".join(parts)
    if device is not None:
        text = f"{text} on {device}" if text else str(device)
    return text


def replaced_weights(provenance: Mapping[str, Any]) -> str | None:
    """The local checkpoint a registered model was evaluated with instead of its published weights, if any.

    ``ikl-zoo eval --model ID --checkpoint FILE`` records ``replaced_weights: FILE`` (results written before
    that key existed say so only in ``model_source: "ID with weights from FILE"``); such a measurement is of
    FILE, not of ID, and must never stand for ID's published figures.
    """
    if "replaced_weights" in provenance:
        recorded = provenance["replaced_weights"]
        return str(recorded) if recorded else None
    source = provenance.get("model_source")
    match = re.search(r" with weights from (.+)$", source) if isinstance(source, str) else None
    return match.group(1) if match else None
