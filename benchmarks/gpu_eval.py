"""The evaluator's speed at each precision on the GPU, against a direct ``pyautoattack`` call, as one table.

1. Throughput: one forward + input-gradient pass (what every attack step costs) of WRN-28-10 (SiLU) and
   WRN-34-10 at each precision (ieee: strict fp32; pytorch: PyTorch's defaults, TF32 convolutions on Ampere
   and later; bf16: autocast), as the evaluator runs it (frozen weights, channels_last, cudnn.benchmark):
   images/s and achieved TFLOP/s against the card's dense peak at that precision.
2. APGD-CE as standard AutoAttack runs it on up to 1,000 images of the WRN-28-10, ikl-zoo against a direct
   ``run_standard_evaluation`` at the same precision and batch size: time ratio and flag agreement.
3. Flags between precisions on a model that is actually robust: a WRN-16-4 PGD-trained for a few hundred
   steps on the 20 real CIFAR-10 images foolbox ships (jittered copies); APGD-CE and APGD-T at each precision,
   and compiled against not compiled.
4. Standard AutoAttack on 10,000 images of the WRN-28-10, extrapolated: pyautoattack's pass counts per attack
   (``ikl_zoo.evaluate.estimate.attack_passes``: APGD-CE 101, APGD-T 9 x 101, FAB-T 9 x 101 forward+backward
   plus as many forwards, Square 5,001 forwards) times the throughput of part 1, times the overhead the
   APGD-CE run of part 2 measured over its pure passes, with the survivors of a robust WRN-28-10
   (Cui2023Decoupled: 92.2% clean, 67.7% after AutoAttack: 92% reach APGD-CE, 70% the later attacks).
5. Compile: torch.compile on and off, throughput of the WRN-28-10 at precision pytorch (last: compiling it
   takes the longest, and the table is printed before).

No checkpoint is reachable on the benchmark machine: the WRN-28-10 and WRN-34-10 have random weights (their
labels are their own clean predictions, so every image is attacked); accuracies of part 2 are not robustness
results.

    python benchmarks/gpu_eval.py --budget-s 250                   # one H100/H200
    python benchmarks/gpu_eval.py --device cpu --tiny               # the CPU smoke run (a minute)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext

import torch

PRECISIONS = ("ieee", "pytorch", "bf16")
PEAK_TFLOPS = {
    "H100": {"ieee": 67, "pytorch": 495, "bf16": 989},
    "H200": {"ieee": 67, "pytorch": 495, "bf16": 989},
    "A100": {"ieee": 19.5, "pytorch": 156, "bf16": 312},
}
"""Dense peaks of the SXM cards (fp32, TF32, bf16 tensor cores), from NVIDIA's data sheets."""
SURVIVORS = {"apgd-ce": 0.92, "apgd-t": 0.70, "fab-t": 0.68, "square": 0.68}
"""Share of the 10,000 images each stage attacks, for a robust WRN-28-10 (92% clean, 68% robust)."""
rows: list[list[str]] = []


def log(message: str) -> None:
    print(message, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=250.0, help="Wall-clock budget (250).")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for the smoke run.")
    parser.add_argument("--tiny", action="store_true", help="Small networks and counts: the CPU smoke run.")
    parser.add_argument("--batch-size", type=int, default=200, help="Both sides of part 2 (200).")
    parser.add_argument("--max-images", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=300)
    return parser.parse_args()


def tiled_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The 20 real images foolbox ships, tiled with a +-2/255 jitter so copies differ; their labels."""
    from ikl_zoo.data import foolbox_sample

    images, labels = foolbox_sample("cifar10")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    repeats = math.ceil(n / len(x))
    x, y = x.repeat(repeats, 1, 1, 1)[:n], torch.as_tensor(labels).long().repeat(repeats)[:n]
    jitter = (torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 2 / 255
    return (x + jitter).clamp(0, 1).contiguous(), y


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bf16Screen(torch.nn.Module):
    """A direct call's bf16 screen, written as a user would: the forward under autocast, fp32 logits."""

    def __init__(self, inner: torch.nn.Module, device_type: str) -> None:
        super().__init__()
        self.inner, self.device_type = inner, device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.inner(x).float()


def direct_precision(model: torch.nn.Module, precision: str, device: torch.device):
    """The model and the context a direct AutoAttack call at ``precision`` runs under."""
    from ikl_zoo.evaluate.prepare import strict_fp32

    if precision == "bf16":
        return Bf16Screen(model, device.type), nullcontext()
    return model, strict_fp32() if precision == "ieee" else nullcontext()


