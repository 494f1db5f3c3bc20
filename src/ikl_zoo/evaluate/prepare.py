"""The model as the evaluator runs it: eval mode, frozen weights, the precision asked for, counted passes.

Precision ``pytorch`` leaves torch's settings as they are (a direct AutoAttack call's), ``ieee`` forces strict
fp32, ``bf16`` runs the forward under bf16 autocast (a screen). Nothing else may change a flag beyond float
noise: frozen weights only skip weight gradients, channels_last, cudnn.benchmark and torch.compile only pick
other kernels.
"""

from __future__ import annotations

import gc
import hashlib
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from ikl_zoo.errors import EvaluationError

CPU_AUTO_BATCH_SIZE = 128
"""``batch_size="auto"`` on a CPU: memory is rarely the limit there, and larger batches gain nothing."""
GPU_MEMORY_FRACTION = 0.6
"""Share of free GPU memory the attack batches may fill; the rest is headroom for the attacks' buffers."""


class CountingModel(nn.Module):
    """Wraps the network: counts forward and backward passes, feeds channels_last, reports each call."""

    def __init__(self, model: nn.Module, *, channels_last: bool = False) -> None:
        super().__init__()
        self.model, self.channels_last = model, channels_last
        self.counts = dict.fromkeys(("forward", "backward", "forward_images", "backward_images"), 0)
        self.on_forward: Callable[[], None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        output = self.model(x)
        self._count("forward", x)
        if output.requires_grad:
            output.register_hook(lambda grad: self._count("backward", grad))
        if self.on_forward is not None:
            self.on_forward()
        return output

    def _count(self, direction: str, batch: torch.Tensor) -> None:
        self.counts[direction] += 1
        self.counts[f"{direction}_images"] += batch.shape[0]


class Bf16Autocast(nn.Module):
    """The model's forward under bf16 autocast, its logits back in fp32: the bf16 screen, wrapped as a direct
    AutoAttack call on the same screen would wrap it."""

    def __init__(self, model: nn.Module, *, device_type: str) -> None:
        super().__init__()
        self.model, self.device_type = model, device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(x).float()


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
"""The devices an evaluation runs on: AutoAttack and the exactness checks are only validated on these."""


def resolve_device(device: str | torch.device | None, model: nn.Module | None = None) -> torch.device:
    """``None``: where the model's weights are; ``"auto"``: this process's GPU if any (torchrun's LOCAL_RANK),
    else the CPU. Anything but the CPU or a visible CUDA GPU is refused with the choices."""
    if device is None:
        parameters = model.parameters() if model is not None else ()
        return next((parameter.device for parameter in parameters), torch.device("cpu"))
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise EvaluationError(f"unknown device {str(device)!r}", fix=f"use {DEVICE_CHOICES}") from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise EvaluationError(f"device {str(device)!r} is not supported", fix=f"use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise EvaluationError(f"device {device} requested but no CUDA GPU is visible", fix="use --device cpu")
    count = torch.cuda.device_count()
    if resolved.index is None:  # under torchrun, each rank its own GPU
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % count)
    if resolved.index >= count:
        visible = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        problem = f"device {device} requested but {count} CUDA GPU(s) are visible"
        raise EvaluationError(problem, fix=f"use {visible}")
    return resolved


def check_fp32(model: nn.Module) -> None:
    """A reported number is an fp32 number: refuse half-precision weights instead of converting them."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise EvaluationError(
                f"the model holds {tensor.dtype} tensors ({name}); robust accuracy is reported in fp32 only: "
                "call model.float() first"
            )


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise EvaluationError("x and y must be torch tensors (images N x C x H x W in [0, 1], int labels)")
    if x.dtype == torch.uint8:
        raise EvaluationError("the images are uint8 (0-255): pass x.float() / 255, as ToTensor() gives")
    if x.dtype != torch.float32:
        raise EvaluationError(f"the images are {x.dtype}: pass float32 images in [0, 1] (x.float())")
    if x.dim() != 4:
        raise EvaluationError(f"the images must be N x C x H x W, got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.dtype == torch.bool:
        raise EvaluationError(
            f"the labels must be {len(x)} integers, got {y.dtype} of shape {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise EvaluationError("no examples to evaluate", fix="pass at least one image")
    if not torch.isfinite(x).all():
        raise EvaluationError("the images contain NaN or infinity", fix="pass images in [0, 1]")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise EvaluationError(
            f"the images lie in [{low:.3g}, {high:.3g}], not [0, 1]: AutoAttack's threat model is defined on "
            "[0, 1] images; pass unnormalised images and put the normalisation inside the model"
        )
    if int(y.min()) < 0:
        raise EvaluationError("the labels must be class indices >= 0")


def _fp32_precision_settings() -> list[object]:
    """torch.backends' ``fp32_precision`` settings (torch >= 2.9; none before), parents first; ``mkldnn``
    itself is left out: its setter writes the generic one."""
    if not hasattr(backends := torch.backends, "fp32_precision"):
        return []
    cudnn, dnn = backends.cudnn, backends.mkldnn
    return [backends, cudnn, backends.cuda.matmul, cudnn.conv, cudnn.rnn, dnn.matmul, dnn.conv, dnn.rnn]


@contextmanager
def strict_fp32() -> Iterator[None]:
    """float32 math without TF32 or bf16 for cuBLAS, cuDNN and oneDNN; the caller's settings after.

    On torch >= 2.9 through ``fp32_precision`` (reading the legacy ``allow_tf32`` raises there once the new
    API is used; a setting at "none" follows its parent), before it through ``allow_tf32``.
    """
    strict = [(setting, "fp32_precision", "ieee") for setting in _fp32_precision_settings()] or [
        (torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False)
    ]
    saved = []  # read one by one: a parent's new value may change what a child reads
    try:
        for setting, name, value in strict:
            if (before := getattr(setting, name)) != value:
                saved.append((setting, name, before))
                setattr(setting, name, value)
        yield
    finally:
        for setting, name, value in reversed(saved):
            setattr(setting, name, value)


PYTORCH_DEFAULTS = {
    "cudnn_conv": "tf32", "cuda_matmul": "ieee", "mkldnn_conv": "ieee", "mkldnn_matmul": "ieee",
    "float32_matmul_precision": "highest",
}
"""The fp32 precision a fresh process computes convolutions and matmuls at (TF32 convolutions on GPUs)."""


def fp32_precision_in_force() -> dict[str, str]:
    """Each backend's fp32 precision now; a setting at "none" follows its parent (the last: ieee)."""
    backends = torch.backends
    if not hasattr(backends, "fp32_precision"):  # torch < 2.9; the new API's matmul setting covers this one
        tf32 = {"cudnn_conv": backends.cudnn.allow_tf32, "cuda_matmul": backends.cuda.matmul.allow_tf32}
        in_force = {name: "tf32" if on else "ieee" for name, on in tf32.items()}
        return {**in_force, "float32_matmul_precision": torch.get_float32_matmul_precision()}
    cudnn, dnn = backends.cudnn, backends.mkldnn
    chains = {"cudnn_conv": (cudnn.conv, cudnn), "cuda_matmul": (backends.cuda.matmul,),
              "mkldnn_conv": (dnn.conv,), "mkldnn_matmul": (dnn.matmul,)}
    values = {name: [part.fp32_precision for part in (*chain, backends)] for name, chain in chains.items()}
    return {name: next((v for v in found if v != "none"), "ieee") for name, found in values.items()}


def precision_warnings(precision: str) -> list[str]:
    """Precision ``pytorch`` in a process that changed PyTorch's defaults: which settings are in force."""
    in_force, default = fp32_precision_in_force().items(), PYTORCH_DEFAULTS
    changed = [f"{key}={value} (default: {default[key]})" for key, value in in_force if value != default[key]]
    return [f"precision pytorch, with settings changed from PyTorch's defaults: {', '.join(changed)}"] * bool(
        precision == "pytorch" and changed
    )


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def precision_report(precision: str, device: torch.device) -> dict[str, object]:
    """What computed the flags: the settings in force, the device, torch, CUDA and cuDNN versions."""
    cudnn = torch.backends.cudnn.version() if device.type == "cuda" else None
    return {
        "precision": precision, "autocast": {"bf16": "bf16"}.get(precision), **fp32_precision_in_force(),
        "device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
    }


@contextmanager
def evaluation_mode(
    model: nn.Module, device: torch.device, *, channels_last: bool = False, precision: str = "ieee"
) -> Iterator[None]:
    """Eval mode, frozen weights, the precision's settings, cudnn.benchmark and the memory layout; all
    restored after."""
    modes = [(module, module.training) for module in model.modules()]
    requires_grad = [p.requires_grad for p in model.parameters()]
    cudnn, benchmark = torch.backends.cudnn, torch.backends.cudnn.benchmark
    model.eval().requires_grad_(False)
    cudnn.benchmark = benchmark or device.type == "cuda"
    if channels_last:  # the weights too, or cudnn converts layouts at every convolution
        model.to(memory_format=torch.channels_last)
    try:
        fp32 = strict_fp32() if precision == "ieee" else nullcontext()
        with fp32, torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        for module, training in modes:  # per module: a wrapper's mode may differ from its parts'
            module.training = training
        for parameter, flag in zip(model.parameters(), requires_grad, strict=True):
            parameter.requires_grad_(flag)
        cudnn.benchmark = benchmark
        if channels_last:
            model.to(memory_format=torch.contiguous_format)


def weights_digest(model: nn.Module) -> str:
    """sha256 over the state dict's names, dtypes, shapes and bytes: which weights were evaluated."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    digest = hashlib.sha256(x.detach().to("cpu").contiguous().numpy().tobytes())
    digest.update(y.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def auto_batch_size(
    model: nn.Module, sample: torch.Tensor, *, device: torch.device, limit: int, channels_last: bool
) -> int:
    """The largest batch (up to ``limit``) whose forward and input-gradient pass fits the free GPU memory,
    scaled from a small probe batch with headroom for the attacks' buffers."""
    if device.type != "cuda":
        return min(limit, CPU_AUTO_BATCH_SIZE)
    probe = min(limit, 16)
    free_memory()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    x = sample[:1].expand(probe, *sample.shape[1:]).clone().to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with torch.enable_grad():
        loss = model(x).float().sum()
        (grad,) = torch.autograd.grad(loss, x)
    per_image = max((torch.cuda.max_memory_allocated(device) - baseline) / probe, 1.0)
    del x, loss, grad
    free_memory()
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(limit, int(GPU_MEMORY_FRACTION * free / per_image)))


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
