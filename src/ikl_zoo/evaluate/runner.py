"""``evaluate``: clean and AutoAttack robust accuracy in fixed chunks, resumable and sharded over ranks.

Chunk k holds examples ``k * chunk_size`` to ``(k + 1) * chunk_size`` and is attacked with seed
``seed + k`` by a fresh ``AutoAttack``, so an example's flag depends neither on how many processes run
nor on whether the run was interrupted. With the examples in one chunk, the flags are those of
``AutoAttack(..., seed=seed).run_standard_evaluation(x, y, batch_size=batch_size)``.

AutoAttack's random starts depend on how a chunk is cut into batches, so a flag depends on the batch size
too: the size is part of the run's state. ``batch_size="auto"`` is resolved once per run (the minimum over
ranks), halved for the rest of the run on out-of-memory, and kept in the run directory, so a resumed run
goes on at the size the interrupted one had reached; each chunk records the size it ran at.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ikl_zoo import __version__
from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate.attacks import (
    attack_chunk,
    autoattack_settings,
    build_adversary,
    check_attack_options,
    check_eps,
    check_square_success,
    collect_autoattack_warnings,
    resolve_attacks,
    run_checks,
)
from ikl_zoo.evaluate.distributed import Shard, current_shard
from ikl_zoo.evaluate.prepare import (
    CountingModel,
    auto_batch_size,
    check_fp32,
    check_inputs,
    data_digest,
    evaluation_mode,
    free_memory,
    is_out_of_memory,
    resolve_device,
    weights_digest,
)
from ikl_zoo.evaluate.result import EvalResult
from ikl_zoo.evaluate.store import ChunkOutcome, RunDir

_T = TypeVar("_T")

DEFAULT_CHUNK_SIZE = 500
"""Examples per chunk: the unit of resumption and of sharding (about a minute of H100 time per chunk
for a robust WRN-28-10 under standard AutoAttack)."""


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    version: str = "standard",
    attacks: Sequence[str] | None = None,
    attack_options: Mapping[str, Mapping[str, float]] | None = None,
    seed: int = 0,
    batch_size: int | str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    device: str | torch.device | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    channels_last: bool | None = None,
    compile_model: bool = False,
    model_id: str | None = None,
    dataset: str | None = None,
    published: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Clean and AutoAttack robust accuracy of ``model`` on images ``x`` (N x C x H x W, in [0, 1]), ``y``.

    ``version`` is AutoAttack's (standard, plus, rand, or custom with ``attacks`` and optional
    ``attack_options`` such as ``{"apgd": {"n_iter": 10}}``). Chunk k is attacked with seed ``seed + k``
    (so ``seed + number_of_chunks - 1`` must stay below 2**63), torch's global RNG seeded alike for its
    clean pass, so a randomised defence resumes exactly too.

    The flags depend on the batch size, so it is fixed per run: ``batch_size="auto"`` takes the largest
    batch that fits (at most ``chunk_size``; every rank the same) and halves it on out-of-memory for the
    unfinished chunk and all later ones; with ``out`` the size is kept there and a resumed run continues
    with it instead of probing again. ``provenance["chunk_batch_sizes"]`` gives each chunk's size, and a
    warning says when they differ.

    With ``out``, each finished chunk is saved there and ``resume=True`` continues an interrupted run
    (refusing one made with other arguments; starting a new one, with a note, where there is none).
    ``device=None`` keeps the model where it is; the model is put in eval mode with frozen weights for the
    run and restored afterwards, and the caller's RNG state is restored too. Under ``torch.distributed``
    the chunks are dealt to the ranks and every rank returns the merged result.
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    attack_list = resolve_attacks(version=version, norm=norm, attacks=attacks)
    options = check_attack_options(attack_options, version=version)
    check_eps(eps, norm=norm)
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise EvaluationError(f"chunk size must be a positive integer, got {chunk_size!r}")
    if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
        raise EvaluationError(f"batch size must be a positive integer or 'auto', got {batch_size!r}")
    check_inputs(x, y)
    n_examples = x.shape[0]
    n_chunks = -(-n_examples // chunk_size)
    _check_seed(seed, n_chunks)
    check_fp32(model)
    device = resolve_device(device, model)
    model.to(device)
    x, y = x.detach().to("cpu"), y.detach().to("cpu", torch.int64)
    channels_last = device.type == "cuda" if channels_last is None else channels_last

    shard = current_shard()
    if shard.active and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    identity = {
        "model_id": model_id or type(model).__name__,
        "dataset": dataset,
        "weights_sha256": weights_digest(model),
        "data_sha256": data_digest(x, y),
        "n_examples": n_examples,
        "eps": float(eps),
        "norm": norm,
        "version": version,
        "attacks": attack_list,
        "attack_options": options,
        "seed": seed,
        "chunk_size": chunk_size,
        "batch_size": batch_size,
    }
    run_dir = RunDir(out) if out is not None else None
    if run_dir is not None:
        _open_run_dir(run_dir, identity, resume=resume, shard=shard, settings={
            "channels_last": channels_last, "compile": compile_model, "device": str(device),
        })

    auto = batch_size == "auto"
    largest_batch = min(chunk_size, n_examples)
    rng_devices = [device] if device.type == "cuda" else []
    with evaluation_mode(model, device, channels_last=channels_last), torch.random.fork_rng(
        devices=rng_devices, device_type="cuda"
    ):
        network = torch.compile(model) if compile_model else model
        counting = CountingModel(network, channels_last=channels_last)
        done: dict[int, ChunkOutcome] = {}
        recorded_batch_size = None
        if run_dir is not None and shard.is_main:
            for index in range(n_chunks):
                start, stop = _chunk_bounds(index, chunk_size, n_examples)
                outcome = run_dir.load_chunk(
                    index, start=start, stop=stop, seed=seed + index, attacks=attack_list
                )
                if outcome is not None:
                    done[index] = outcome
            if auto:
                recorded_batch_size = run_dir.read_batch_size(limit=largest_batch)
                if recorded_batch_size is None and done:  # a run whose batch_size.json was deleted
                    recorded_batch_size = min(outcome.batch_size for outcome in done.values())
        pending, recorded_batch_size = shard.broadcast(
            ([index for index in range(n_chunks) if index not in done], recorded_batch_size)
        )
        mine = pending[shard.rank::shard.world_size]

        save_batch_size = run_dir.write_batch_size if run_dir is not None and auto else None
        if not auto:
            run_batch_size = batch_size
        elif recorded_batch_size is not None:
            run_batch_size = recorded_batch_size
        elif pending:  # every rank the same size, so a flag does not depend on the rank that ran its chunk
            probed = (
                auto_batch_size(model, x, device=device, limit=largest_batch, channels_last=channels_last)
                if mine else largest_batch
            )
            run_batch_size = min(shard.all_gather(probed))
        else:
            run_batch_size = largest_batch
        if save_batch_size is not None and pending:
            save_batch_size(run_batch_size)

        new_outcomes: list[ChunkOutcome] = []
        runner = _ChunkRunner(
            counting, x, y, eps=eps, norm=norm, version=version, attacks=attack_list, options=options,
            seed=seed, chunk_size=chunk_size, batch_size=run_batch_size, auto=auto,
            on_back_off=save_batch_size, device=device, n_chunks=n_chunks,
            progress=progress and shard.is_main, rank=shard.rank,
        )
        # Round r runs pending chunks r * world_size ... on ranks 0 ...; between rounds the ranks agree on
        # the smallest batch size, so an out-of-memory back-off on one rank holds for every later chunk.
        world = shard.world_size
        rounds = [pending[start:start + world] for start in range(0, len(pending), world)]
        with tqdm(
            total=sum(_chunk_size(index, chunk_size, n_examples) for index in mine),
            desc="AutoAttack" + (f" (rank 0 of {shard.world_size})" if shard.active else ""),
            unit="img", disable=not (progress and shard.is_main), dynamic_ncols=True,
        ) as overall:
            for chunk_round in rounds:
                if shard.rank < len(chunk_round):
                    outcome = runner.run(chunk_round[shard.rank])
                    if run_dir is not None:
                        run_dir.save_chunk(outcome)
                    new_outcomes.append(outcome)
                    overall.update(outcome.stop - outcome.start)
                    survived = sum(sum(o.robust_flags) for o in new_outcomes)
                    attacked = sum(o.stop - o.start for o in new_outcomes)
                    overall.set_postfix_str(f"robust {survived}/{attacked}")
                if auto and shard.active:
                    agreed = min(shard.all_gather(runner.batch_size))
                    if agreed < runner.batch_size:
                        runner.batch_size = agreed
                        if save_batch_size is not None:
                            save_batch_size(agreed)

    gathered = shard.all_gather([outcome.to_dict() for outcome in new_outcomes])
    for outcomes in gathered:
        for data in outcomes:
            outcome = ChunkOutcome.from_dict(data)
            done[outcome.index] = outcome

    result_data = None
    if shard.is_main:
        extra = {
            "started": started_at,
            "resumed_chunks": n_chunks - len(pending),
            "world_size": shard.world_size,
            "channels_last": channels_last,
            "torch_compile": compile_model,
            "autoattack_settings": runner.settings,
            **(provenance or {}),
        }
        result = _merge(
            [done[index] for index in range(n_chunks)], identity=identity, extra_provenance=extra,
            published=published, wall_seconds=time.perf_counter() - started,
        )
        result_data = result.to_dict()
        if run_dir is not None:
            run_dir.save_result(result_data)
    return EvalResult.from_dict(shard.broadcast(result_data))


def _check_seed(seed: Any, n_chunks: int) -> None:
    """Chunk k's seed, ``seed + k``, goes to ``torch.manual_seed`` and AutoAttack, which take int64."""
    valid = isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
    if not (valid and seed + n_chunks - 1 < 2**63):
        raise EvaluationError(
            f"seed must be an integer with 0 <= seed and seed + {n_chunks - 1} (the last chunk's seed) "
            f"< 2**63, got {seed!r}: pass a smaller --seed"
        )