def pass_seconds(model, x, device, *, precision: str, compile_model: bool = False) -> dict[str, float]:
    """Seconds per image of a forward+input-gradient pass and of a forward pass, and FLOPs per image, as the
    evaluator runs the model (its evaluation mode at ``precision``, channels_last on a GPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ikl_zoo.evaluate import prepare

    channels_last = device.type == "cuda"
    with prepare.evaluation_mode(model, device, channels_last=channels_last, precision=precision):
        network = prepare.with_precision(torch.compile(model) if compile_model else model, precision, device)
        xb = x.to(device).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )

        def step() -> None:
            inputs = xb.clone().requires_grad_(True)
            torch.autograd.grad(network(inputs).logsumexp(1).sum(), inputs)

        with FlopCounterMode(display=False) as counter:  # .backward(): the counter fails on autograd.grad
            inputs = xb[:2].clone().requires_grad_(True)
            (model if compile_model else network)(inputs).logsumexp(1).sum().backward()
        seconds = {"flops": counter.get_total_flops() / 2}
        for name, action in (("backward", step), ("forward", lambda: network(xb))):
            with torch.enable_grad() if name == "backward" else torch.no_grad():
                action()
                synchronize(device)
                started = time.perf_counter()
                for _ in range(3):
                    action()
                synchronize(device)
                seconds[name] = (time.perf_counter() - started) / 3 / len(xb)
    return seconds


def run_direct(
    model, x, y, *, precision, device, eps, attacks, options, batch_size, seed=0
) -> tuple[list, float]:
    """AutoAttack called directly, its settings set as its README does, at ``precision``."""
    from pyautoattack import AutoAttack

    wrapped, context = direct_precision(model, precision, device)
    adversary = AutoAttack(
        wrapped, norm="Linf", eps=eps, version="custom", attacks=list(attacks), seed=seed, device=device
    )
    for attack_object, settings in options.items():
        for name, value in settings.items():
            setattr(getattr(adversary, attack_object), name, value)
    with context:
        synchronize(device)
        started = time.perf_counter()
        _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        synchronize(device)
    return (y_adv.cpu() == y).tolist(), time.perf_counter() - started


def run_ikl_zoo(model, x, y, *, precision, device, eps, attacks, options, batch_size, compile_model=False):
    from ikl_zoo.evaluate import evaluate

    synchronize(device)
    started = time.perf_counter()
    result = evaluate(
        model,
        x,
        y,
        eps=eps,
        seed=0,
        batch_size=batch_size,
        chunk_size=len(x),
        device=str(device),
        compile=compile_model,
        precision=precision,
        progress=False,
        version="custom",
        attacks=list(attacks),
        attack_options=options,
    )
    synchronize(device)
    return result, time.perf_counter() - started


def agreement(a: list[bool], b: list[bool]) -> str:
    return f"{sum(left == right for left, right in zip(a, b, strict=True))}/{len(a)}"


def peak(device: torch.device, precision: str) -> float | None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return next((peaks[precision] for card, peaks in PEAK_TFLOPS.items() if card in name), None)


def part_throughput(models: dict, device: torch.device, batch: int) -> dict:
    """Part 1: one row per model and precision; returns the seconds per pass."""
    measured = {}
    x, _ = tiled_images(batch)
    for label, model in models.items():
        for precision in PRECISIONS:
            seconds = pass_seconds(model, x, device, precision=precision)
            measured[label, precision] = seconds
            tflops = seconds["flops"] / seconds["backward"] / 1e12
            card = peak(device, precision)
            of_peak = f"{100 * tflops / card:.0f}% of {card:g}" if card else "-"
            add_row(
                f"fwd+input-grad {label}",
                precision,
                f"{1 / seconds['backward']:,.0f} img/s",
                f"{tflops:.1f} TFLOP/s ({of_peak})",
            )
    return measured


def add_row(what: str, precision: str, figure: str, detail: str) -> None:
    rows.append([what, precision, figure, detail])
    log(f"  {what} | {precision} | {figure} | {detail}")


def part_apgd(model, device, *, n: int, batch_size: int, eps: float) -> dict[str, float]:
    """Part 2: APGD-CE, ikl-zoo against a direct call at the same precision and batch size; returns each
    precision's measured seconds per image."""
    x, _ = tiled_images(n, seed=1)
    with torch.no_grad():
        y = torch.cat([model(x[i : i + 500].to(device)).argmax(1).cpu() for i in range(0, n, 500)])
    options = {"apgd": {"n_restarts": 1}}
    per_image = {}
    for precision in ("pytorch", "bf16"):
        common = dict(
            precision=precision,
            device=device,
            eps=eps,
            attacks=["apgd-ce"],
            options=options,
            batch_size=batch_size,
        )
        direct, direct_s = run_direct(model, x, y, **common)
        result, ours_s = run_ikl_zoo(model, x, y, **common)
        per_image[precision] = ours_s / n
        add_row(
            f"APGD-CE {n} images, ikl-zoo vs direct",
            precision,
            f"{ours_s:.1f} s vs {direct_s:.1f} s ({ours_s / direct_s:.3f}x)",
            f"flags agree {agreement(direct, result.robust_flags)}",
        )
    return per_image


