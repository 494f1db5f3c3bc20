"""EvalResult objects built directly, shaped like the evaluator's output."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ikl_zoo.evaluate.result import EvalResult

STANDARD_ATTACKS = ["apgd-ce", "apgd-t", "fab-t", "square"]
PROVENANCE = {
    "versions": {"ikl_zoo": "0.1.0", "torch": "2.14.1", "pyautoattack": "0.2.0"},
    "device": "NVIDIA H100 80GB HBM3",
    "checkpoint_sha256": "ab" * 32,
    "data": "cifar10 test split, torchvision layout",
}


def build_result(
    model_id: str = "Cui2023Decoupled_WRN-28-10",
    *,
    dataset: str = "cifar10",
    n_examples: int = 10_000,
    clean: float = 0.9215,
    robust: float = 0.6770,
    threat_model: str = "Linf",
    eps: float = 8 / 255,
    version: str = "standard",
    seed: int | None = 0,
    provenance: dict | None = None,
) -> EvalResult:
    n_clean, n_robust = round(clean * n_examples), round(robust * n_examples)
    return EvalResult(
        model_id=model_id,
        dataset=dataset,
        threat_model=threat_model,
        eps=eps,
        version=version,
        attacks=list(STANDARD_ATTACKS) if version == "standard" else ["apgd-ce"],
        n_examples=n_examples,
        seed=seed,
        batch_size=500,
        chunk_size=500,
        clean_acc=n_clean / n_examples,
        robust_acc=n_robust / n_examples,
        clean_flags=[i < n_clean for i in range(n_examples)],
        robust_flags=[i < n_robust for i in range(n_examples)],
        per_attack={
            "apgd-ce": (n_robust + 50) / n_examples,
            "apgd-t": n_robust / n_examples,
            "fab-t": n_robust / n_examples,
            "square": n_robust / n_examples,
        },
        timings={"total": 3600.0, "clean": 10.0},
        model_passes={"forward": 123456, "backward": 98765},
        provenance=dict(PROVENANCE if provenance is None else provenance),
    )


@pytest.fixture
def make_result() -> Callable[..., EvalResult]:
    return build_result
