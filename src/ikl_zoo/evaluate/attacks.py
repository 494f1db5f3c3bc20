"""AutoAttack on one chunk, attack by attack, exactly as pyautoattack 0.2's ``run_standard_evaluation``: same
clean pass, batches, seeding and per-attack settings, so the flags equal a direct call's; on top of it the
flags after each attack, times, progress bars and AutoAttack's own checks.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from pyautoattack import AutoAttack
from pyautoattack import checks as aa_checks
from tqdm.auto import tqdm

from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate.estimate import attack_passes
from ikl_zoo.evaluate.settings import VERSIONS, check_choice
from ikl_zoo.threat import NORMS

ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
AUTOATTACK_LOGGER = "auto-attack"
_ORDERS = {"Linf": float("inf"), "L2": 2.0, "L1": 1.0}
StepCounter = Callable[[Callable[[], None] | None], None]
"""Installs a callback the model calls on every forward pass (None removes it)."""

# What a custom run may set on the attack objects, as AutoAttack's README does (``apgd.n_restarts = 1``).
ATTACK_OPTIONS: dict[str, tuple[str, ...]] = {
    "apgd": ("n_iter", "n_restarts", "eot_iter"),
    "apgd_targeted": ("n_iter", "n_restarts", "n_target_classes"),
    "fab": ("n_iter", "n_restarts", "n_target_classes"),
    "square": ("n_queries", "n_restarts", "p_init"),
}


def resolve_attacks(*, version: str, norm: str, attacks: Sequence[str] | None) -> list[str]:
    """The attacks a version runs, in order, as pyautoattack defines them; checks the arguments."""
    check_choice("norm", norm, NORMS)
    check_choice("AutoAttack version", version, VERSIONS)
    if version != "custom":
        if attacks:
            problem = f"--attacks picks the attacks of the custom version; version {version!r} fixes them"
            raise EvaluationError(problem, fix="pass --version custom or drop --attacks")
        return list(_probe_adversary(norm=norm, version=version).attacks_to_run)
    if not attacks:
        raise EvaluationError(f"version custom needs a list of attacks, e.g. apgd-ce,apgd-t (from {ATTACKS})")
    if unknown := [name for name in attacks if name not in ATTACKS]:
        raise EvaluationError(f"unknown attack {unknown[0]!r}: choose from {', '.join(ATTACKS)}")
    if len(set(attacks)) != len(attacks):
        raise EvaluationError(f"attack listed twice in {','.join(attacks)}", fix="name each attack once")
    return list(attacks)


def check_attack_options(
    options: Mapping[str, Mapping[str, float]] | None, *, version: str
) -> dict[str, dict[str, float]]:
    """Validated copy of ``{"apgd": {"n_iter": 10}, ...}``; only the custom version takes options."""
    if options and version != "custom":
        problem = f"attack options change AutoAttack's settings, which version {version!r} fixes"
        raise EvaluationError(problem, fix="use --version custom")
    checked: dict[str, dict[str, float]] = {}
    for attack_object, settings in (options or {}).items():
        if (allowed := ATTACK_OPTIONS.get(attack_object)) is None:
            known = f"choose from {', '.join(ATTACK_OPTIONS)}"
            raise EvaluationError(f"unknown attack object {attack_object!r} in attack options: {known}")
        for name, value in settings.items():
            if name not in allowed:
                takes = f"{attack_object} takes {', '.join(allowed)}"
                raise EvaluationError(f"{attack_object}.{name} is not an attack option: {takes}")
            if name != "p_init" and (int(value) != value or value < 1):
                raise EvaluationError(f"{attack_object}.{name} must be a positive integer, got {value}")
            checked.setdefault(attack_object, {})[name] = float(value) if name == "p_init" else int(value)
    return checked


def _probe_adversary(*, norm: str, version: str) -> AutoAttack:
    with _each_once(lambda message: None, propagate=False):  # _set_version logs "setting parameters"
        return AutoAttack(torch.nn.Identity(), norm=norm, eps=1.0, version=version, device="cpu", seed=0)


def build_adversary(
    model: torch.nn.Module, *, eps: float, norm: str, version: str, attacks: Sequence[str], seed: int,
    device: torch.device, attack_options: Mapping[str, Mapping[str, float]] | None = None,
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


_PERTURB_SETTINGS = {
    "apgd-ce": ("apgd", {"loss": "ce"}), "apgd-dlr": ("apgd", {"loss": "dlr"}),
    "fab": ("fab", {"targeted": False}), "square": ("square", {}), "apgd-t": ("apgd_targeted", {}),
    "fab-t": ("fab", {"targeted": True, "n_restarts": 1}),
}
"""Each attack's object and what ``run_standard_evaluation`` sets on it before seeding it."""