def apgd_images(measured: dict, args, *, left: float) -> int:
    """Images for part 2 in 40% of the time left: both sides at pytorch and bf16, 101 passes an image each,
    with 30% for the attack's own work; a multiple of 100, at least 100."""
    passes = [measured.get(("WRN-28-10", p), {}).get("backward", math.inf) for p in ("pytorch", "bf16")]
    fit = int(0.4 * left / (2 * 101 * 1.3 * sum(passes)))
    return max(100, min(args.max_images, fit // 100 * 100))


def train_robust(device: torch.device, *, steps: int, tiny: bool, eps: float) -> torch.nn.Module:
    """A small WideResNet PGD-trained (5 steps) on jittered copies of the 20 real images: robust on them."""
    from ikl_zoo.zoo.architectures import WideResNet

    torch.manual_seed(0)
    model = WideResNet(depth=10 if tiny else 16, widen_factor=1 if tiny else 4, num_classes=10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for step in range(steps):
        x, y = (t.to(device) for t in tiled_images(128, seed=100 + step))
        delta = (torch.rand_like(x) * 2 - 1) * eps
        for _ in range(5):
            delta.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model((x + delta).clamp(0, 1)), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + eps / 2 * grad.sign()).clamp(-eps, eps)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model((x + delta).clamp(0, 1)), y).backward()
        optimizer.step()
    return model.eval()


def part_precisions(device, *, n: int, steps: int, tiny: bool, eps: float, batch_size: int) -> None:
    """Part 3: flags of APGD-CE + APGD-T at each precision, and compiled, on a robust model."""
    model = train_robust(device, steps=steps, tiny=tiny, eps=eps)
    x, y = tiled_images(n, seed=2)
    options = {"apgd": {"n_restarts": 1}, "apgd_targeted": {"n_target_classes": 3}}
    common = dict(
        device=device, eps=eps, attacks=["apgd-ce", "apgd-t"], options=options, batch_size=batch_size
    )
    runs = {}
    for precision, compile_model in (*((p, False) for p in PRECISIONS), ("pytorch", True)):
        result, seconds = run_ikl_zoo(model, x, y, precision=precision, compile_model=compile_model, **common)
        runs[precision, compile_model] = result
        label = f"robust WRN, APGD-CE+APGD-T(3), {n} images{', compiled' if compile_model else ''}"
        add_row(
            label,
            precision,
            f"{seconds:.1f} s",
            f"clean {100 * result.clean_acc:.1f}%, robust {100 * result.robust_acc:.1f}%",
        )
    reference = runs["ieee", False].robust_flags
    for (precision, compile_model), result in runs.items():
        if (precision, compile_model) != ("ieee", False):
            what = "compiled vs not" if compile_model else "vs ieee"
            versus = runs["pytorch", False].robust_flags if compile_model else reference
            add_row(f"robust WRN flags {what}", precision, agreement(versus, result.robust_flags), "")


def part_extrapolate(measured: dict, apgd_per_image: dict, device: torch.device) -> None:
    """Part 4: standard AutoAttack on 10,000 images of the WRN-28-10 from pass counts (module docstring)."""
    from pyautoattack import AutoAttack

    from ikl_zoo.evaluate.estimate import attack_passes, format_duration

    adversary = AutoAttack(torch.nn.Identity(), norm="Linf", eps=8 / 255, version="standard", device="cpu")
    for precision in PRECISIONS:
        seconds = measured.get(("WRN-28-10", precision))
        if seconds is None:
            continue
        pure_apgd = attack_passes(adversary, "apgd-ce")[0] * seconds["backward"]
        measured_on = precision if precision in apgd_per_image else "pytorch"
        overhead = apgd_per_image.get(measured_on, pure_apgd) / pure_apgd
        total = 10_000 * seconds["forward"]  # the clean pass
        for attack in adversary.attacks_to_run:
            backward, forward = attack_passes(adversary, attack)
            cost = backward * seconds["backward"] + forward * seconds["forward"]
            total += 10_000 * SURVIVORS[attack] * overhead * cost
        how = f"x{overhead:.2f} attack overhead (part 2, {measured_on})" if apgd_per_image else "pure passes"
        add_row(
            "standard AA, WRN-28-10, 10,000 images (extrapolated)", precision, format_duration(total), how
        )


def part_compile(model, x, device, measured: dict) -> None:
    """Part 5: the compiled model's throughput at precision pytorch, against part 1's uncompiled figure."""
    seconds = pass_seconds(model, x, device, precision="pytorch", compile_model=True)["backward"]
    plain = measured.get(("WRN-28-10", "pytorch"), {}).get("backward")
    versus = f"{plain / seconds:.2f}x not compiled" if plain else ""
    add_row("fwd+input-grad WRN-28-10, compiled", "pytorch", f"{1 / seconds:,.0f} img/s", versus)


def run_part(name: str, failures: list[str], action: Callable[[], object]) -> object | None:
    """Runs one part; a failure prints its traceback and the next part still runs."""
    try:
        return action()
    except Exception:  # one broken part must not cost the others' figures
        log(f"  {name} FAILED:\n{traceback.format_exc().rstrip()}")
        failures.append(name)
        return None


def print_table() -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(4)] if rows else [0] * 4
    log("\n| measurement | precision | figure | detail |\n|---|---|---|---|")
    for row in rows:
        log("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")


