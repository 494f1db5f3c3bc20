"""IKL's wMSE term in O(C) against the pairwise C x C form: time and peak memory of forward + backward.

The pairwise form is how the paper writes the term and how its released code computes it (two C x C logit
difference matrices and a C x C weight per sample); ikl-zoo uses the identity
``sum_jk w_j w_k (d_j - d_k)^2 = 2 W sum_j w_j (d_j - mu)^2``. At ImageNet size (batch 512, 1000 classes)
the pairwise form holds several 512 x 1000 x 1000 float32 tensors (2 GiB each), so on a CPU run it needs
well over 10 GiB of memory: pass a smaller ``--batch`` there.

    python benchmarks/bench_losses.py                      # batch 512 x 1000 classes, GPU when present
    python benchmarks/bench_losses.py --device cpu --batch 64

On CUDA the peak is ``torch.cuda.max_memory_allocated`` above the inputs; on CPU each form runs in a fresh
subprocess and the peak is the rise of its resident set size (``ru_maxrss``) over the inputs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from ikl_zoo.losses import weighted_logit_mse

FORMS = {"O(C)": False, "pairwise": True}


def _inputs(batch: int, classes: int, device: torch.device, dtype: torch.dtype):
    generator = torch.Generator(device="cpu").manual_seed(0)
    z_m = (3 * torch.randn(batch, classes, generator=generator, dtype=dtype)).to(device).requires_grad_()
    z_n = (3 * torch.randn(batch, classes, generator=generator, dtype=dtype)).to(device).requires_grad_()
    weights = torch.softmax(torch.randn(batch, classes, generator=generator, dtype=dtype), dim=1).to(device)
    return z_m, z_n, weights


def _step(z_m: torch.Tensor, z_n: torch.Tensor, weights: torch.Tensor, pairwise: bool) -> float:
    z_m.grad = z_n.grad = None
    loss = weighted_logit_mse(z_m, z_n, weights, pairwise=pairwise).mean()
    loss.backward()
    return loss.item()  # synchronises on CUDA


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def measure(form: str, *, batch: int, classes: int, device: torch.device, dtype: torch.dtype, repeats: int):
    """Median seconds of forward + backward, peak extra bytes, and the loss value."""
    pairwise = FORMS[form]
    z_m, z_n, weights = _inputs(batch, classes, device, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = _rss_bytes()
    value = _step(z_m, z_n, weights, pairwise)  # warm-up; also sets the memory peak
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        _step(z_m, z_n, weights, pairwise)
        times.append(time.perf_counter() - started)
    return {"form": form, "seconds": statistics.median(times), "peak_bytes": max(peak, 0), "value": value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=list(FORMS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    common = dict(batch=args.batch, classes=args.classes, device=device, dtype=dtype, repeats=args.repeats)

    if args.child:  # one form in a fresh process, so that ru_maxrss is this form's own peak
        print(json.dumps(measure(args.child, **common)))
        return
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"IKL wMSE term, forward + backward, batch {args.batch} x {args.classes} classes, {args.dtype}, "
        f"{where}"
    )
    print(f"{'form':<10} {'time (ms)':>12} {'peak memory (MiB)':>20} {'loss':>14}", flush=True)
    results = []
    for form in FORMS:  # each row as soon as it is measured: a pairwise failure keeps the O(C) row
        try:
            results.append(_measure_form(form, args, common))
        except subprocess.CalledProcessError as error:
            last_line = (error.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{form:<10} FAILED: {last_line}", flush=True)
            continue
        except RuntimeError as error:  # out of memory, most likely
            print(f"{form:<10} FAILED: {error}", flush=True)
            continue
        result = results[-1]
        print(
            f"{result['form']:<10} {result['seconds'] * 1e3:>12.3f} {result['peak_bytes'] / 2**20:>20.1f} "
            f"{result['value']:>14.6g}",
            flush=True,
        )
    if len(results) < len(FORMS):
        raise SystemExit(1)
    fast, slow = results
    print(
        f"pairwise / O(C): time x{slow['seconds'] / fast['seconds']:.1f}, "
        f"peak memory x{slow['peak_bytes'] / max(fast['peak_bytes'], 1):.1f}"
    )
    if abs(fast["value"] - slow["value"]) > 1e-4 * abs(slow["value"]):
        raise SystemExit(f"the two forms disagree: {fast['value']} vs {slow['value']}")


def _measure_form(form: str, args: argparse.Namespace, common: dict) -> dict:
    """On CUDA in this process; on CPU in a fresh one, so that ``ru_maxrss`` is this form's own peak."""
    if common["device"].type == "cuda":
        try:
            return measure(form, **common)
        finally:
            torch.cuda.empty_cache()
    command = [
        sys.executable, __file__, "--child", form, "--batch", str(args.batch), "--classes", str(args.classes),
        "--device", "cpu", "--dtype", args.dtype, "--repeats", str(args.repeats),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
