"""ikl-zoo's evaluator against a direct batch-200 ``pyautoattack`` call on a WRN-28-10 at real size (GPU).

Three measurements in one run, both sides on the same images with the same seed:

1. Throughput: time and FLOPs of one forward + input-gradient pass per image (what every attack step
   costs), in strict fp32 (NCHW and channels_last) and in PyTorch's default precision (TF32
   convolutions on Ampere and later). Achieved TFLOP/s against the card's peak tells how much any fp32
   evaluator can gain.
2. APGD-CE as standard AutoAttack runs it: the direct call ``run_standard_evaluation(batch_size=200)`` in
   strict fp32 against ``evaluate(batch_size="auto")`` (frozen weights, cudnn.benchmark, channels_last,
   optionally torch.compile); and the direct call again under PyTorch's default precision (TF32
   convolutions), to show what a user's unmodified call computes and how many flags that changes.
3. The standard suite (APGD-CE, APGD-T, FAB-T, Square) with fewer target classes and queries, timed per
   attack on both sides, then scaled to the standard settings (9 targets, 5000 queries): the estimated
   ratio of a real standard run. FAB-T is where frozen weights pay: the direct call's FAB computes weight
   gradients at every step.

No checkpoint can be downloaded on the benchmark machine, so the WRN-28-10 (DeepMind/RobustBench
architecture of Cui2023Decoupled_WRN-28-10, SiLU) has random weights, seeded, and the labels are its
own clean predictions so every image is attacked. Its accuracies are not a robustness result. The
images are the 20 real CIFAR-10 test images foolbox ships, tiled (with a +-1/255 jitter so copies
differ) to counts chosen to fit ``--budget-s``.

    python benchmarks/gpu_eval.py                      # about 5 minutes on an H100
    python benchmarks/gpu_eval.py --budget-s 120 --skip-suite --compile --check-layouts
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

APGD_STEPS = 102
"""Model passes APGD-CE makes per image (100 iterations, the start point, the final check)."""
FAB_STEPS_PER_TARGET = 170
"""FAB-T per image and target class, in forward+backward units: 100 iterations of one forward+backward
and one more forward."""
STANDARD_TARGETS = 9
STANDARD_QUERIES = 5000
SUITE = ["apgd-ce", "apgd-t", "fab-t", "square"]
ATTACK_OBJECTS = {"apgd-ce": "apgd", "apgd-t": "apgd_targeted", "fab-t": "fab", "square": "square"}


def log(message: str) -> None:
    print(message, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budget-s", type=float, default=300.0, help="Wall-clock budget; sets the image counts (300)."
    )
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--direct-batch-size", type=int, default=200)
    parser.add_argument("--suite-targets", type=int, default=1, help="Target classes of APGD-T and FAB-T.")
    parser.add_argument("--suite-queries", type=int, default=300, help="Square's queries.")
    parser.add_argument("--skip-suite", action="store_true", help="Only the throughput and APGD-CE parts.")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model on ikl-zoo's side.")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument(
        "--check-layouts",
        action="store_true",
        help="Also compare flags of plain, channels_last and compiled runs on 128 images.",
    )
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument(
        "--architecture",
        default="Cui2023Decoupled_WRN-28-10",
        help="Registry id whose architecture gets random weights (demo-resnet18: a CPU smoke run).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="cuda", help="cuda (default), or cpu for a smoke run of the script."
    )
    return parser.parse_args()


def tiled_images(n: int) -> torch.Tensor:
    from ikl_zoo.data import foolbox_sample

    images, _ = foolbox_sample("cifar10")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    x = x.repeat(math.ceil(n / len(x)), 1, 1, 1)[:n]
    generator = torch.Generator().manual_seed(0)
    jitter = (torch.rand(x.shape, generator=generator) * 2 - 1) / 255
    return (x + jitter).clamp(0, 1).contiguous()


def build_model(architecture: str, device: torch.device, seed: int) -> torch.nn.Module:
    from ikl_zoo.zoo.registry import create_model

    torch.manual_seed(seed)
    return create_model(architecture, dataset="cifar10").to(device).eval()


@torch.no_grad()
def own_predictions(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Labels the model gets right in strict fp32 (TF32 could flip a borderline one, left unattacked)."""
    with precision(tf32=False):
        return torch.cat([model(x[i : i + 500].to(device)).argmax(1).cpu() for i in range(0, len(x), 500)])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision(*, tf32: bool) -> AbstractContextManager[None]:
    """Strict fp32 as the evaluator enforces it, or the process's defaults: PyTorch's are TF32 convolutions
    on Ampere and later GPUs, which is what an unmodified direct call computes with."""
    from ikl_zoo.evaluate.prepare import strict_fp32

    return nullcontext() if tf32 else strict_fp32()


