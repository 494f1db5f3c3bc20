"""``evaluate``: chunk k holds examples from ``k * chunk_size`` and is attacked with seed ``seed + k`` by
a fresh AutoAttack, so a flag depends neither on the number of ranks nor on interruptions. It does depend on
the batch size (AutoAttack's random starts): an ``auto`` size, halved on out-of-memory, is kept in the run
directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate import attacks as aa
from ikl_zoo.evaluate import prepare
from ikl_zoo.evaluate.distributed import Shard, current_shard
from ikl_zoo.evaluate.estimate import Estimate, attack_passes, calibrate
from ikl_zoo.evaluate.merge import merge_chunks
from ikl_zoo.evaluate.prepare import auto_batch_size
from ikl_zoo.evaluate.result import EvalResult, ModelFacts
from ikl_zoo.evaluate.settings import EvalSettings
from ikl_zoo.evaluate.store import ChunkOutcome, RunDir, format_utc, now_utc, open_run_dir, run_dir_lock
from ikl_zoo.evaluate.summary import wilson_interval

_FACTS = {item.name for item in fields(ModelFacts)}


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, settings: EvalSettings | None = None,
    facts: ModelFacts | None = None, out: str | os.PathLike[str] | None = None, resume: bool = False,
    progress: bool = True, **keywords: Any,
) -> EvalResult:
    """Clean and AutoAttack robust accuracy of ``model`` on images ``x`` (N x C x H x W, in [0, 1]), ``y``.

    ``settings`` say how, or their fields come as keywords (``model_id``, ``published``, ``provenance`` make
    ``facts``); ``n_examples`` becomes ``len(x)``. With ``out``, each finished chunk is saved there and
    ``resume=True`` continues an interrupted run. The model's mode, weights and the caller's RNG state are
    restored afterwards; under ``torch.distributed`` every rank returns the merged result.
    """
    started = time.perf_counter()
    prepare.check_inputs(x, y)
    settings, facts = _settings_and_facts(settings, facts, keywords, model=model, n_examples=x.shape[0])
    with run_dir_lock(out, shard=current_shard()) if out is not None else nullcontext():
        job = _start(model, x, y, settings=settings, facts=facts)
        if out is not None:
            job.run_dir = RunDir(out)
            open_run_dir(job.run_dir, job.identity, settings=job.settings, resume=resume, shard=job.shard)
        result_data = _run(model, job, progress=progress and job.shard.is_main, started=started)
    return EvalResult.from_dict(job.shard.broadcast(result_data))


def _run(model: nn.Module, job: _Job, *, progress: bool, started: float) -> dict[str, Any] | None:
    """Attack the pending chunks, then merge every chunk into the result (on rank 0; None on the others)."""
    with _prepared(model, job) as network:
        done, pending, batch_size = _plan(job, network)
        runner = _ChunkRunner(job, network, batch_size=batch_size, progress=progress)
        if runner.progress != "off" and pending:
            tqdm.write(str(runner.estimate(sum(stop - start for start, stop in map(job.bounds, pending)))))
        done.update(_run_pending(job, runner, pending))
    return _finish(job, done, pending=pending, runner=runner, started=started)


def estimate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, settings: EvalSettings) -> Estimate:
    """How long ``evaluate`` would take on these examples, from a calibration pass; nothing is written."""
    prepare.check_inputs(x, y)
    job = _start(model, x, y, settings=replace(settings, n_examples=x.shape[0]), facts=ModelFacts("estimate"))
    with _prepared(model, job) as network:
        batch_size = _starting_batch_size(job, network, pending=[0], recorded=None)
        return _ChunkRunner(job, network, batch_size=batch_size, progress=False).estimate(x.shape[0])


@contextmanager
def _prepared(model: nn.Module, job: _Job) -> Iterator[nn.Module]:
    """The network as attacked: evaluation mode at the run's precision, compiled if asked; RNG restored."""
    rng_devices, settings = [job.device] if job.device.type == "cuda" else [], job.settings
    with prepare.evaluation_mode(
        model, job.device, channels_last=settings.channels_last, precision=settings.precision
    ), torch.random.fork_rng(devices=rng_devices, device_type="cuda"):
        network = torch.compile(model) if settings.compile else model
        bf16 = settings.precision == "bf16"
        yield prepare.Bf16Autocast(network, device_type=job.device.type) if bf16 else network