def main() -> int:
    args = parse_args()
    started, device = time.perf_counter(), torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("no CUDA GPU visible: run with --device cpu --tiny for the smoke run")
        return 2
    import pyautoattack

    import ikl_zoo
    from ikl_zoo.zoo.architectures import WideResNet
    from ikl_zoo.zoo.registry import create_model

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(
        f"device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}, pyautoattack "
        f"{pyautoattack.__version__}, ikl-zoo {ikl_zoo.__version__}; random weights (see the docstring)"
    )
    torch.manual_seed(0)
    if args.tiny:
        models = {"WRN-28-10": WideResNet(depth=10, widen_factor=1, num_classes=10)}
    else:
        models = {
            label: create_model(f"Cui2023Decoupled_{label}", dataset="cifar10")
            for label in ("WRN-28-10", "WRN-34-10")
        }
    models = {label: model.to(device).eval() for label, model in models.items()}
    failures: list[str] = []
    batch = 16 if args.tiny else 256
    log("1. throughput")
    measured = run_part("1. throughput", failures, lambda: part_throughput(models, device, batch)) or {}
    log("2. APGD-CE, ikl-zoo vs direct")
    n_apgd = (
        8 if args.tiny else apgd_images(measured, args, left=args.budget_s - (time.perf_counter() - started))
    )
    apgd = (
        run_part(
            "2. APGD-CE",
            failures,
            lambda: part_apgd(
                models["WRN-28-10"], device, n=n_apgd, batch_size=min(args.batch_size, n_apgd), eps=8 / 255
            ),
        )
        or {}
    )
    log("3. flags between precisions, robust model")
    n_robust, steps = (10, 3) if args.tiny else (500, args.train_steps)
    run_part(
        "3. precisions",
        failures,
        lambda: part_precisions(
            device,
            n=n_robust,
            steps=steps,
            tiny=args.tiny,
            eps=8 / 255,
            batch_size=min(args.batch_size, n_robust),
        ),
    )
    log("4. standard AutoAttack extrapolated")
    run_part("4. extrapolation", failures, lambda: part_extrapolate(measured, apgd, device))
    print_table()
    left = args.budget_s - (time.perf_counter() - started)
    if left > 90 or args.tiny:
        log("5. compile (WRN-28-10, pytorch)")
        x, _ = tiled_images(batch)
        run_part("5. compile", failures, lambda: part_compile(models["WRN-28-10"], x, device, measured))
    else:
        log(f"5. compile skipped: {left:.0f} s left of --budget-s {args.budget_s:g}")
    log(
        f"total {time.perf_counter() - started:.1f} s"
        + (f"; FAILED: {', '.join(failures)}" if failures else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