def _perturb(adversary: AutoAttack, attack: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    name, settings = _PERTURB_SETTINGS[attack]
    target = getattr(adversary, name)
    for key, value in {**settings, "seed": adversary.get_seed()}.items():
        setattr(target, key, value)
    return target.perturb(x, y)


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


def progress_style(progress: bool) -> str:
    """``bars`` on a terminal; ``lines``, one per chunk and attack, in a log file, CI or nohup; or ``off``."""
    return "off" if not progress else "bars" if sys.stderr.isatty() else "lines"


def say(message: str) -> None:
    """A line on stderr, between the progress bars if any."""
    tqdm.write(message, file=sys.stderr)


def attack_chunk(
    adversary: AutoAttack, x_orig: torch.Tensor, y_orig: torch.Tensor, *, batch_size: int,
    step_counter: StepCounter, progress: str = "bars", label: str = "",
) -> ChunkAttackResult:
    """The adversary's attacks on ``x_orig`` (CPU), with a ``progress_style``; ``step_counter(callback)``
    makes every forward pass call ``callback``, so the per-attack bar's ETA moves inside long batches."""
    with torch.no_grad():
        started, flags = time.perf_counter(), _clean_flags(adversary, x_orig, y_orig, batch_size=batch_size)
        found = ChunkAttackResult(flags.clone(), flags, {}, {"clean": time.perf_counter() - started})
        for attack in adversary.attacks_to_run:
            started, before, largest = time.perf_counter(), int(flags.sum()), 0.0
            if before:  # else AutoAttack stops
                largest = _attack_survivors(
                    adversary, attack, (x_orig, y_orig), flags, batch_size=batch_size,
                    step_counter=step_counter, progress=progress == "bars", label=label,
                )
            found.max_perturbation = max(found.max_perturbation, largest)
            found.timings[attack] = seconds = time.perf_counter() - started if before else 0.0
            if before and progress == "lines":
                say(f"{label}{attack}: {before} -> {int(flags.sum())} robust in {seconds:.1f} s")
            found.attack_flags[attack] = flags.clone()
    return found


def _clean_flags(adversary: AutoAttack, x_orig: torch.Tensor, y_orig: torch.Tensor, *, batch_size: int):
    """Which examples the model classifies correctly, batch by batch as AutoAttack's clean pass."""
    flags = torch.zeros(x_orig.shape[0], dtype=torch.bool)
    for start in range(0, x_orig.shape[0], batch_size):
        x = x_orig[start:start + batch_size].clone().to(adversary.device)
        y = y_orig[start:start + batch_size].clone().to(adversary.device)
        flags[start:start + batch_size] = y.eq(adversary.get_logits(x).max(dim=1)[1]).cpu()
    return flags


def _attack_survivors(
    adversary: AutoAttack, attack: str, examples: tuple[torch.Tensor, torch.Tensor], flags: torch.Tensor, *,
    batch_size: int, step_counter: StepCounter, progress: bool, label: str,
) -> float:
    """One attack on the survivors, under a bar the model's forward passes advance: clears the flags of
    those it fools, returns the largest such perturbation."""
    (x_orig, y_orig), robust_idx = examples, torch.nonzero(flags, as_tuple=False).reshape(-1)
    steps, largest = sum(attack_passes(adversary, attack)) + 2, 0.0  # model calls per batch, at most
    with tqdm(
        total=-(-len(robust_idx) // batch_size) * steps,
        desc=f"{label}{attack}", unit="step", leave=False, disable=not progress, dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} (at most)",
    ) as bar:
        step_counter(lambda: bar.update(1) if bar.n < bar.total else None)
        try:
            for batch_index, start in enumerate(range(0, len(robust_idx), batch_size)):
                batch_idx = robust_idx[start:start + batch_size]
                x = x_orig[batch_idx].clone().to(adversary.device)
                y = y_orig[batch_idx].clone().to(adversary.device)
                adv = _perturb(adversary, attack, x, y)
                fooled = ~y.eq(adversary.get_logits(adv).max(dim=1)[1]).cpu()
                flags[batch_idx[fooled]] = False
                if fooled.any():
                    delta = (adv - x)[fooled.to(x.device)].flatten(1).cpu()
                    norms = torch.linalg.vector_norm(delta, _ORDERS[adversary.norm], dim=1)
                    largest = max(largest, float(norms.max()))
                bar.n = (batch_index + 1) * steps
                bar.refresh()
        finally:
            step_counter(None)
    return largest


@contextmanager
def _each_once(action: Callable[[str], None], *, propagate: bool = True) -> Iterator[list[str]]:
    """Hands each distinct AutoAttack warning to ``action`` once (APGD's come once per batch)."""
    seen: list[str] = []
    handler, logger = logging.Handler(logging.WARNING), logging.getLogger(AUTOATTACK_LOGGER)

    def emit(record: logging.LogRecord) -> None:
        if (message := record.getMessage()) not in seen:
            seen.append(message)
            action(message)

    handler.emit, before = emit, logger.propagate
    logger.addHandler(handler)
    logger.propagate = propagate and before
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.propagate = before


def collect_autoattack_warnings() -> ContextManager[list[str]]:
    """Collect AutoAttack's warnings (its checks log to 'auto-attack') while they still reach the user."""
    return _each_once(lambda message: None)


def show_autoattack_warnings(prefix: str = "AutoAttack warning: ") -> ContextManager[list[str]]:
    """Print AutoAttack's warnings on stderr between the progress bars, each once, for a command line."""
    return _each_once(lambda message: say(prefix + message), propagate=False)


def autoattack_settings(adversary: AutoAttack) -> dict[str, Any]:
    """The attack objects' settings that decide the result, for the record."""
    return {
        name: {setting: getattr(getattr(adversary, name), setting) for setting in settings}
        for name, settings in ATTACK_OPTIONS.items()
    }