def _finish(
    job: _Job, done: dict[int, ChunkOutcome], *, pending: list[int], runner: _ChunkRunner, started: float
) -> dict[str, Any] | None:
    """Rank 0 merges every chunk into the result and saves it, or shows the stored one of a run finished
    before; the other ranks get it from rank 0."""
    if not job.shard.is_main:
        return None
    earlier = [index for index in range(job.n_chunks) if index not in pending]
    if not pending and (stored := job.run_dir and job.run_dir.read_result()):
        made = format_utc(stored["provenance"]["finished"])
        tqdm.write(f"{job.run_dir.path}: already complete (made {made}); showing the stored result")
        return {**stored, "provenance": {**stored["provenance"], "resumed_chunks": job.n_chunks}}
    extra = {
        "started": job.started_at, "resumed_chunks": len(earlier), "world_size": job.shard.world_size,
        "channels_last": job.settings.channels_last, "torch_compile": job.settings.compile,
        "autoattack_settings": runner.autoattack_settings, "precision_in_force": runner.precision_report,
        **{key: job.identity[key] for key in ("weights_sha256", "data_sha256")},
    }
    earlier_seconds = sum(sum(done[index].timings.values()) for index in earlier)
    wall = {"wall": time.perf_counter() - started, "earlier_runs": earlier_seconds}
    result = merge_chunks(
        [done[index] for index in range(job.n_chunks)], settings=job.settings, facts=job.facts,
        attacks=job.attacks, extra=extra, wall=wall,
    ).to_dict()
    if job.run_dir is not None:
        job.run_dir.save_result(result)
    return result


def _settings_and_facts(
    settings: EvalSettings | None, facts: ModelFacts | None, keywords: dict[str, Any], *, model: nn.Module,
    n_examples: int,
) -> tuple[EvalSettings, ModelFacts]:
    """The settings and facts, whole or from keywords; the settings' size is that of the examples given."""
    fact_keywords = {name: keywords.pop(name) for name in list(keywords) if name in _FACTS}
    if settings is None:
        device = keywords.pop("device", None)
        settings = EvalSettings(**keywords, device=None if device is None else str(device))
    elif keywords:
        raise TypeError(f"pass settings or their fields, not both ({', '.join(keywords)})")
    facts = replace(facts or ModelFacts(), **fact_keywords)
    facts = replace(facts, model_id=facts.model_id or type(model).__name__)
    return replace(settings, n_examples=n_examples), facts


@dataclass
class _Job:
    """One checked evaluation: its settings, the examples (on the CPU), where it runs, where it is kept."""

    settings: EvalSettings
    facts: ModelFacts
    x: torch.Tensor
    y: torch.Tensor
    attacks: list[str]
    """The attacks run, in order: the version's own, or the custom list."""
    device: torch.device
    shard: Shard
    identity: dict[str, Any]
    """What a resumed run must share: the settings that change a flag, the model's weights and the data."""
    run_dir: RunDir | None = None
    started_at: str = field(default_factory=now_utc)

    def __post_init__(self) -> None:
        self.n_chunks, self.auto = self.settings.n_chunks, self.settings.batch_size == "auto"
        self.largest_batch = min(self.settings.chunk_size, self.settings.n_examples)

    def bounds(self, index: int) -> tuple[int, int]:
        start = index * self.settings.chunk_size
        return start, min(start + self.settings.chunk_size, self.settings.n_examples)


def _start(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, settings: EvalSettings, facts: ModelFacts
) -> _Job:
    """Check everything an attack would trip over later, then place the model on its device."""
    attacks = aa.resolve_attacks(version=settings.version, norm=settings.norm, attacks=settings.attacks)
    options = aa.check_attack_options(settings.attack_options, version=settings.version)
    _check_seed(settings.seed, settings.n_chunks)
    prepare.check_fp32(model)
    device, shard = prepare.resolve_device(settings.device, model), current_shard()
    model.to(device)
    if shard.active and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    channels_last = device.type == "cuda" if settings.channels_last is None else settings.channels_last
    settings = replace(settings, attack_options=options, device=str(device), channels_last=channels_last)
    x, y = x.detach().to("cpu"), y.detach().to("cpu", torch.int64)
    identity = {"model_id": facts.model_id, "weights_sha256": prepare.weights_digest(model)}
    identity.update({"data_sha256": prepare.data_digest(x, y), **settings.identity(), "attacks": attacks})
    return _Job(settings, facts, x, y, attacks, device, shard, identity)


