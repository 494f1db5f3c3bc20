"""The evaluator's guarantees around the attacks: inputs, fp32, model state, counts, run directories."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate import EvalResult, EvalSettings, evaluate

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
        ({"eps": 8.0}, r"Linf eps 8 exceeds the \[0, 1\] image range: .* 8/255"),
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


def test_a_model_left_in_train_mode_is_attacked_in_eval_mode(tiny_model, cifar10_sample):
    """Dropout and batch statistics off for every pass (else AutoAttack sees a randomised defence), the
    caller's train mode back afterwards."""

    class Watched(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.dropout, self.modes = inner, torch.nn.Dropout(0.5), set()

        def forward(self, x):
            self.modes.add(self.training)
            return self.inner(self.dropout(x))

    watched = Watched(tiny_model).train()
    result = evaluate(watched, *cifar10_sample, batch_size=20, chunk_size=20, **FAST)
    assert watched.modes == {False} and watched.training and watched.dropout.training
    assert not any("randomized" in message for message in result.warnings), result.warnings
    watched.eval()
    assert result.robust_flags == evaluate(watched, *cifar10_sample, batch_size=20, chunk_size=20,
                                           **FAST).robust_flags


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
    written = json.loads((tmp_path / "result.json").read_text())
    assert written["format"] == 2 and EvalSettings.from_dict(written["settings"]) == result.settings
    assert result.settings.n_examples == 20 and result.settings.attack_options == FAST_APGD


def test_settings_whole_or_as_keywords_are_the_same_evaluation(tiny_model, cifar10_sample):
    settings = EvalSettings(
        eps=TINY_EPS, version="custom", attacks=["apgd-ce"], attack_options=FAST_APGD, batch_size=20,
        device="cpu",
    )
    whole = evaluate(tiny_model, *cifar10_sample, settings=settings, progress=False)
    keywords = evaluate(tiny_model, *cifar10_sample, batch_size=20, device="cpu", **FAST)
    assert whole.settings == keywords.settings and whole.robust_flags == keywords.robust_flags
    with pytest.raises(TypeError, match="not both"):
        evaluate(tiny_model, *cifar10_sample, settings=settings, seed=1)


def test_a_result_of_an_earlier_version_is_refused_with_the_fix(tiny_model, cifar10_sample, tmp_path):
    result = evaluate(tiny_model, *cifar10_sample, batch_size=20, **FAST)
    old = {key: value for key, value in result.to_dict().items() if key not in ("format", "settings")}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(old))
    with pytest.raises(EvaluationError) as error:
        EvalResult.load(path)
    assert error.value.problem == f"{path}: a result of an earlier ikl-zoo version"
    assert "re-run" in error.value.fix and "ikl-zoo record --overwrite" in error.value.fix


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
    with pytest.raises(EvaluationError, match="finished evaluation with these arguments: pass --resume"):
        evaluate(tiny_model, x, y, chunk_size=10, batch_size=10, out=out, **FAST)
    with pytest.raises(EvaluationError) as error:
        evaluate(
            tiny_model, x, y, chunk_size=10, batch_size=10, out=out, resume=True, **{**FAST, "eps": 2 / 255}
        )
    assert "--resume refused" in str(error.value) and "eps 0.0156863 there, 0.00784314 now" in str(
        error.value
    )
    # Without --resume, other arguments are named too, and --resume is not offered as the way out.
    with pytest.raises(EvaluationError) as error:
        evaluate(tiny_model, x, y, chunk_size=10, batch_size=10, out=out, **{**FAST, "eps": 2 / 255})
    message = str(error.value)
    assert "holds a run made with other arguments (eps 0.0156863 there, 0.00784314 now)" in message
    assert "choose another --out, or delete the directory" in message and "pass --resume" not in message
    with pytest.raises(EvaluationError, match='precision "pytorch" there, "bf16" now'):
        evaluate(tiny_model, x, y, chunk_size=10, batch_size=10, out=out, resume=True, precision="bf16",
                 **FAST)
    other_weights = torch.nn.Sequential(tiny_model, torch.nn.Identity())
    with pytest.raises(EvaluationError, match="weights_sha256"):
        evaluate(other_weights, x, y, chunk_size=10, batch_size=10, out=out, resume=True, **FAST)


