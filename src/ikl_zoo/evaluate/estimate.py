"""Before a long run, its wall time: a short calibration pass times the attacks' pass counts.

Per attacked image, from pyautoattack's settings (R restarts, T target classes), at most:
APGD-CE and APGD-DLR R * (n_iter + 1) forward+backward passes; APGD-T T * R * (n_iter + 1);
FAB R * (n_iter + 1) forward+backward and as many forward passes, FAB-T T * (n_iter + 1) of each;
Square R * (n_queries + 1) forward passes; and one forward pass for the clean flags. Every image the
calibration batch classifies correctly is counted at every attack: an upper bound, since an image one attack
fools skips the next. The lower bound counts the first attack's first run only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from pyautoattack import AutoAttack
from torch import nn


def attack_passes(adversary: AutoAttack, attack: str, *, first_run: bool = False) -> tuple[int, int]:
    """(forward+backward, forward-only) passes ``attack`` spends on one image at most; with ``first_run``, at
    least: every image it meets goes through its first restart (or target class) in full, and Square stops at
    the first query that fools it."""
    apgd, apgd_t, fab, square = adversary.apgd, adversary.apgd_targeted, adversary.fab, adversary.square
    if attack in ("apgd-ce", "apgd-dlr"):
        return (1 if first_run else apgd.n_restarts) * (apgd.n_iter + 1) * apgd.eot_iter, 1
    if attack == "apgd-t":
        runs = 1 if first_run else apgd_t.n_target_classes * apgd_t.n_restarts
        return runs * (apgd_t.n_iter + 1) * apgd_t.eot_iter, 1
    if attack in ("fab", "fab-t"):
        runs = 1 if first_run else fab.n_target_classes if attack == "fab-t" else fab.n_restarts
        return runs * (fab.n_iter + 1), runs * (fab.n_iter + 1) + 1
    return 0, 1 if first_run else square.n_restarts * (square.n_queries + 1)


@dataclass(frozen=True)
class Estimate:
    """A range: at least, the first attack fools every correctly classified image on its first run; at most,
    every correctly classified image meets every attack (what a robust model costs)."""

    least_seconds: float
    seconds: float
    n_examples: int
    device: str

    def __str__(self) -> str:
        least, most = format_duration(self.least_seconds), format_duration(self.seconds)
        span = most if least == most else (f"{least} (if the first attack fools every image) to {most} "
                                           "(if every image meets every attack)")
        return f"estimated {span} for {self.n_examples:,} images on {self.device}"


def format_duration(seconds: float) -> str:
    """``1 h 12 min``, ``7 min``, ``40 s``."""
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def calibrate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, device: torch.device,
    repeats: int = 2,
) -> tuple[float, float, float]:
    """Seconds per image of a forward+input-gradient pass and of a forward pass at ``batch_size`` (after one
    warm-up of each), and the share of the batch classified correctly."""
    xb = x[:batch_size].repeat(-(-batch_size // len(x)), 1, 1, 1)[:batch_size].to(device)
    labels = y[:batch_size]

    def timed(action) -> float:
        action()  # a warm-up
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            action()
        _synchronize(device)
        return (time.perf_counter() - started) / (repeats * batch_size)

    def forward_backward() -> None:
        inputs = xb.clone().requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(model(inputs).sum(), inputs)

    with torch.no_grad():
        forward, logits = timed(lambda: model(xb)), model(xb[: len(labels)]).cpu()
    return timed(forward_backward), forward, (logits.argmax(1) == labels).float().mean().item()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