def _plan(job: _Job, model: nn.Module) -> tuple[dict[int, ChunkOutcome], list[int], int]:
    """The chunks finished before (on rank 0), those still to run (every rank), and the batch size."""
    done, recorded = {}, None
    if job.run_dir is not None and job.shard.is_main:
        found = (job.run_dir.load_chunk(i, job.bounds(i), seed=job.settings.seed + i, attacks=job.attacks)
                 for i in range(job.n_chunks))
        done = {outcome.index: outcome for outcome in found if outcome is not None}
        if job.auto:  # the size an auto run reached; if batch_size.json was deleted, its finished chunks'
            recorded = job.run_dir.read_batch_size(limit=job.largest_batch) or min(
                (outcome.batch_size for outcome in done.values()), default=None
            )
    pending, recorded = job.shard.broadcast(([i for i in range(job.n_chunks) if i not in done], recorded))
    batch_size = _starting_batch_size(job, model, pending=pending, recorded=recorded)
    if job.auto and job.run_dir is not None and pending:
        job.run_dir.write_batch_size(batch_size)
    return done, pending, batch_size


def _starting_batch_size(job: _Job, model: nn.Module, *, pending: list[int], recorded: int | None) -> int:
    """The size asked for, the one an auto run reached, or (every rank the same) the largest that fits."""
    if not job.auto:
        return job.settings.batch_size
    if recorded is not None or not pending:
        return recorded or job.largest_batch
    probed = job.largest_batch
    if pending[job.shard.rank::job.shard.world_size]:  # this rank has chunks to run
        probed = auto_batch_size(
            model, job.x, device=job.device, limit=job.largest_batch, channels_last=job.settings.channels_last
        )
    return min(job.shard.all_gather(probed))


def _run_pending(job: _Job, runner: _ChunkRunner, pending: list[int]) -> dict[int, ChunkOutcome]:
    """Round r runs pending chunks r * world_size ... on ranks 0 ...; between rounds the ranks agree on
    the smallest batch size, so an out-of-memory back-off on one rank holds for every later chunk."""
    shard = job.shard
    rounds = [pending[start:start + shard.world_size] for start in range(0, len(pending), shard.world_size)]
    outcomes: list[ChunkOutcome] = []
    with tqdm(
        total=sum(stop - start for start, stop in map(job.bounds, pending[shard.rank::shard.world_size])),
        desc="AutoAttack" + (f" (rank 0 of {shard.world_size})" if shard.active else ""),
        unit="img", disable=runner.progress != "bars" or not pending, dynamic_ncols=True,
    ) as overall:
        for chunk_round in rounds:
            if shard.rank < len(chunk_round):
                outcomes.append(runner.run(chunk_round[shard.rank]))
                overall.update(outcomes[-1].stop - outcomes[-1].start)
                overall.set_postfix_str(_robust_so_far(outcomes))
                if runner.progress == "lines":
                    aa.say(f"chunk {chunk_round[shard.rank] + 1}/{job.n_chunks}: {_robust_so_far(outcomes)}")
            if job.auto and shard.active:  # the smallest of all ranks, for every rank's later chunks
                runner.set_batch_size(min(shard.all_gather(runner.batch_size)))
    gathered = shard.all_gather([asdict(outcome) for outcome in outcomes])  # every rank's, on every rank
    return {data["index"]: ChunkOutcome(**data) for rank_outcomes in gathered for data in rank_outcomes}


def _robust_so_far(outcomes: list[ChunkOutcome]) -> str:
    """``robust 412/1000 = 41.2% (95% CI 38.2-44.3%)``: the Wilson interval of the chunks run so far."""
    survived = sum(sum(outcome.robust_flags) for outcome in outcomes)
    attacked = sum(outcome.stop - outcome.start for outcome in outcomes)
    low, high = wilson_interval(survived, attacked)
    share = f"{100 * survived / attacked:.1f}% (95% CI {100 * low:.1f}-{100 * high:.1f}%)"
    return f"robust {survived}/{attacked} = {share}"


def _check_seed(seed: Any, n_chunks: int) -> None:
    """Chunk k's seed, ``seed + k``, goes to ``torch.manual_seed`` and AutoAttack, which take int64."""
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63 - n_chunks + 1):
        problem = f"seed must be an integer with 0 <= seed and seed + {n_chunks - 1} (the last chunk's seed)"
        raise EvaluationError(f"{problem} < 2**63, got {seed!r}", fix="pass a smaller --seed")


