"""AutoAttack on one chunk of examples, attack by attack, exactly as ``pyautoattack`` runs it.

``attack_chunk`` reproduces ``AutoAttack.run_standard_evaluation`` (pyautoattack 0.2) with the adversary's
own configured attack objects: the same clean pass, the same batches over the points still robust, the
same seeding before each ``perturb`` call and the same per-attack settings (FAB-T targeted with one
restart, ...). So for the same seed and batch size the robust flags equal a direct call's. On top of it we
keep the flags after each attack, time each attack, show a progress bar with an ETA per attack, and run
AutoAttack's own checks (randomness, softmax output, dynamic defences, class count, Square's success).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from pyautoattack import AutoAttack
from pyautoattack import checks as aa_checks
from tqdm.auto import tqdm

from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate.settings import VERSIONS
from ikl_zoo.threat import NORMS

ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
AUTOATTACK_LOGGER = "auto-attack"

# Settings a "custom" run may change on the adversary's attack objects, as AutoAttack's own README does
# (``adversary.apgd.n_restarts = 1``). The protocol versions (standard, plus, rand) are never changed.
ATTACK_OPTIONS: dict[str, tuple[str, ...]] = {
    "apgd": ("n_iter", "n_restarts", "eot_iter"),
    "apgd_targeted": ("n_iter", "n_restarts", "n_target_classes"),
    "fab": ("n_iter", "n_restarts", "n_target_classes"),
    "square": ("n_queries", "n_restarts", "p_init"),
}


def check_eps(eps: float, *, norm: str) -> None:
    """A positive, finite budget; an Linf one within the [0, 1] image range (8 almost always means 8/255)."""
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise EvaluationError(f"eps must be a positive number, got {eps!r}")
    if norm == "Linf" and eps > 1:
        pixel_levels = float(eps).is_integer() and eps <= 255
        meant = f"did you mean {eps:g}/255?" if pixel_levels else "give a fraction, e.g. 8/255"
        raise EvaluationError(f"Linf eps {eps:g} exceeds the [0, 1] image range: {meant}")


def resolve_attacks(*, version: str, norm: str, attacks: Sequence[str] | None) -> list[str]:
    """The attacks a version runs, in order, as pyautoattack defines them; checks the arguments."""
    if norm not in NORMS:
        raise EvaluationError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
    if version not in VERSIONS:
        raise EvaluationError(f"unknown AutoAttack version {version!r}: choose one of {', '.join(VERSIONS)}")
    if version != "custom":
        if attacks:
            raise EvaluationError(
                f"--attacks picks the attacks of the custom version; version {version!r} fixes them: "
                "pass --version custom or drop --attacks"
            )
        return list(_probe_adversary(norm=norm, version=version).attacks_to_run)
    if not attacks:
        raise EvaluationError(f"version custom needs a list of attacks, e.g. apgd-ce,apgd-t (from {ATTACKS})")
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise EvaluationError(f"unknown attack {unknown[0]!r}: choose from {', '.join(ATTACKS)}")
    if len(set(attacks)) != len(attacks):
        raise EvaluationError(f"attack listed twice in {','.join(attacks)}")
    return list(attacks)


def check_attack_options(
    options: Mapping[str, Mapping[str, float]] | None, *, version: str
) -> dict[str, dict[str, float]]:
    """Validated copy of ``{"apgd": {"n_iter": 10}, ...}``; only the custom version takes options."""
    if not options:
        return {}
    if version != "custom":
        raise EvaluationError(
            f"attack options change AutoAttack's settings, which version {version!r} fixes: "
            "use --version custom"
        )
    checked: dict[str, dict[str, float]] = {}
    for attack_object, settings in options.items():
        allowed = ATTACK_OPTIONS.get(attack_object)
        if allowed is None:
            raise EvaluationError(
                f"unknown attack object {attack_object!r} in attack options: "
                f"choose from {', '.join(ATTACK_OPTIONS)}"
            )
        for name, value in settings.items():
            if name not in allowed:
                raise EvaluationError(
                    f"{attack_object}.{name} is not an attack option: "
                    f"{attack_object} takes {', '.join(allowed)}"
                )
            if name != "p_init" and (int(value) != value or value < 1):
                raise EvaluationError(f"{attack_object}.{name} must be a positive integer, got {value}")
        checked[attack_object] = {
            name: (float(value) if name == "p_init" else int(value)) for name, value in settings.items()
        }
    return checked


def _probe_adversary(*, norm: str, version: str) -> AutoAttack:
    quiet = logging.getLogger(AUTOATTACK_LOGGER)
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # _set_version logs "setting parameters" at info
    try:
        return AutoAttack(torch.nn.Identity(), norm=norm, eps=1.0, version=version, device="cpu", seed=0)
    finally:
        quiet.setLevel(level)


def build_adversary(
    model: torch.nn.Module,
    *,
    eps: float,
    norm: str,
    version: str,
    attacks: Sequence[str],
    seed: int,
    device: torch.device,
    attack_options: Mapping[str, Mapping[str, float]] | None = None,
) -> AutoAttack:
    """The ``AutoAttack`` object a direct call would build, with custom attack options applied."""
    adversary = AutoAttack(
        model, norm=norm, eps=eps, version=version, seed=seed, device=device,
        attacks=list(attacks) if version == "custom" else None,
    )
    for attack_object, settings in (attack_options or {}).items():
        target = getattr(adversary, attack_object)
        for name, value in settings.items():
            setattr(target, name, value)
        if "n_iter" in settings and hasattr(target, "n_iter_2"):
            # APGD derives its step-size checkpoints from n_iter in __init__; derive them again.
            target.n_iter_orig = target.n_iter
            target.n_iter_2 = max(int(0.22 * target.n_iter), 1)
            target.n_iter_min = max(int(0.06 * target.n_iter), 1)
            target.size_decr = max(int(0.03 * target.n_iter), 1)
    return adversary


def expected_steps(adversary: AutoAttack, attack: str) -> int:
    """Model calls one batch of ``attack`` makes at most: the scale of the per-attack progress bar."""
    apgd, apgd_t, fab, square = adversary.apgd, adversary.apgd_targeted, adversary.fab, adversary.square
    if attack in ("apgd-ce", "apgd-dlr"):
        return apgd.n_restarts * (apgd.n_iter + 1) * apgd.eot_iter + 2
    if attack == "apgd-t":
        return apgd_t.n_target_classes * apgd_t.n_restarts * (apgd_t.n_iter + 1) * apgd_t.eot_iter + 2
    if attack == "fab":
        return fab.n_restarts * (fab.n_iter + 2) + 2
    if attack == "fab-t":
        return fab.n_target_classes * (fab.n_iter + 2) + 2
    return square.n_restarts * (square.n_queries + 1) + 2


def _perturb(adversary: AutoAttack, attack: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The branches of AutoAttack.run_standard_evaluation, verbatim in effect.
    if attack == "apgd-ce":
        adversary.apgd.loss = "ce"
        adversary.apgd.seed = adversary.get_seed()
        return adversary.apgd.perturb(x, y)
    if attack == "apgd-dlr":
        adversary.apgd.loss = "dlr"
        adversary.apgd.seed = adversary.get_seed()
        return adversary.apgd.perturb(x, y)
    if attack == "fab":
        adversary.fab.targeted = False
        adversary.fab.seed = adversary.get_seed()
        return adversary.fab.perturb(x, y)
    if attack == "square":
        adversary.square.seed = adversary.get_seed()
        return adversary.square.perturb(x, y)
    if attack == "apgd-t":
        adversary.apgd_targeted.seed = adversary.get_seed()
        return adversary.apgd_targeted.perturb(x, y)
    if attack == "fab-t":
        adversary.fab.targeted = True
        adversary.fab.n_restarts = 1
        adversary.fab.seed = adversary.get_seed()
        return adversary.fab.perturb(x, y)
    raise EvaluationError(f"unknown attack {attack!r}")


@dataclass
class ChunkAttackResult:
    """What AutoAttack found on one chunk: flags before and after each attack, times, largest perturbation."""

    clean_flags: torch.Tensor
    robust_flags: torch.Tensor
    attack_flags: dict[str, torch.Tensor]
    timings: dict[str, float] = field(default_factory=dict)
    max_perturbation: float = 0.0


def run_checks(adversary: AutoAttack, x: torch.Tensor, y: torch.Tensor, *, batch_size: int) -> int:
    """AutoAttack's checks on the first batch, as ``run_standard_evaluation`` runs them; returns #classes."""
    logger = adversary.logger
    xb, yb = x[:batch_size].to(adversary.device), y[:batch_size].to(adversary.device)
    if adversary.version != "rand":
        aa_checks.check_randomized(adversary.get_logits, xb, yb, bs=batch_size, logger=logger)
    n_classes = aa_checks.check_range_output(adversary.get_logits, xb, logger=logger)
    aa_checks.check_dynamic(adversary.model, xb, False, logger=logger)
    aa_checks.check_n_classes(
        n_classes, adversary.attacks_to_run, adversary.apgd_targeted.n_target_classes,
        adversary.fab.n_target_classes, logger=logger,
    )
    return n_classes