def input_gradient_step(model: torch.nn.Module, xb: torch.Tensor) -> None:
    loss = model(xb).logsumexp(1).sum()
    torch.autograd.grad(loss, xb)


def flops_per_image(model: torch.nn.Module, xb: torch.Tensor) -> float | None:
    """FLOPs of one forward + input-gradient pass per image; None where the counter fails (the timing
    does not depend on it)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            input_gradient_step(model, xb[:2])
        return counter.get_total_flops() / 2
    except Exception as error:  # a missing FLOP formula must not cost the timings
        log(f"  (FLOP count failed: {type(error).__name__}: {error})")
        return None


def throughput(
    model: torch.nn.Module, x: torch.Tensor, device: torch.device, *, channels_last: bool, tf32: bool
) -> tuple[float, float | None]:
    """Seconds per image and FLOPs per image of one forward + input-gradient pass (frozen weights)."""
    frozen = [p.requires_grad_(False) for p in model.parameters()]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    xb = x.to(device).contiguous(memory_format=memory_format).requires_grad_(True)
    try:
        with precision(tf32=tf32):
            flops = flops_per_image(model, xb)
            for step in range(5):
                if step == 2:
                    synchronize(device)
                    start = time.perf_counter()
                input_gradient_step(model, xb)
            synchronize(device)
            seconds = (time.perf_counter() - start) / 3 / len(xb)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
        model.to(memory_format=torch.contiguous_format)
    return seconds, flops


def suite_options(targets: int, queries: int) -> dict[str, dict[str, int]]:
    return {
        "apgd": {"n_restarts": 1},
        "apgd_targeted": {"n_target_classes": targets},
        "fab": {"n_target_classes": targets},
        "square": {"n_queries": queries},
    }


def scale_to_standard(attack: str, targets: int, queries: int) -> float:
    """Factor from the shortened suite's attack time to the standard settings' (linear in targets/queries)."""
    if attack in ("apgd-t", "fab-t"):
        return STANDARD_TARGETS / targets
    if attack == "square":
        return STANDARD_QUERIES / queries
    return 1.0


@contextmanager
def timed_attacks(adversary, device: torch.device) -> Iterator[dict[str, float]]:
    """Time each attack object's ``perturb`` inside the direct call (wrapping only; nothing else changes)."""
    timings: dict[str, float] = {}

    def wrap(name: str, perturb: Callable) -> Callable:
        def timed(*args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            try:
                return perturb(*args, **kwargs)
            finally:
                synchronize(device)
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - start

        return timed

    for attack_object in set(ATTACK_OBJECTS.values()):
        target = getattr(adversary, attack_object)
        target.perturb = wrap(attack_object, target.perturb)
    yield timings


def run_direct(
    model, x, y, *, eps, attacks, options, seed, batch_size, device
) -> tuple[list[bool], float, dict[str, float]]:
    """AutoAttack as its README customises it; per attack-object times; strict or default precision is
    the caller's."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(
        model, norm="Linf", eps=eps, version="custom", attacks=list(attacks), seed=seed, device=device
    )
    for attack_object, settings in options.items():
        for name, value in settings.items():
            setattr(getattr(adversary, attack_object), name, value)
    with timed_attacks(adversary, device) as per_object:
        synchronize(device)
        start = time.perf_counter()
        _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        synchronize(device)
        seconds = time.perf_counter() - start
    per_attack = {attack: per_object.get(ATTACK_OBJECTS[attack], 0.0) for attack in attacks}
    return (y_adv.cpu() == y).tolist(), seconds, per_attack


def run_ikl_zoo(model, x, y, *, eps, attacks, options, seed, device, channels_last, compile_model,
                progress=False):
    from ikl_zoo.evaluate import evaluate

    synchronize(device)
    start = time.perf_counter()
    result = evaluate(
        model, x, y, eps=eps, seed=seed, batch_size="auto", chunk_size=len(x), device=device,
        channels_last=channels_last, compile_model=compile_model, progress=progress,
        version="custom", attacks=list(attacks), attack_options=options,
    )
    synchronize(device)
    return result, time.perf_counter() - start


def agreement(a: list[bool], b: list[bool]) -> int:
    return sum(left == right for left, right in zip(a, b, strict=True))


def percent(flags: list[bool]) -> str:
    return f"{100 * sum(flags) / len(flags):.2f}%"


def part_throughput(model, device: torch.device, batch: int) -> float:
    log(f"1. throughput: one forward + input-gradient pass, batch {batch}, frozen weights")
    x = tiled_images(batch)
    seconds_fp32 = 0.0
    for label, channels_last, tf32 in (
        ("fp32 NCHW", False, False),
        ("fp32 channels_last", True, False),
        ("default channels_last", True, True),
    ):
        seconds, flops = throughput(model, x, device, channels_last=channels_last, tf32=tf32)
        seconds_fp32 = seconds_fp32 or seconds
        rate = "FLOPs not counted" if flops is None else (
            f"{flops / 1e9:.1f} GFLOP/image, {flops / seconds / 1e12:.1f} TFLOP/s achieved"
        )
        log(f"  {label:22s} {1e3 * seconds:.3f} ms/image, {rate}")
    return seconds_fp32


def part_apgd(model, x, y, args, device) -> float:
    """Prints the APGD-CE comparison; returns the direct strict call's seconds per image."""
    n = len(x)
    options = {"apgd": {"n_restarts": 1}}
    threat = f"Linf {args.eps * 255:.3g}/255, seed {args.seed}"
    log(f"2. APGD-CE as standard AutoAttack runs it, {n} images, {threat}")
    with precision(tf32=False):
        direct, direct_s, _ = run_direct(
            model, x, y, eps=args.eps, attacks=["apgd-ce"], options=options, seed=args.seed,
            batch_size=args.direct_batch_size, device=device,
        )
        batch = args.direct_batch_size
        log(f"  direct, batch {batch}, strict fp32: {direct_s:.1f} s, {percent(direct)} robust")
        result, ours_s = run_ikl_zoo(
            model, x, y, eps=args.eps, attacks=["apgd-ce"], options=options, seed=args.seed, device=device,
            channels_last=not args.no_channels_last, compile_model=args.compile,
        )
    log(
        f"  ikl-zoo, batch {result.batch_size}, strict fp32: {ours_s:.1f} s, {percent(result.robust_flags)} "
        f"robust, {result.model_passes['backward']:,} backward passes; "
        f"flags agree {agreement(direct, result.robust_flags)}/{n}"
    )
    log(f"  speed-up over the direct call: {direct_s / ours_s:.2f}x")
    with precision(tf32=True):
        default, default_s, _ = run_direct(
            model, x, y, eps=args.eps, attacks=["apgd-ce"], options=options, seed=args.seed,
            batch_size=args.direct_batch_size, device=device,
        )
    log(
        f"  direct, batch {args.direct_batch_size}, PyTorch default precision (TF32 convolutions): "
        f"{default_s:.1f} s ({direct_s / default_s:.2f}x the strict call), {percent(default)} robust; "
        f"flags agree with strict fp32 on {agreement(direct, default)}/{n}"
    )
    return direct_s / n


def part_suite(model, x, y, args, device) -> None:
    n, targets, queries = len(x), args.suite_targets, args.suite_queries
    options = suite_options(targets, queries)
    log(
        f"3. standard suite shortened ({targets} target class(es), {queries} Square queries), {n} images, "
        "strict fp32"
    )
    with precision(tf32=False):
        direct, direct_s, direct_times = run_direct(
            model, x, y, eps=args.eps, attacks=SUITE, options=options, seed=args.seed,
            batch_size=args.direct_batch_size, device=device,
        )
        result, ours_s = run_ikl_zoo(
            model, x, y, eps=args.eps, attacks=SUITE, options=options, seed=args.seed, device=device,
            channels_last=not args.no_channels_last, compile_model=args.compile,
        )
    log(f"  {'attack':8s} {'direct s':>9s} {'ikl-zoo s':>10s} {'ratio':>6s} {'robust after (ikl-zoo)':>24s}")
    direct_standard = ours_standard = 0.0
    for attack in SUITE:
        theirs, ours = direct_times[attack], result.timings.get(attack, 0.0)
        factor = scale_to_standard(attack, targets, queries)
        direct_standard += factor * theirs
        ours_standard += factor * ours
        ratio = f"{theirs / ours:.2f}" if ours > 0 else "-"
        log(f"  {attack:8s} {theirs:9.1f} {ours:10.1f} {ratio:>6s} {100 * result.per_attack[attack]:23.2f}%")
    log(
        f"  whole call: direct {direct_s:.1f} s, ikl-zoo {ours_s:.1f} s ({direct_s / ours_s:.2f}x); robust "
        f"{percent(direct)} vs {percent(result.robust_flags)}; "
        f"flags agree {agreement(direct, result.robust_flags)}/{n}"
    )
    log(
        f"  scaled to standard settings (x{STANDARD_TARGETS / targets:g} targets, "
        f"x{STANDARD_QUERIES / queries:g} queries): direct {direct_standard:.0f} s, "
        f"ikl-zoo {ours_standard:.0f} s, estimated speed-up {direct_standard / ours_standard:.2f}x"
    )


def check_layouts(model, x, y, *, eps, seed, device) -> None:
    """Flags of plain, channels_last and compiled runs on 128 images (fp32 noise may flip borderline ones)."""
    x, y = x[:128], y[:128]
    n, runs = len(x), {}
    options = {"apgd": {"n_restarts": 1}}
    variants = (("plain", False, False), ("channels_last", True, False), ("compiled", True, True))
    for name, channels_last, compile_model in variants:
        result, seconds = run_ikl_zoo(
            model, x, y, eps=eps, attacks=["apgd-ce"], options=options, seed=seed, device=device,
            channels_last=channels_last, compile_model=compile_model, progress=False,
        )
        runs[name] = result.robust_flags
        survived = sum(result.robust_flags)
        log(f"  {name:14s} robust {survived:3d}/{n} in {seconds:6.1f} s, batch {result.batch_size}")
    for name in ("channels_last", "compiled"):
        log(f"  {name} vs plain: {agreement(runs['plain'], runs[name])}/{n} flags equal")


APGD_SHARE = 0.4
"""Share of the time left after the throughput part that the APGD-CE part may take when the suite runs."""
APGD_RUNS = 2.5
"""The APGD-CE part's cost in direct strict calls: direct strict, ikl-zoo, direct TF32 (about half)."""
MIN_IMAGES = 10
"""Fewer images than this measure nothing: a part that cannot fit them in its time is skipped, with a line."""


def image_count(seconds: float, cost_per_image: float, max_images: int) -> int:
    """The images that fit ``seconds`` at ``cost_per_image``, at most ``max_images``: a multiple of 50 from
    100 on, else of 10; 0 when fewer than ``MIN_IMAGES`` fit."""
    fit = int(max(seconds, 0.0) / cost_per_image)
    if fit >= max_images:
        return max_images
    rounded = fit // 50 * 50 if fit >= 100 else fit // 10 * 10
    return rounded if rounded >= MIN_IMAGES else 0


def suite_steps(args) -> float:
    """Model passes per image of the shortened suite, if every image survived every attack."""
    targets = args.suite_targets
    return APGD_STEPS * (1 + targets) + FAB_STEPS_PER_TARGET * targets + args.suite_queries / 3


def apgd_images(args, seconds_per_step: float, remaining: float) -> int:
    """Images for the APGD-CE part, both sides budgeted as if neither were faster; the suite gets the
    rest, sized again once this part has run (see ``suite_images``)."""
    share = 1.0 if args.skip_suite else APGD_SHARE
    return image_count(share * remaining, APGD_STEPS * seconds_per_step * APGD_RUNS, args.max_images)


def suite_images(args, seconds_per_step: float, remaining: float) -> int:
    """Images for the suite, priced at the step time the APGD-CE part achieved, both sides alike."""
    return image_count(remaining, 2 * suite_steps(args) * seconds_per_step, args.max_images)


def run_part(name: str, failures: list[str], action: Callable[[], object]) -> object | None:
    """Runs one part; a failure prints its traceback and the next part still runs."""
    try:
        return action()
    except Exception:  # one broken part must not cost the others' figures
        log(f"  {name} FAILED:")
        log(traceback.format_exc().rstrip())
        failures.append(name)
        return None


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    deadline = started + args.budget_s
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("no CUDA GPU visible: this benchmark needs one (benchmarks/bench_eval_cpu.py runs on CPU)")
        return 2
    import pyautoattack

    import ikl_zoo

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    versions = (
        f"torch {torch.__version__}, pyautoattack {pyautoattack.__version__}, ikl-zoo {ikl_zoo.__version__}"
    )
    log(f"device: {name}; {versions}")
    model = build_model(args.architecture, device, args.seed)
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    log(
        f"model: {args.architecture}'s architecture ({type(model).__name__}, {parameters:.1f}M parameters) "
        "with RANDOM weights (no checkpoint is reachable here); labels are its own predictions, so "
        "accuracies below are not robustness results"
    )
    failures: list[str] = []
    seconds_per_step = run_part(
        "1. throughput", failures, lambda: part_throughput(model, device, args.direct_batch_size)
    )
    if seconds_per_step is None:  # the model's own passes failed: no attack can run, each part says so
        seconds_per_step = math.inf

    def remaining() -> float:  # seconds left for attacks, keeping room for probes, checks and the last lines
        return deadline - time.perf_counter() - 30.0 - (40.0 if args.check_layouts else 0.0)

    def too_little(seconds: float) -> str:
        if math.isinf(seconds_per_step):
            return "no step time to size it with (part 1 failed)"
        return f"{max(seconds, 0):.0f} s left of --budget-s {args.budget_s:g} fit too few images"

    x = tiled_images(args.max_images)
    y = own_predictions(model, x, device)
    n_apgd = apgd_images(args, seconds_per_step, remaining())
    if n_apgd:
        measured = run_part(
            "2. APGD-CE", failures, lambda: part_apgd(model, x[:n_apgd], y[:n_apgd], args, device)
        )
        if measured is not None:  # the step time the direct call achieved, its overheads included
            seconds_per_step = measured / APGD_STEPS
    else:
        log(f"2. APGD-CE skipped: {too_little(remaining())}")
    if not args.skip_suite:
        n_suite = suite_images(args, seconds_per_step, remaining())
        if n_suite:
            run_part("3. suite", failures, lambda: part_suite(model, x[:n_suite], y[:n_suite], args, device))
        else:
            log(f"3. standard suite skipped: {too_little(remaining())}")
    if args.check_layouts:
        log("layout check (eps/8 so that some points survive, first 128 images):")
        run_part(
            "layout check", failures,
            lambda: check_layouts(model, x, y, eps=args.eps / 8, seed=args.seed, device=device),
        )
    failed = f"; FAILED: {', '.join(failures)}" if failures else ""
    log(f"total {time.perf_counter() - started:.1f} s{failed}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