class _ChunkRunner:
    """Attacks one chunk at a time with a fresh AutoAttack seeded ``seed + index``, and saves it."""

    def __init__(self, job: _Job, network: nn.Module, *, batch_size: int, progress: bool) -> None:
        self.job, self.network, self.batch_size, self.checked = job, network, batch_size, False
        self.progress = aa.progress_style(progress)
        self.counting = prepare.CountingModel(network, channels_last=job.settings.channels_last)
        self.autoattack_settings = aa.autoattack_settings(self._adversary(job.settings.seed))
        self.device_name = prepare.device_name(job.device)
        self.precision_report = prepare.precision_report(job.settings.precision, job.device)
        self.precision_warnings = prepare.precision_warnings(job.settings.precision)

    def estimate(self, n_examples: int) -> Estimate:
        """The run's wall time for ``n_examples``: the attacks' pass counts, timed on the first batch."""
        job, adversary = self.job, self._adversary(self.job.settings.seed)
        backward, forward, clean = calibrate(self.network, job.x, job.y, batch_size=self.batch_size,
                                             device=job.device)
        def seconds(passes: list[tuple[int, int]]) -> float:
            return (forward + clean * sum(fb * backward + f * forward for fb, f in passes)) * n_examples

        least = seconds([attack_passes(adversary, job.attacks[0], first_run=True)])
        most = seconds([attack_passes(adversary, attack) for attack in job.attacks])
        return Estimate(least_seconds=least, seconds=most, n_examples=n_examples, device=self.device_name)

    def _adversary(self, seed: int):
        settings = self.job.settings
        return aa.build_adversary(
            self.counting, eps=settings.eps, norm=settings.norm, version=settings.version,
            attacks=self.job.attacks, seed=seed, device=self.job.device,
            attack_options=settings.attack_options,
        )

    def run(self, index: int) -> ChunkOutcome:
        (start, stop), seed = self.job.bounds(index), self.job.settings.seed + index
        before = dict(self.counting.counts)
        with aa.collect_autoattack_warnings() as autoattack_warnings:
            x, y = self.job.x[start:stop].to(self.job.device), self.job.y[start:stop].to(self.job.device)
            found, checks_seconds, back_offs = self._attack(index, x, y)
        outcome = ChunkOutcome(
            index=index, start=start, stop=stop, seed=seed, batch_size=self.batch_size,
            clean_flags=found.clean_flags.tolist(), robust_flags=found.robust_flags.tolist(),
            attack_flags={name: flags.tolist() for name, flags in found.attack_flags.items()},
            timings={"checks": checks_seconds, **found.timings},
            model_passes={key: count - before[key] for key, count in self.counting.counts.items()},
            max_perturbation=found.max_perturbation, device=self.device_name, rank=self.job.shard.rank,
            warnings=[*self.precision_warnings, *autoattack_warnings, *back_offs],
        )
        if self.job.run_dir is not None:
            self.job.run_dir.save_chunk(outcome)
        return outcome

    def _attack(self, index: int, x: torch.Tensor, y: torch.Tensor):
        """AutoAttack on the chunk, redone at half the batch size after each out-of-memory error."""
        back_offs: list[str] = []
        seed = self.job.settings.seed + index
        while True:
            try:
                adversary = self._adversary(seed)
                checks_seconds = self._checks(adversary, x, y)
                torch.manual_seed(seed)  # AutoAttack seeds before each attack, not before its clean pass
                found = aa.attack_chunk(
                    adversary, x, y, batch_size=self.batch_size, progress=self.progress,
                    step_counter=partial(setattr, self.counting, "on_forward"),
                    label=f"chunk {index + 1}/{self.job.n_chunks} ",
                )
                return found, checks_seconds, back_offs
            except RuntimeError as error:
                if "out of memory" not in str(error).lower():  # torch.cuda.OutOfMemoryError's included
                    raise
            adversary = None  # out of the except block: the traceback's tensors are gone too
            prepare.free_memory()
            if not self.job.auto or self.batch_size == 1:
                problem = f"out of GPU memory at batch size {self.batch_size}"
                raise EvaluationError(problem, fix="pass a smaller --batch-size (or auto)")
            back_offs.append(f"out of memory at batch size {self.batch_size} in chunk {index}: redoing the "
                             f"chunk, and running the later ones, at {self.batch_size // 2}")
            tqdm.write(back_offs[-1])
            self.set_batch_size(self.batch_size // 2)

    def set_batch_size(self, batch_size: int) -> None:
        """A smaller batch size for the later chunks, kept in the run directory for a resumed run."""
        if batch_size < self.batch_size and self.job.run_dir is not None:
            self.job.run_dir.write_batch_size(batch_size)
        self.batch_size = min(self.batch_size, batch_size)

    def _checks(self, adversary, x: torch.Tensor, y: torch.Tensor) -> float:
        """AutoAttack's checks, once per process: the first chunk it runs is as good a sample as any."""
        if self.checked:
            return 0.0
        started = time.perf_counter()
        with torch.no_grad():
            n_classes = aa.run_checks(adversary, x, y, batch_size=self.batch_size)
        if (label_max := int(self.job.y.max())) >= n_classes:
            problem = f"the labels go up to {label_max} but the model has {n_classes} outputs"
            raise EvaluationError(problem, fix="wrong --dataset for this model?")
        self.checked = True
        return time.perf_counter() - started