def _open_run_dir(
    run_dir: RunDir, identity: dict[str, Any], *, resume: bool, shard: Shard, settings: dict[str, Any]
) -> None:
    """Every rank validates before anyone writes, and rank 0 writes before the others; a failure on any
    rank is raised on every rank, so none waits for the others forever."""
    manifest, problem = _attempt(lambda: run_dir.check(identity, resume=resume))
    _raise_first(shard.all_gather(problem))
    if resume and manifest is None and shard.is_main:
        tqdm.write(f"--resume: {run_dir.path} holds no run yet; starting a new one there")

    def write() -> None:
        run_dir.write_manifest(identity, settings=settings)

    _raise_first([shard.broadcast(_attempt(write)[1] if shard.is_main else None)])
    _raise_first(shard.all_gather(_attempt(write)[1]))  # ranks on another machine keep their own copy


def _attempt(action: Callable[[], _T]) -> tuple[_T | None, str | None]:
    """``action``'s value, or the message of the EvaluationError it raised."""
    try:
        return action(), None
    except EvaluationError as error:
        return None, str(error)


def _raise_first(problems: list[str | None]) -> None:
    for problem in problems:
        if problem is not None:
            raise EvaluationError(problem)


def _chunk_bounds(index: int, chunk_size: int, n_examples: int) -> tuple[int, int]:
    start = index * chunk_size
    return start, min(start + chunk_size, n_examples)