def check_square_success(per_attack: Mapping[str, float], *, clean_acc: float) -> None:
    """AutoAttack's warning when Square finds points the gradient attacks missed, on the whole run."""
    aa_checks.check_square_sr(
        {"clean": clean_acc, **per_attack}, logger=logging.getLogger(AUTOATTACK_LOGGER)
    )


def attack_chunk(
    adversary: AutoAttack,
    x_orig: torch.Tensor,
    y_orig: torch.Tensor,
    *,
    batch_size: int,
    step_counter: Callable[[Callable[[], None] | None], None] | None = None,
    progress: bool = True,
    label: str = "",
) -> ChunkAttackResult:
    """Run the adversary's attacks on ``x_orig`` (CPU) like ``run_standard_evaluation(batch_size=...)``.

    ``step_counter(callback)`` installs a callback the model wrapper calls on every forward pass (None
    removes it); the per-attack bar advances with it, so its ETA moves inside long batches too.
    """
    timings: dict[str, float] = {}
    attack_flags: dict[str, torch.Tensor] = {}
    max_perturbation = 0.0
    with torch.no_grad():
        start_time = time.perf_counter()
        robust_flags = _clean_flags(adversary, x_orig, y_orig, batch_size=batch_size)
        clean_flags = robust_flags.clone()
        timings["clean"] = time.perf_counter() - start_time
        for attack in adversary.attacks_to_run:
            start_time = time.perf_counter()
            if robust_flags.any():
                largest = _attack_with_bar(
                    adversary, attack, (x_orig, y_orig), robust_flags, batch_size=batch_size,
                    step_counter=step_counter, progress=progress, label=label,
                )
                max_perturbation = max(max_perturbation, largest)
                timings[attack] = time.perf_counter() - start_time
            else:  # AutoAttack stops: nothing left to attack
                timings[attack] = 0.0
            attack_flags[attack] = robust_flags.clone()
    return ChunkAttackResult(
        clean_flags=clean_flags, robust_flags=robust_flags, attack_flags=attack_flags, timings=timings,
        max_perturbation=max_perturbation,
    )