def test_resume_without_a_run_starts_one_and_says_so(linear_model, cifar10_sample, tmp_path, capsys):
    out = tmp_path / "run"
    result = evaluate(linear_model, *cifar10_sample, chunk_size=20, batch_size=20, out=out, resume=True,
                      **FAST)
    assert f"--resume: {out} holds no run yet; starting a new one there" in capsys.readouterr().out
    assert EvalResult.load(out / "result.json") == result and result.provenance["resumed_chunks"] == 0


@pytest.fixture(scope="module")
def finished_run(linear_model, cifar10_sample, tmp_path_factory):
    """A finished run in two chunks of 10 at batch size auto (10 on a CPU), to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "run"
    evaluate(linear_model, *cifar10_sample, chunk_size=10, batch_size="auto", out=out, **FAST)
    return out


def _resume_damaged(finished_run, tmp_path, linear_model, cifar10_sample, *, name, damage):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    damage(out / name)
    with pytest.raises(EvaluationError) as error:
        evaluate(
            linear_model, *cifar10_sample, chunk_size=10, batch_size="auto", out=out, resume=True, **FAST
        )
    message = str(error.value)
    assert "\n" not in message and f"run directory {out}" in message
    return message


def _edit_json(edit):
    def damage(path):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(edit(data)))

    return damage


def _without(key):
    return lambda data: {name: value for name, value in data.items() if name != key}


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_edit_json(lambda data: {**data, "attack_flags": {}}),
         "attack_flags gives the flags after no attack, not after apgd-ce"),
        (lambda path: path.write_text("{"), "not valid JSON"),
        (lambda path: path.write_bytes(b"\xff\xfe{"), "not UTF-8 text"),
        (lambda path: path.write_text("[]"), "a JSON list, not an object"),
        (_edit_json(_without("timings")), "missing timings"),
        (_edit_json(lambda data: {**data, "clean_flags": "yes"}), "clean_flags is not a list of true/false"),
        (_edit_json(lambda data: {**data, "batch_size": "10"}), "batch_size is \"10\", not an integer"),
        (_edit_json(lambda data: {**data, "robust_flags": data["robust_flags"][1:]}),
         "robust_flags has 9 entries, the chunk has 10 examples"),
        (_edit_json(lambda data: {**data, "robust_flags": [True] * 10}), "contradict each other"),
    ],
)
def test_damaged_chunk_file_is_a_one_line_error(
    finished_run, tmp_path, linear_model, cifar10_sample, damage, reason
):
    message = _resume_damaged(
        finished_run, tmp_path, linear_model, cifar10_sample, name="chunks/chunk_00001.json", damage=damage
    )
    assert re.search(f"chunk file chunk_00001.json is damaged \\(.*{reason}", message), message
    assert message.endswith("delete it and rerun with --resume to redo that chunk")


def test_foreign_chunk_file_is_refused(finished_run, tmp_path, linear_model, cifar10_sample):
    message = _resume_damaged(
        finished_run, tmp_path, linear_model, cifar10_sample, name="chunks/chunk_00001.json",
        damage=_edit_json(lambda data: {**data, "seed": 99}),
    )
    assert "does not belong to this run's chunk 1 (seed 99 there, 1 now): delete it and rerun" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[]", "manifest.json is damaged (a JSON list, not an object)"),
        ("{", "manifest.json is damaged (not valid JSON"),
        ('{"format": 1}', "manifest.json is damaged (no identity object)"),
        ('{"format": 1, "identity": [1]}', "manifest.json is damaged (no identity object)"),
    ],
)
def test_damaged_manifest_is_a_one_line_error(
    finished_run, tmp_path, linear_model, cifar10_sample, text, reason
):
    message = _resume_damaged(
        finished_run, tmp_path, linear_model, cifar10_sample, name="manifest.json",
        damage=lambda path: path.write_text(text),
    )
    assert reason in message and "choose another --out" in message


@pytest.mark.parametrize(
    "text", ['{"batch_size": 0}', '{"batch_size": 11}', '{"batch_size": true}', "[]", "{"]
)
def test_damaged_batch_size_file_is_a_one_line_error(
    finished_run, tmp_path, linear_model, cifar10_sample, text
):
    message = _resume_damaged(
        finished_run, tmp_path, linear_model, cifar10_sample, name="batch_size.json",
        damage=lambda path: path.write_text(text),
    )
    assert "batch_size.json is damaged" in message and "delete it and rerun with --resume" in message


@pytest.mark.parametrize(
    "where",
    [
        lambda tmp_path: tmp_path / "afile",  # a regular file
        lambda tmp_path: tmp_path / "afile" / "run",  # under a regular file
        pytest.param(
            lambda tmp_path: Path("/proc/ikl-zoo-run"), marks=pytest.mark.skipif(
                not Path("/proc/self").is_dir(), reason="no /proc file system on this platform"
            ),
        ),
    ],
)
def test_unwritable_out_is_a_one_line_error(linear_model, cifar10_sample, tmp_path, where):
    (tmp_path / "afile").write_text("not a directory")
    out = where(tmp_path)
    with pytest.raises(EvaluationError) as error:
        evaluate(linear_model, *cifar10_sample, chunk_size=10, batch_size=10, out=out, **FAST)
    message = str(error.value)
    assert message.startswith(f"cannot write the run directory {out}: ") and "\n" not in message
    assert message.endswith("choose another --out")
    assert error.value.fix == "choose another --out"  # a field for library callers, not only text


@pytest.mark.parametrize("failing", ["chunks/chunk_00001.json", "result.json"])
def test_disk_full_mid_run_says_resume_and_resuming_keeps_the_work(
    linear_model, cifar10_sample, tmp_path, monkeypatch, failing
):
    """A full disk after the first chunk: the way out is --resume in the same folder, never another --out,
    which would throw away every finished chunk."""
    import errno

    import ikl_zoo.evaluate.store as store_module

    out = tmp_path / "run"
    arguments = dict(chunk_size=10, batch_size=10, out=out, **FAST)
    write = store_module.write_json_atomic

    def disk_full_at(path, data):
        if path == out / failing:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, data)

    monkeypatch.setattr(store_module, "write_json_atomic", disk_full_at)
    with pytest.raises(EvaluationError) as error:
        evaluate(linear_model, *cifar10_sample, **arguments)
    message = str(error.value)
    assert message.startswith(f"cannot write the run directory {out}: No space left on device")
    assert "--resume" in message and "another --out" not in message
    monkeypatch.setattr(store_module, "write_json_atomic", write)
    resumed = evaluate(linear_model, *cifar10_sample, resume=True, **arguments)
    assert resumed.provenance["resumed_chunks"] == (1 if failing.startswith("chunks") else 2)
    assert resumed.robust_flags == evaluate(linear_model, *cifar10_sample, chunk_size=10, batch_size=10,
                                            **FAST).robust_flags


@pytest.mark.parametrize(
    ("seed", "chunk_size"),
    [(-1, 20), (2**63 - 1, 10), (2**63, 20), (True, 20), (1.0, 20), ("0", 20)],
)
def test_seed_out_of_range(linear_model, cifar10_sample, seed, chunk_size):
    expected = r"^seed must be an integer with 0 <= seed and seed \+ \d+ .*< 2\*\*63"
    with pytest.raises(EvaluationError, match=expected):
        evaluate(linear_model, *cifar10_sample, chunk_size=chunk_size, batch_size=10, seed=seed, **FAST)


def test_largest_seed_runs(linear_model, cifar10_sample):
    """The last of two chunks gets seed 2**63 - 1, which torch and AutoAttack still take."""
    result = evaluate(linear_model, *cifar10_sample, chunk_size=10, batch_size=10, seed=2**63 - 2, **FAST)
    assert result.seed == 2**63 - 2 and len(result.robust_flags) == 20