def _chunk_size(index: int, chunk_size: int, n_examples: int) -> int:
    start, stop = _chunk_bounds(index, chunk_size, n_examples)
    return stop - start


class _ChunkRunner:
    """Attacks one chunk at a time with a fresh AutoAttack seeded ``seed + index``."""

    def __init__(
        self, counting: CountingModel, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
        version: str, attacks: list[str], options: dict[str, dict[str, float]], seed: int, chunk_size: int,
        batch_size: int, auto: bool, on_back_off: Callable[[int], None] | None, device: torch.device,
        n_chunks: int, progress: bool, rank: int,
    ) -> None:
        self.counting, self.x, self.y = counting, x, y
        self.eps, self.norm, self.version, self.attacks, self.options = eps, norm, version, attacks, options
        self.seed, self.chunk_size, self.batch_size, self.auto = seed, chunk_size, batch_size, auto
        self.on_back_off = on_back_off
        self.device, self.n_chunks, self.progress, self.rank = device, n_chunks, progress, rank
        self.checked = False
        self.settings = autoattack_settings(self._adversary(seed))
        self.device_name = _device_name(device)

    def _adversary(self, seed: int):
        return build_adversary(
            self.counting, eps=self.eps, norm=self.norm, version=self.version, attacks=self.attacks,
            seed=seed, device=self.device, attack_options=self.options,
        )

    def run(self, index: int) -> ChunkOutcome:
        start, stop = _chunk_bounds(index, self.chunk_size, len(self.x))
        x, y = self.x[start:stop], self.y[start:stop]
        before = self.counting.passes()
        warnings: list[str] = []
        with collect_autoattack_warnings() as autoattack_warnings:
            while True:
                adversary = self._adversary(self.seed + index)
                try:
                    checks_seconds = self._checks(adversary, x, y)
                    # AutoAttack seeds before each attack, not before its clean pass: seed that too.
                    torch.manual_seed(self.seed + index)
                    found = attack_chunk(
                        adversary, x, y, batch_size=self.batch_size,
                        step_counter=self.counting.set_on_forward, progress=self.progress,
                        label=f"chunk {index + 1}/{self.n_chunks} ",
                    )
                    break
                except RuntimeError as error:
                    if not is_out_of_memory(error):
                        raise
                    del adversary
                    free_memory()
                    if not self.auto or self.batch_size == 1:
                        raise EvaluationError(
                            f"out of GPU memory at batch size {self.batch_size}: pass a smaller --batch-size "
                            "(or auto)"
                        ) from None
                    message = (
                        f"out of memory at batch size {self.batch_size} in chunk {index}: "
                        f"redoing the chunk, and running the later ones, at {self.batch_size // 2}"
                    )
                    tqdm.write(message)
                    warnings.append(message)
                    self.batch_size //= 2
                    if self.on_back_off is not None:
                        self.on_back_off(self.batch_size)
        after = self.counting.passes()
        return ChunkOutcome(
            index=index, start=start, stop=stop, seed=self.seed + index, batch_size=self.batch_size,
            clean_flags=found.clean_flags.tolist(), robust_flags=found.robust_flags.tolist(),
            attack_flags={name: flags.tolist() for name, flags in found.attack_flags.items()},
            timings={"checks": checks_seconds, **found.timings},
            model_passes={key: after[key] - before[key] for key in after},
            max_perturbation=found.max_perturbation, device=self.device_name, rank=self.rank,
            warnings=[*autoattack_warnings, *warnings],
        )

    def _checks(self, adversary, x: torch.Tensor, y: torch.Tensor) -> float:
        """AutoAttack's checks, once per process: the first chunk it runs is as good a sample as any."""
        if self.checked:
            return 0.0
        started = time.perf_counter()
        with torch.no_grad():
            n_classes = run_checks(adversary, x, y, batch_size=self.batch_size)
        label_max = int(self.y.max())
        if label_max >= n_classes:
            raise EvaluationError(
                f"the labels go up to {label_max} but the model has {n_classes} outputs: "
                "wrong --dataset for this model?"
            )
        self.checked = True
        return time.perf_counter() - started


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _merge(
    outcomes: list[ChunkOutcome],
    *,
    identity: dict[str, Any],
    extra_provenance: dict[str, Any],
    published: Mapping[str, Any] | None,
    wall_seconds: float,
) -> EvalResult:
    import pyautoattack

    clean_flags = [flag for outcome in outcomes for flag in outcome.clean_flags]
    robust_flags = [flag for outcome in outcomes for flag in outcome.robust_flags]
    n = len(clean_flags)
    attacks = identity["attacks"]
    per_attack = {
        attack: sum(flag for outcome in outcomes for flag in outcome.attack_flags[attack]) / n
        for attack in attacks
    }
    clean_acc, robust_acc = sum(clean_flags) / n, sum(robust_flags) / n

    timings: dict[str, float] = {"wall": wall_seconds}
    passes: dict[str, int] = {}
    for outcome in outcomes:
        for key, seconds in outcome.timings.items():
            timings[key] = timings.get(key, 0.0) + seconds
        for key, count in outcome.model_passes.items():
            passes[key] = passes.get(key, 0) + count
    timings["total"] = sum(sum(outcome.timings.values()) for outcome in outcomes)

    warnings: list[str] = []
    with collect_autoattack_warnings() as square_warning:
        check_square_success(per_attack, clean_acc=clean_acc)
    batch_sizes = [outcome.batch_size for outcome in outcomes]
    mixed = [_describe_batch_sizes(batch_sizes)] if len(set(batch_sizes)) > 1 else []
    for message in [*(m for outcome in outcomes for m in outcome.warnings), *square_warning, *mixed]:
        if message not in warnings:
            warnings.append(message)

    provenance = {
        "ikl_zoo": __version__,
        "torch": torch.__version__,
        "pyautoattack": pyautoattack.__version__,
        "python": platform.python_version(),
        "devices": sorted({outcome.device for outcome in outcomes}),
        "precision": "fp32 (TF32 and autocast off)",
        "weights_sha256": identity["weights_sha256"],
        "data_sha256": identity["data_sha256"],
        "attack_options": identity["attack_options"],
        "chunk_batch_sizes": batch_sizes,
        "max_perturbation": max((outcome.max_perturbation for outcome in outcomes), default=0.0),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra_provenance,
    }
    requested = identity["batch_size"]
    return EvalResult(
        model_id=identity["model_id"],
        dataset=identity["dataset"] or "unknown",
        threat_model=identity["norm"],
        eps=identity["eps"],
        version=identity["version"],
        attacks=list(attacks),
        n_examples=n,
        seed=identity["seed"],
        batch_size=requested if isinstance(requested, int) else min(batch_sizes),
        chunk_size=identity["chunk_size"],
        clean_acc=clean_acc,
        robust_acc=robust_acc,
        clean_flags=clean_flags,
        robust_flags=robust_flags,
        per_attack=per_attack,
        timings=timings,
        model_passes=passes,
        provenance=provenance,
        published=dict(published) if published is not None else None,
        warnings=warnings,
    )


def _describe_batch_sizes(batch_sizes: list[int]) -> str:
    """``chunks ran at different batch sizes: 10 (chunk 0), 5 (chunks 1-3, 5)`` for a mixed run."""
    groups: dict[int, list[list[int]]] = {}
    for index, size in enumerate(batch_sizes):
        ranges = groups.setdefault(size, [])
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    parts = []
    for size, ranges in groups.items():
        listed = ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in ranges)
        plural = "s" if len(ranges) > 1 or ranges[0][0] != ranges[0][1] else ""
        parts.append(f"{size} (chunk{plural} {listed})")
    return (
        f"chunks ran at different batch sizes: {', '.join(parts)} (an out-of-memory back-off); "
        "a flag depends on its chunk's batch size"
    )
