"""The evaluator's guarantees around the attacks: inputs, fp32, model state, counts, run directories."""

from __future__ import annotations

import json

import pytest
import torch

from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate import EvalResult, evaluate

from .conftest import FAST_APGD, TINY_EPS

FAST = dict(eps=TINY_EPS, version="custom", attacks=["apgd-ce"], attack_options=FAST_APGD, progress=False)


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (lambda x, y: (x * 255, y), r"lie in \[0, 255\], not \[0, 1\]"),
        (lambda x, y: ((x * 255).to(torch.uint8), y), "uint8"),
        (lambda x, y: (x.double(), y), "float64"),
        (lambda x, y: (x, y[:-1]), "must be 20 integers"),
        (lambda x, y: (x, y.float()), "must be 20 integers"),
        (lambda x, y: (x[0], y), r"N x C x H x W"),
        (lambda x, y: (x.masked_fill(x > 0.5, float("nan")), y), "NaN"),
        (lambda x, y: (x, y + 10), "labels go up to 19 but the model has 10 outputs"),
    ],
)
def test_bad_inputs_are_clear_errors(tiny_model, cifar10_sample, transform, message):
    x, y = transform(*cifar10_sample)
    with pytest.raises(EvaluationError, match=message):
        evaluate(tiny_model, x, y, **FAST)


def test_half_precision_weights_are_refused(tiny_model, cifar10_sample):
    import copy

    half = copy.deepcopy(tiny_model).half()
    with pytest.raises(EvaluationError, match=r"torch.float16 tensors .*model.float\(\)"):
        evaluate(half, *cifar10_sample, **FAST)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.0}, "eps must be a positive number"),
        ({"batch_size": 0}, "batch size must be a positive integer or 'auto'"),
        ({"chunk_size": 0}, "chunk size must be a positive integer"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_arguments(tiny_model, cifar10_sample, kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate(tiny_model, *cifar10_sample, **{**FAST, **kwargs})


def test_model_state_is_restored_and_passes_are_counted(tiny_model, cifar10_sample):
    x, y = cifar10_sample
    tiny_model.block1.train()  # a mixed state must come back as it was
    try:
        result = evaluate(tiny_model, x, y, batch_size=8, chunk_size=20, **FAST)
        assert tiny_model.block1.training and not tiny_model.training and not tiny_model.block2.training
    finally:
        tiny_model.block1.eval()
    assert all(parameter.requires_grad for parameter in tiny_model.parameters())
    # APGD-CE with 10 iterations takes 11 gradients per batch (the start point and each step).
    n_robust_batches = 3  # all 20 images are correct: batches of 8, 8, 4
    assert result.model_passes["backward"] == n_robust_batches * 11
    assert result.model_passes["backward_images"] == 20 * 11
    assert result.model_passes["forward"] > result.model_passes["backward"]


def test_result_fields(tiny_model, cifar10_sample, tmp_path):
    x, y = cifar10_sample
    result = evaluate(tiny_model, x, y, model_id="tiny", dataset="cifar10", seed=3, batch_size=20, **FAST)
    assert (result.model_id, result.dataset, result.threat_model, result.seed) == (
        "tiny",
        "cifar10",
        "Linf",
        3,
    )
    assert result.n_examples == 20 and len(result.robust_flags) == len(result.clean_flags) == 20
    assert result.clean_acc == 1.0 and result.robust_acc == sum(result.robust_flags) / 20
    assert result.per_attack == {"apgd-ce": result.robust_acc}
    provenance = result.provenance
    assert provenance["torch"] == torch.__version__ and provenance["pyautoattack"] == "0.2.0"
    assert len(provenance["weights_sha256"]) == 64 and len(provenance["data_sha256"]) == 64
    assert provenance["autoattack_settings"]["apgd"] == {"n_iter": 10, "n_restarts": 1, "eot_iter": 1}
    assert provenance["devices"][0].startswith("cpu")
    restored = EvalResult.load(result.save(tmp_path / "result.json"))
    assert restored == result


def test_run_dir_holds_manifest_chunks_and_result(tiny_model, cifar10_sample, tmp_path):
    x, y = cifar10_sample
    result = evaluate(tiny_model, x, y, chunk_size=8, batch_size=8, out=tmp_path / "run", **FAST)
    chunks = sorted((tmp_path / "run" / "chunks").glob("chunk_*.json"))
    assert [path.name for path in chunks] == ["chunk_00000.json", "chunk_00001.json", "chunk_00002.json"]
    chunk = json.loads(chunks[1].read_text())
    assert (chunk["start"], chunk["stop"], chunk["seed"]) == (8, 16, 1)
    assert chunk["robust_flags"] == result.robust_flags[8:16]
    assert chunk["attack_flags"]["apgd-ce"] == chunk["robust_flags"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["identity"]["chunk_size"] == 8 and manifest["identity"]["eps"] == TINY_EPS
    assert EvalResult.load(tmp_path / "run" / "result.json") == result


def test_resume_redoes_only_missing_chunks(tiny_model, cifar10_sample, tmp_path):
    x, y = cifar10_sample
    out = tmp_path / "run"
    full = evaluate(tiny_model, x, y, chunk_size=5, batch_size=5, out=out, **FAST)
    (out / "chunks" / "chunk_00002.json").unlink()
    (out / "result.json").unlink()
    resumed = evaluate(tiny_model, x, y, chunk_size=5, batch_size=5, out=out, resume=True, **FAST)
    assert resumed.robust_flags == full.robust_flags
    assert resumed.provenance["resumed_chunks"] == 3
    finished = evaluate(tiny_model, x, y, chunk_size=5, batch_size=5, out=out, resume=True, **FAST)
    assert finished.provenance["resumed_chunks"] == 4 and finished.robust_flags == full.robust_flags


def test_run_dir_refuses_other_arguments_and_reuse_without_resume(tiny_model, cifar10_sample, tmp_path):
    x, y = cifar10_sample
    out = tmp_path / "run"
    evaluate(tiny_model, x, y, chunk_size=10, batch_size=10, out=out, **FAST)
    with pytest.raises(EvaluationError, match="already holds a finished evaluation: pass --resume"):
        evaluate(tiny_model, x, y, chunk_size=10, batch_size=10, out=out, **FAST)
    with pytest.raises(EvaluationError) as error:
        evaluate(
            tiny_model, x, y, chunk_size=10, batch_size=10, out=out, resume=True, **{**FAST, "eps": 2 / 255}
        )
    assert "--resume refused" in str(error.value) and "eps 0.0156863 there, 0.00784314 now" in str(
        error.value
    )
    other_weights = torch.nn.Sequential(tiny_model, torch.nn.Identity())
    with pytest.raises(EvaluationError, match="weights_sha256"):
        evaluate(other_weights, x, y, chunk_size=10, batch_size=10, out=out, resume=True, **FAST)


def test_foreign_chunk_file_is_refused(tiny_model, cifar10_sample, tmp_path):
    x, y = cifar10_sample
    out = tmp_path / "run"
    evaluate(tiny_model, x, y, chunk_size=10, batch_size=10, out=out, **FAST)
    path = out / "chunks" / "chunk_00001.json"
    data = json.loads(path.read_text())
    data["seed"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(EvaluationError, match="does not belong to this run's chunk 1: delete it"):
        evaluate(tiny_model, x, y, chunk_size=10, batch_size=10, out=out, resume=True, **FAST)