def _attack_with_bar(
    adversary: AutoAttack,
    attack: str,
    examples: tuple[torch.Tensor, torch.Tensor],
    robust_flags: torch.Tensor,
    *,
    batch_size: int,
    step_counter: Callable[[Callable[[], None] | None], None] | None,
    progress: bool,
    label: str,
) -> float:
    """``_attack_survivors`` under a progress bar that the model's forward passes advance."""
    bar = tqdm(
        total=-(-int(robust_flags.sum()) // batch_size) * expected_steps(adversary, attack),
        desc=f"{label}{attack}", unit="step", leave=False, disable=not progress, dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} (at most)",
    )
    if step_counter is not None:
        step_counter(lambda bar=bar: bar.update(1) if bar.n < bar.total else None)
    try:
        return _attack_survivors(adversary, attack, *examples, robust_flags, batch_size, bar)
    finally:
        if step_counter is not None:
            step_counter(None)
        bar.close()


def _clean_flags(adversary: AutoAttack, x_orig: torch.Tensor, y_orig: torch.Tensor, *, batch_size: int):
    """Which examples the model classifies correctly, batch by batch as AutoAttack's clean pass."""
    flags = torch.zeros(x_orig.shape[0], dtype=torch.bool)
    for start in range(0, x_orig.shape[0], batch_size):
        x = x_orig[start:start + batch_size].clone().to(adversary.device)
        y = y_orig[start:start + batch_size].clone().to(adversary.device)
        flags[start:start + batch_size] = y.eq(adversary.get_logits(x).max(dim=1)[1]).cpu()
    return flags


