"""ikl-zoo's evaluator against a direct batch-200 ``pyautoattack`` call on a WRN-28-10 at real size (GPU).

Both sides run the same attacks with the same seed on the same images in strict fp32 (TF32 off): the
direct call is ``AutoAttack(...).run_standard_evaluation(x, y, batch_size=200)``; ikl-zoo runs
``evaluate(..., batch_size="auto")`` (largest batch that fits, frozen weights so no weight gradients,
cudnn.benchmark, channels_last, optionally torch.compile).

No checkpoint can be downloaded on the benchmark machine, so the WRN-28-10 (DeepMind/RobustBench
architecture of Cui2023Decoupled_WRN-28-10, SiLU) has random weights, seeded, and the labels are its
own clean predictions so every image is attacked. Its accuracies are not a robustness result. By default
the attack is APGD-CE exactly as standard AutoAttack runs it (one restart, 100 iterations): on a
non-robust network it takes every point, so the later standard attacks would have nothing left; pass
``--version standard`` for the whole suite. The images are the 20 real CIFAR-10 test images foolbox
ships, tiled (with a +-1/255 jitter so copies differ) to a realistic count chosen to fit ``--budget-s``.

    python benchmarks/gpu_eval.py                      # under 4 minutes on an H100
    python benchmarks/gpu_eval.py --n-images 2000 --compile --check-layouts
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

STEPS_PER_IMAGE = 102
"""Model passes APGD-CE makes per image (100 iterations, the start point, the final check)."""


def log(message: str) -> None:
    print(message, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budget-s",
        type=float,
        default=200.0,
        help="Wall-clock budget for the whole script; sets the image count (default 200).",
    )
    parser.add_argument(
        "--n-images", type=int, default=0, help="Image count (0: the most that fits the budget)."
    )
    parser.add_argument("--max-images", type=int, default=2000)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument(
        "--version",
        choices=["apgd-ce", "standard"],
        default="apgd-ce",
        help="apgd-ce: standard AutoAttack's first attack alone; standard: the whole suite.",
    )
    parser.add_argument("--direct-batch-size", type=int, default=200)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model on ikl-zoo's side.")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument(
        "--check-layouts",
        action="store_true",
        help="Also compare flags of plain, channels_last and compiled runs on 128 images.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="cuda", help="cuda (default), or cpu for a smoke run of the script."
    )
    return parser.parse_args()


def tiled_images(n: int, device: torch.device) -> torch.Tensor:
    from ikl_zoo.data import foolbox_sample

    images, _ = foolbox_sample("cifar10")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    x = x.repeat(math.ceil(n / len(x)), 1, 1, 1)[:n]
    generator = torch.Generator().manual_seed(0)
    jitter = (torch.rand(x.shape, generator=generator) * 2 - 1) / 255
    return (x + jitter).clamp(0, 1).contiguous()


def build_model(device: torch.device, seed: int) -> torch.nn.Module:
    from ikl_zoo.zoo.registry import create_model

    torch.manual_seed(seed)
    return create_model("Cui2023Decoupled_WRN-28-10", dataset="cifar10").to(device).eval()


@torch.no_grad()
def own_predictions(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.cat([model(x[i : i + 500].to(device)).argmax(1).cpu() for i in range(0, len(x), 500)])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_image_step(
    model: torch.nn.Module, x: torch.Tensor, batch: int, device: torch.device
) -> float:
    """One forward and backward pass per image as the direct call makes it (weight gradients included)."""
    xb = x[:batch].to(device).requires_grad_(True)
    for step in range(4):
        if step == 1:
            synchronize(device)
            start = time.perf_counter()
        loss = model(xb).logsumexp(1).sum()
        loss.backward()
        model.zero_grad(set_to_none=True)
    synchronize(device)
    return (time.perf_counter() - start) / 3 / batch


def attack_settings(version: str) -> dict:
    if version == "standard":
        return {"version": "standard"}
    return {"version": "custom", "attacks": ["apgd-ce"], "attack_options": {"apgd": {"n_restarts": 1}}}


def run_direct(model, x, y, *, eps, version, seed, batch_size, device) -> tuple[list[bool], float]:
    from pyautoattack import AutoAttack

    settings = attack_settings(version)
    adversary = AutoAttack(
        model,
        norm="Linf",
        eps=eps,
        version=settings["version"],
        attacks=settings.get("attacks"),
        seed=seed,
        device=device,
    )
    if version != "standard":
        adversary.apgd.n_restarts = 1  # AutoAttack's README way of customising; standard sets the same
    synchronize(device)
    start = time.perf_counter()
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    synchronize(device)
    return (y_adv.cpu() == y).tolist(), time.perf_counter() - start


def run_ikl_zoo(model, x, y, *, eps, version, seed, device, channels_last, compile_model, progress=True):
    from ikl_zoo.evaluate import evaluate

    synchronize(device)
    start = time.perf_counter()
    result = evaluate(
        model,
        x,
        y,
        eps=eps,
        seed=seed,
        batch_size="auto",
        chunk_size=len(x),
        device=device,
        channels_last=channels_last,
        compile_model=compile_model,
        progress=progress,
        **attack_settings(version),
    )
    synchronize(device)
    return result, time.perf_counter() - start


def check_layouts(model, x, y, *, eps, seed, device) -> None:
    """Flags of plain, channels_last and compiled runs on 128 images (fp32 noise may flip borderline ones)."""
    x, y = x[:128], y[:128]
    n, runs = len(x), {}
    variants = (("plain", False, False), ("channels_last", True, False), ("compiled", True, True))
    for name, channels_last, compile_model in variants:
        result, seconds = run_ikl_zoo(
            model, x, y, eps=eps, version="apgd-ce", seed=seed, device=device, channels_last=channels_last,
            compile_model=compile_model, progress=False,
        )
        runs[name] = result.robust_flags
        survived = sum(result.robust_flags)
        log(f"  {name:14s} robust {survived:3d}/{n} in {seconds:6.1f} s, batch {result.batch_size}")
    for name in ("channels_last", "compiled"):
        same = sum(a == b for a, b in zip(runs["plain"], runs[name], strict=True))
        log(f"  {name} vs plain: {same}/{n} flags equal")


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        log("no CUDA GPU visible: this benchmark needs one (benchmarks/bench_eval_cpu.py runs on CPU)")
        return 2
    torch.backends.cudnn.allow_tf32 = False  # strict fp32 on the direct side too: the same numbers
    torch.backends.cuda.matmul.allow_tf32 = False
    import pyautoattack

    import ikl_zoo

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(
        f"device: {name}; torch {torch.__version__}, "
        f"pyautoattack {pyautoattack.__version__}, ikl-zoo {ikl_zoo.__version__}"
    )
    model = build_model(device, args.seed)
    log(
        "model: WRN-28-10 (DMWideResNet, SiLU, 36.5M parameters) with RANDOM weights (no checkpoint is "
        "reachable here); labels are its own predictions, so accuracies below are not robustness results"
    )

    per_step = seconds_per_image_step(
        model, tiled_images(args.direct_batch_size, device), args.direct_batch_size, device
    )
    if args.n_images > 0:
        n_images = args.n_images
    else:
        remaining = args.budget_s - (time.perf_counter() - started) - 35.0  # start-up, probes, checks
        if args.check_layouts:
            remaining -= 40.0
        # Budget both sides as if neither were faster than the direct call.
        n_images = int(remaining / (2 * STEPS_PER_IMAGE * per_step) // 100 * 100)
        n_images = max(100, min(args.max_images, n_images))
    suite = "APGD-CE as standard AutoAttack runs it" if args.version == "apgd-ce" else "standard AutoAttack"
    log(
        f"calibration: {1e3 * per_step:.3f} ms per image per forward+backward at batch "
        f"{args.direct_batch_size}; attacking {n_images} images ({suite}, Linf eps {args.eps * 255:.3g}/255, "
        f"seed {args.seed})"
    )

    x = tiled_images(n_images, device)
    y = own_predictions(model, x, device)

    log(f"direct pyautoattack, batch {args.direct_batch_size} ...")
    direct_flags, direct_seconds = run_direct(
        model,
        x,
        y,
        eps=args.eps,
        version=args.version,
        seed=args.seed,
        batch_size=args.direct_batch_size,
        device=device,
    )
    log(
        f"  {direct_seconds:.1f} s, {n_images / direct_seconds:.1f} images/s, robust accuracy "
        f"{100 * sum(direct_flags) / n_images:.2f}%"
    )

    log("ikl-zoo evaluate, batch auto ...")
    result, ours_seconds = run_ikl_zoo(
        model,
        x,
        y,
        eps=args.eps,
        version=args.version,
        seed=args.seed,
        device=device,
        channels_last=not args.no_channels_last,
        compile_model=args.compile,
    )
    log(
        f"  {ours_seconds:.1f} s, {n_images / ours_seconds:.1f} images/s, robust accuracy "
        f"{100 * result.robust_acc:.2f}%, batch {result.batch_size}, "
        f"channels_last {not args.no_channels_last}, compile {args.compile}, "
        f"{result.model_passes['backward']:,} backward passes"
    )

    agree = sum(a == b for a, b in zip(direct_flags, result.robust_flags, strict=True))
    log(
        f"speed-up: {direct_seconds / ours_seconds:.2f}x (ikl-zoo {n_images / ours_seconds:.1f} vs direct "
        f"{n_images / direct_seconds:.1f} images/s)"
    )
    log(
        f"robust accuracy: ikl-zoo {100 * result.robust_acc:.2f}%, "
        f"direct {100 * sum(direct_flags) / n_images:.2f}%; flags agree on {agree}/{n_images} "
        f"(batches {result.batch_size} vs {args.direct_batch_size}: the random starts differ per batch)"
    )
    if args.check_layouts:
        log("layout check (eps/8 so that some points survive, first 128 images):")
        check_layouts(model, x, y, eps=args.eps / 8, seed=args.seed, device=device)
    log(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
