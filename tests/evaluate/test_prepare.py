"""The devices an evaluation accepts, and strict fp32 whatever TF32 settings the caller made."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate import evaluate, format_summary, prepare
from ikl_zoo.evaluate.prepare import resolve_device, strict_fp32


@pytest.mark.parametrize("device", ["mps", "meta", "xla", "tpu", "cuda:x", "cuda:-1", torch.device("meta")])
def test_only_cpu_and_cuda_are_accepted(device):
    choices = r"^(unknown device|device) .*: use auto, cpu, cuda or cuda:N$"
    with pytest.raises(EvaluationError, match=choices) as error:
        resolve_device(device, torch.nn.Identity())
    assert error.value.fix == "use auto, cpu, cuda or cuda:N"  # a field, so train passes it on as it is


def test_cpu_in_any_spelling_is_the_cpu():
    for device in ("cpu", "cpu:0", torch.device("cpu")):
        assert resolve_device(device, torch.nn.Identity()) == torch.device("cpu")


def test_cuda_without_a_gpu_says_to_use_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EvaluationError, match="no CUDA GPU is visible: use --device cpu"):
        resolve_device("cuda:0", torch.nn.Identity())


def test_a_gpu_index_beyond_the_visible_ones_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(EvaluationError, match=r"^device cuda:2 requested but 2 CUDA GPU\(s\) are visible: "
                                              r"use cuda:0 to cuda:1$"):
        resolve_device("cuda:2", torch.nn.Identity())
    assert resolve_device("cuda:1", torch.nn.Identity()) == torch.device("cuda", 1)
    assert resolve_device("cuda", torch.nn.Identity()) == torch.device("cuda", 1)  # LOCAL_RANK 3 of 2 GPUs


needs_new_api = pytest.mark.skipif(
    not hasattr(torch.backends, "fp32_precision"), reason="torch < 2.9 has no fp32_precision settings"
)
SETTINGS = {
    "generic": lambda: torch.backends,
    "cuda": lambda: torch.backends.cudnn,
    "cuda.matmul": lambda: torch.backends.cuda.matmul,
    "cuda.conv": lambda: torch.backends.cudnn.conv,
    "cuda.rnn": lambda: torch.backends.cudnn.rnn,
    "mkldnn": lambda: torch.backends.mkldnn,
    "mkldnn.matmul": lambda: torch.backends.mkldnn.matmul,
    "mkldnn.conv": lambda: torch.backends.mkldnn.conv,
}


def _precisions() -> dict[str, str]:
    return {name: setting().fp32_precision for name, setting in SETTINGS.items()}


def _follow_the_generic_setting() -> list[dict[str, str]]:
    """How the other settings answer a change of the generic one: those left at "none" follow it."""
    current = torch.backends.fp32_precision
    answers = []
    for precision in ("ieee", "tf32"):
        torch.backends.fp32_precision = precision
        answers.append(_precisions())
    torch.backends.fp32_precision = current
    return answers


class PrecisionProbe(torch.nn.Module):
    """A linear classifier that records the fp32 settings in force while the evaluation runs it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, 10)
        self.seen: list[dict[str, str]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(_precisions())
        return self.linear(x.flatten(1))


@needs_new_api
@pytest.mark.parametrize("user_setting", ["generic tf32", "cuBLAS tf32, oneDNN conv bf16"])
def test_evaluate_is_strict_fp32_under_the_new_tf32_api_and_restores_it(user_setting):
    """A training script's `torch.backends.fp32_precision = "tf32"` made reading the legacy flags raise; now
    every setting is "ieee" while the model runs, and afterwards the caller's settings are back: the same
    values, and the same ones still following the generic setting."""
    original = _precisions()
    try:
        if user_setting == "generic tf32":
            torch.backends.fp32_precision = "tf32"
        else:  # settings whose default ("none") can be put back afterwards
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.mkldnn.conv.fp32_precision = "bf16"
        before = _precisions()
        following_before = _follow_the_generic_setting()
        model = PrecisionProbe()
        torch.manual_seed(0)
        x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        result = evaluate(model, x, y, eps=1 / 255, version="custom", attacks=["apgd-ce"],
                          attack_options={"apgd": {"n_iter": 2}}, precision="ieee", progress=False)
        assert result.n_examples == 4 and model.seen
        assert all(set(seen.values()) == {"ieee"} for seen in model.seen), model.seen[0]
        assert _precisions() == before
        assert _follow_the_generic_setting() == following_before
    finally:
        for name in ("cuda.matmul", "mkldnn.conv"):
            if _precisions()[name] != original[name]:
                SETTINGS[name]().fp32_precision = original[name]
        torch.backends.fp32_precision = original["generic"]


def test_older_torch_uses_the_legacy_flags(monkeypatch):
    """torch < 2.9: allow_tf32 off inside, the caller's values after (stand-in flags, so the real ones and
    their coupling to the new settings stay untouched)."""
    cudnn, matmul = SimpleNamespace(allow_tf32=True), SimpleNamespace(allow_tf32=True)
    monkeypatch.setattr(prepare, "_fp32_precision_settings", lambda: [])
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    with strict_fp32():
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
    assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, True)


@needs_new_api
def test_precision_pytorch_leaves_the_settings_and_says_which_changed_ones_are_in_force():
    """A direct AutoAttack call runs at whatever the process set: so does precision pytorch, with a warning
    naming each setting changed from PyTorch's defaults; result.json records the settings in force."""
    original = _precisions()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    options = {"version": "custom", "attacks": ["apgd-ce"], "attack_options": {"apgd": {"n_iter": 2}}}
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        model = PrecisionProbe()
        result = evaluate(model, x, y, eps=1 / 255, **options, progress=False)
        assert result.settings.precision == "pytorch"
        assert all(seen == _precisions() for seen in model.seen)
        assert any("cuda_matmul=tf32 (default: ieee)" in message for message in result.warnings)
        in_force = result.provenance["precision_in_force"]
        assert in_force["cuda_matmul"] == "tf32" and in_force["precision"] == "pytorch"
        assert {"device", "torch", "cuda", "cudnn", "cudnn_conv"} <= set(in_force)
    finally:
        torch.backends.cuda.matmul.fp32_precision = original["cuda.matmul"]
    result = evaluate(PrecisionProbe(), x, y, eps=1 / 255, **options, progress=False)
    assert not any("precision" in message for message in result.warnings)


def test_bf16_runs_the_forward_under_autocast_and_hands_fp32_logits_to_the_attacks():
    seen = []

    class Probe(torch.nn.Linear):
        def forward(self, x):
            output = super().forward(x.flatten(1))
            seen.append(output.dtype)
            return output

    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    result = evaluate(Probe(3 * 32 * 32, 10), x, y, eps=1 / 255, version="custom", attacks=["apgd-ce"],
                      attack_options={"apgd": {"n_iter": 2}}, precision="bf16", progress=False)
    assert set(seen) == {torch.bfloat16}
    assert result.provenance["precision_in_force"]["autocast"] == "bf16"
    assert "bf16 screen" in format_summary(result)