def _attack_survivors(adversary, attack, x_orig, y_orig, robust_flags, batch_size, bar) -> float:
    """One attack on the examples still robust, in AutoAttack's batches; clears the flags of those it
    fools (in place) and returns the largest perturbation that fooled the model."""
    robust_idx = torch.nonzero(robust_flags, as_tuple=False).reshape(-1)
    largest = 0.0
    for batch_index in range(-(-len(robust_idx) // batch_size)):
        batch_idx = robust_idx[batch_index * batch_size:(batch_index + 1) * batch_size]
        x = x_orig[batch_idx].clone().to(adversary.device)
        y = y_orig[batch_idx].clone().to(adversary.device)
        adv = _perturb(adversary, attack, x, y)
        fooled = ~y.eq(adversary.get_logits(adv).max(dim=1)[1]).cpu()
        robust_flags[batch_idx[fooled]] = False
        if fooled.any():
            delta = (adv[fooled.to(adv.device)] - x[fooled.to(x.device)]).flatten(1).cpu()
            largest = max(largest, float(_norm(delta, adversary.norm).max()))
        bar.n = (batch_index + 1) * expected_steps(adversary, attack)
        bar.refresh()
    return largest


def _norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "Linf":
        return delta.abs().max(dim=1)[0]
    if norm == "L2":
        return delta.pow(2).sum(dim=1).sqrt()
    return delta.abs().sum(dim=1)


class _EachOnce(logging.Handler):
    """Hands each distinct AutoAttack warning to ``action`` once (APGD's come once per batch)."""

    def __init__(self, action: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self.action, self.seen = action, []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.seen:
            self.seen.append(message)
            self.action(message)


@contextmanager
def _handling(handler: logging.Handler, *, propagate: bool = True) -> Iterator[None]:
    logger = logging.getLogger(AUTOATTACK_LOGGER)
    before = logger.propagate
    logger.addHandler(handler)
    logger.propagate = propagate and before
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = before


@contextmanager
def collect_autoattack_warnings() -> Iterator[list[str]]:
    """Collect AutoAttack's warnings (its checks log to 'auto-attack') while they still reach the user."""
    collector = _EachOnce(lambda message: None)
    with _handling(collector):
        yield collector.seen


@contextmanager
def show_autoattack_warnings(prefix: str = "AutoAttack warning: ") -> Iterator[None]:
    """Print AutoAttack's warnings on stderr between the progress bars, each once, for a command line."""
    printer = _EachOnce(lambda message: tqdm.write(f"{prefix}{message}", file=sys.stderr))
    with _handling(printer, propagate=False):
        yield


def autoattack_settings(adversary: AutoAttack) -> dict[str, Any]:
    """The attack objects' settings that decide the result, for the record."""
    apgd, apgd_t, fab, square = adversary.apgd, adversary.apgd_targeted, adversary.fab, adversary.square
    return {
        "apgd": {"n_iter": apgd.n_iter, "n_restarts": apgd.n_restarts, "eot_iter": apgd.eot_iter},
        "apgd_targeted": {
            "n_iter": apgd_t.n_iter, "n_restarts": apgd_t.n_restarts,
            "n_target_classes": apgd_t.n_target_classes,
        },
        "fab": {"n_iter": fab.n_iter, "n_restarts": fab.n_restarts, "n_target_classes": fab.n_target_classes},
        "square": {"n_queries": square.n_queries, "n_restarts": square.n_restarts, "p_init": square.p_init},
    }
