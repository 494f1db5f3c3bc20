"""IKL-AT training: the optimisation step, the epoch loop, checkpoints, resume and the zoo folder at the end.

``out_dir`` holds ``checkpoint.pt`` (the whole training state, rewritten atomically after every epoch),
``history.json`` (one entry per epoch) and, once the last epoch is done, ``model/``: a zoo folder with the
averaged (EMA) weights and a model card that ``load_model``, ``ikl-zoo eval``, ``card`` and ``push`` take as
they are.

Every epoch reseeds the random generators from ``(seed, epoch, rank)`` and shuffles with a sampler seeded the
same way, so an epoch computes the same thing whether the run was interrupted before it or not: on CPU a
resumed run is bit-for-bit the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ikl_zoo import __version__
from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.errors import IklZooError
from ikl_zoo.losses import ClassPrior, ikl_loss
from ikl_zoo.train.attack import ikl_pgd_attack
from ikl_zoo.train.awp import AdversarialWeightPerturbation
from ikl_zoo.train.ema import ModelEMA
from ikl_zoo.train.recipes import Recipe, architecture_config

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
MODEL_DIR_NAME = "model"
CHECKPOINT_FORMAT = "ikl-zoo-train/1"
_CHECKPOINT_KEYS = (
    "recipe", "run", "epoch", "history", "model_id", "model", "optimizer", "ema", "class_prior",
)
AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingError(IklZooError):
    """A training run that cannot start or continue as asked."""


@dataclass
class TrainResult:
    """Where a training run left its checkpoint and zoo folder, and its per-epoch history."""

    recipe: Recipe
    out_dir: Path
    checkpoint: Path
    model_dir: Path | None
    """The zoo folder; None while epochs remain (the run was stopped with ``stop_after_epochs``)."""
    epochs_done: int
    history: list[dict[str, Any]] = field(default_factory=list)


class _AdvCleanForward(nn.Module):
    """Both training forward passes in one module call, so that DDP sees one forward per backward."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_adv: Tensor, x_clean: Tensor) -> tuple[Tensor, Tensor]:
        # Separate calls, adversarial first, as the released code: BatchNorm sees each batch on its own.
        return self.net(x_adv), self.net(x_clean)


class IKLATTrainer:
    """The IKL-AT optimisation step and the state it needs (optimiser, class prior, AWP, EMA, loss scaler).

    ``step`` crafts the adversarial batch, applies AWP when the recipe says so for ``epoch``, takes one SGD
    step on ``CE(z_clean, y) + IKL(z_clean, z_adv)`` and folds the clean logits into the class prior.
    """

    def __init__(
        self,
        net: nn.Module,
        recipe: Recipe,
        *,
        device: torch.device | str,
        amp: str = "off",
        distributed: bool = False,
    ) -> None:
        if amp not in AMP_DTYPES:
            raise TrainingError(f"unknown --amp {amp!r}: choose one of {', '.join(AMP_DTYPES)}")
        self.device = torch.device(device)
        self.recipe = recipe
        self.net = net.to(self.device)
        self.amp_dtype = AMP_DTYPES[amp]
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
        self.class_prior = ClassPrior(recipe.num_classes, temperature=recipe.temperature, device=self.device)
        self.awp = (
            AdversarialWeightPerturbation(self.net, gamma=recipe.awp_gamma, lr=recipe.lr)
            if recipe.awp_gamma > 0
            else None
        )
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        self.ema = ModelEMA(self.net, decay=recipe.ema_decay)
        pair = _AdvCleanForward(self.net)
        if distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_pair: nn.Module = nn.parallel.DistributedDataParallel(pair, device_ids=device_ids)
        else:
            self.forward_pair = pair

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _ikl(self, logits_clean: Tensor, logits_adv: Tensor, y: Tensor, prior: Tensor) -> Tensor:
        recipe = self.recipe
        return ikl_loss(
            logits_clean, logits_adv, y, prior,
            alpha=recipe.alpha, beta=recipe.beta, prior_power=recipe.prior_power,
        )

    def step(self, images: Tensor | Sequence[Tensor], y: Tensor, *, epoch: int) -> dict[str, Tensor]:
        """One training step on a batch (or on ``(view, autoaugment_view)``); returns detached statistics.

        The statistics are sums over the batch (every view counted): ``loss`` (the loss times the number
        of images), ``clean_correct``, ``adv_correct`` and ``images``.
        """
        recipe = self.recipe
        if isinstance(images, Tensor):
            x, labels, first_view = images, y, len(y)
        else:
            if len(images) != 2:
                raise TrainingError("a batch is one tensor of images or a pair (view, autoaugment view)")
            x, labels, first_view = torch.cat(tuple(images)), torch.cat((y, y)), len(y)
        x = x.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        prior = self.class_prior.prior.to(torch.float32)

        eps = recipe.eps_at(epoch)
        x_adv = ikl_pgd_attack(
            self.net, x, labels, prior,
            eps=eps, step_size=recipe.attack_step_size * eps, steps=recipe.attack_steps,
            alpha=recipe.attack_alpha, beta=recipe.attack_beta, amp_dtype=self.amp_dtype,
        )
        self.net.train()

        awp_diff: dict[str, Tensor] = {}
        if self.awp is not None and recipe.uses_awp(epoch):
            # As released: the AWP objective is CE + IKL over the whole batch, views not split.
            def awp_loss(logits_clean: Tensor, logits_adv: Tensor) -> Tensor:
                natural = F.cross_entropy(logits_clean, labels)
                return natural + self._ikl(logits_clean, logits_adv, labels, prior)

            scale = self.scaler.get_scale() if self.scaler is not None else 1.0
            awp_diff = self.awp.compute(x, x_adv, awp_loss, amp_dtype=self.amp_dtype, loss_scale=scale)
            self.awp.perturb(awp_diff)

        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits_adv, logits_clean = self.forward_pair(x_adv, x)
        logits_adv, logits_clean = logits_adv.float(), logits_clean.float()
        self.class_prior.update(logits_clean[:first_view], labels[:first_view])
        natural = F.cross_entropy(logits_clean, labels)
        if first_view == len(labels):
            robust = self._ikl(logits_clean, logits_adv, labels, prior)
        else:
            head, tail = slice(0, first_view), slice(first_view, None)
            robust = self._ikl(logits_clean[head], logits_adv[head], labels[head], prior) + (
                recipe.aug_weight * self._ikl(logits_clean[tail], logits_adv[tail], labels[tail], prior)
            )
        loss = natural + robust
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if awp_diff:
            self.awp.restore(awp_diff)  # type: ignore[union-attr]

        with torch.no_grad():
            count = torch.tensor(float(len(labels)), device=self.device)
            return {
                "loss": loss.detach() * count,
                "clean_correct": (logits_clean.argmax(1) == labels).sum().float(),
                "adv_correct": (logits_adv.argmax(1) == labels).sum().float(),
                "images": count,
            }

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict(),
            "class_prior": self.class_prior.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        self.class_prior.load_state_dict(state["class_prior"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


# --------------------------------------------------------------------------------------------------
# The run: processes, data, epochs, checkpoints
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Processes:
    rank: int = 0
    world_size: int = 1
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def _start_processes(device: str | None) -> tuple[_Processes, torch.device]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1; pick the device (GPU ``LOCAL_RANK``)."""
    asked = _parse_device(device)
    use_cuda = torch.cuda.is_available() if asked is None else asked.type == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise TrainingError("--device cuda asked for, but torch sees no GPU: pass --device cpu")
    if asked is not None and asked.type == "cuda" and (asked.index or 0) >= torch.cuda.device_count():
        raise TrainingError(
            f"--device {device}: torch sees {torch.cuda.device_count()} GPU(s), cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1}"
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Processes(), torch.device(device or ("cuda" if use_cuda else "cpu"))
    created = False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
        created = True
    processes = _Processes(torch.distributed.get_rank(), torch.distributed.get_world_size(), created)
    if use_cuda:
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
        return processes, chosen
    return processes, torch.device("cpu")


def _parse_device(device: str | None) -> torch.device | None:
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise TrainingError(f"unknown --device {device!r}: use cpu, cuda or cuda:N")
    return parsed


def _prepare_out_dir(out_dir: Path) -> None:
    """Fail before the first epoch, not after it, when the run folder cannot take a checkpoint."""
    checkpoint = out_dir / CHECKPOINT_NAME
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise TrainingError(
            f"cannot write the run folder {out_dir} ({error.strerror or error}): choose another --out"
        ) from None
    if checkpoint.exists() and not checkpoint.is_file():
        raise TrainingError(f"{checkpoint} is not a file: remove it or choose another --out")


def _check_finite(net: nn.Module, epoch: int) -> None:
    """A diverged network is never saved: the last checkpoint stays the last finite state."""
    from ikl_zoo.zoo.checkpoints import non_finite_tensors

    non_finite = non_finite_tensors(net.state_dict())
    if non_finite:
        raise TrainingError(
            f"training diverged in epoch {epoch} ({non_finite[0]} is no longer finite); the checkpoint of "
            "the previous epoch is kept: train again with a lower --lr (or --amp off)"
        )


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _recipe_differences(saved: Recipe, given: Recipe) -> list[str]:
    ignored = {"name", "source"}
    saved_values, given_values = saved.to_dict(), given.to_dict()
    return [
        f"{key} (checkpoint {saved_values[key]!r}, now {given_values[key]!r})"
        for key in saved_values
        if key not in ignored and saved_values[key] != given_values[key]
    ]


def load_training_checkpoint(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The training state saved in ``out_dir``, or None if there is none (loaded with ``weights_only``)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which and how to proceed
        from ikl_zoo.zoo.checkpoints import torch_load_reason

        raise TrainingError(
            f"{path} is not a readable training checkpoint ({torch_load_reason(error)}); delete it to restart"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an ikl-zoo training checkpoint; choose another --out")
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing or not isinstance(state["recipe"], dict) or not isinstance(state["run"], dict):
        raise TrainingError(
            f"{path} is damaged (missing or malformed: {', '.join(missing) or 'recipe/run'}); delete it to "
            "restart"
        )
    return state


def resolve_recipe(
    name: str | None,
    *,
    overrides: dict[str, Any],
    out_dir: str | os.PathLike[str],
    resume: bool,
) -> Recipe:
    """The recipe a command line asks for: a preset (default: the dataset's) with overrides, or, when
    resuming a checkpoint with neither given, the checkpoint's recipe as it is.
    """
    from ikl_zoo.train.recipes import get_recipe

    saved = load_training_checkpoint(out_dir) if resume and name is None and not overrides else None
    if saved is not None:
        return Recipe.from_dict(saved["recipe"])
    return get_recipe(name or overrides.get("dataset") or "cifar10", **overrides)


def train_ikl_at(
    recipe: Recipe | None,
    *,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    device: str | None = None,
    amp: str = "off",
    workers: int = 4,
    steps_per_epoch: int | None = None,
    stop_after_epochs: int | None = None,
    model_id: str | None = None,
    download: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train a network with IKL-AT and write a zoo folder with its averaged weights to ``out_dir/model``.

    ``recipe`` may be None when resuming: the checkpoint's is used. ``resume`` continues from
    ``out_dir/checkpoint.pt`` when there is one (and starts afresh otherwise); without it an existing
    checkpoint is an error rather than silently overwritten. ``steps_per_epoch`` caps the batches of each
    epoch (smoke runs); ``stop_after_epochs`` ends this run after that many epochs (e.g. a job time limit),
    to be continued with ``resume``. Under ``torchrun`` each process trains on its share of every batch
    (``recipe.batch_size`` is the global batch) and the class prior is summed over processes.
    """
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    saved = load_training_checkpoint(out_dir)
    if saved is not None and not resume:
        raise TrainingError(
            f"{out_dir} already holds a training checkpoint (epoch {saved['epoch']}/"
            f"{saved['recipe']['epochs']}): pass --resume to continue it, or choose another --out"
        )
    if saved is not None:
        saved_recipe = Recipe.from_dict(saved["recipe"])
        if recipe is not None:
            differences = _recipe_differences(saved_recipe, recipe)
            if differences:
                raise TrainingError(
                    f"the recipe differs from the checkpoint's in {'; '.join(differences)}: resume with the "
                    "same options (or none), or train into another --out"
                )
        recipe = saved_recipe
        if saved["run"]["steps_per_epoch"] != steps_per_epoch:
            raise TrainingError(
                f"the checkpoint was trained with --steps-per-epoch {saved['run']['steps_per_epoch']}; "
                "resume with the same value"
            )
        model_id = model_id or saved["model_id"]
    if recipe is None:
        raise TrainingError(f"no recipe given and no checkpoint in {out_dir} to resume: pass a recipe")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise TrainingError("--steps-per-epoch must be at least 1")
    model_id = model_id or out_dir.resolve().name

    processes, torch_device = _start_processes(device)
    try:
        return _run(
            recipe, saved, processes, torch_device,
            data_dir=data_dir, out_dir=out_dir, checkpoint_path=checkpoint_path, amp=amp, workers=workers,
            steps_per_epoch=steps_per_epoch, stop_after_epochs=stop_after_epochs, model_id=model_id,
            download=download, progress=progress,
        )
    finally:
        if processes.created_group:
            torch.distributed.destroy_process_group()


def _run(
    recipe: Recipe,
    saved: dict[str, Any] | None,
    processes: _Processes,
    device: torch.device,
    *,
    data_dir: str | os.PathLike[str],
    out_dir: Path,
    checkpoint_path: Path,
    amp: str,
    workers: int,
    steps_per_epoch: int | None,
    stop_after_epochs: int | None,
    model_id: str,
    download: bool,
    progress: bool,
) -> TrainResult:
    from ikl_zoo.train.data import augmentation_description, training_dataset
    from ikl_zoo.zoo.checkpoints import model_from_config

    if recipe.batch_size % processes.world_size:
        raise TrainingError(
            f"batch size {recipe.batch_size} does not split over {processes.world_size} processes: "
            "pass a multiple of the process count"
        )
    local_batch = recipe.batch_size // processes.world_size
    architecture = architecture_config(recipe.arch, dataset=recipe.dataset)
    _seed_everything(recipe.seed)  # the same initial weights in every process and every run
    net = model_from_config(architecture)
    trainer = IKLATTrainer(net, recipe, device=device, amp=amp, distributed=processes.world_size > 1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    history: list[dict[str, Any]] = []
    done = 0
    if saved is not None:
        trainer.load_state_dict(saved)
        history, done = list(saved["history"]), int(saved["epoch"])
    run = {"steps_per_epoch": steps_per_epoch, "amp": amp, "world_size": processes.world_size,
           "device": device.type}

    train_set = training_dataset(
        recipe.dataset, data_dir=data_dir, autoaugment=recipe.autoaugment, download=download
    )
    _prepare_out_dir(out_dir)
    sampler = DistributedSampler(
        train_set, num_replicas=processes.world_size, rank=processes.rank, shuffle=True, seed=recipe.seed
    )
    batches = math.ceil(len(sampler) / local_batch)
    if steps_per_epoch is not None:
        batches = min(batches, steps_per_epoch)
    last = recipe.epochs if stop_after_epochs is None else min(recipe.epochs, done + stop_after_epochs)

    bar = tqdm(
        total=batches * max(last - done, 0), disable=not (progress and processes.is_main),
        unit="step", dynamic_ncols=True,
    )
    with bar:
        for epoch in range(done + 1, last + 1):
            epoch_seed = _epoch_seed(recipe.seed, epoch, processes.rank)
            _seed_everything(epoch_seed)
            sampler.set_epoch(epoch)
            loader = DataLoader(
                train_set, batch_size=local_batch, sampler=sampler, num_workers=workers,
                pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(epoch_seed),
            )
            lr, eps = recipe.lr_at(epoch), recipe.eps_at(epoch)
            trainer.set_lr(lr)
            bar.set_description(f"epoch {epoch}/{recipe.epochs}")
            totals = torch.zeros(4, dtype=torch.float64, device=device)
            started = time.perf_counter()
            for index, (images, y) in enumerate(loader):
                if index >= batches:
                    break
                stats = trainer.step(images, y, epoch=epoch)
                totals += torch.stack(
                    [stats["loss"], stats["clean_correct"], stats["adv_correct"], stats["images"]]
                ).double()
                if recipe.ema_every == "step":
                    trainer.ema.update(trainer.net, copy=epoch <= recipe.ema_start_epoch)
                bar.update(1)
                if not bar.disable and (index % 10 == 0 or index == batches - 1):
                    loss_sum, clean, adv, count = totals.tolist()
                    bar.set_postfix(
                        loss=f"{loss_sum / count:.4f}", clean=f"{clean / count:.3f}",
                        adv=f"{adv / count:.3f}", lr=f"{lr:.4g}", eps=f"{eps * 255:.2f}/255",
                    )
            _check_finite(trainer.net, epoch)
            trainer.class_prior.all_reduce()
            trainer.class_prior.step()
            if recipe.ema_every == "epoch":
                trainer.ema.update(trainer.net, copy=epoch <= recipe.ema_start_epoch)
            if processes.world_size > 1:
                torch.distributed.all_reduce(totals)
            seconds = time.perf_counter() - started
            loss_sum, clean, adv, count = totals.tolist()
            record = {
                "epoch": epoch, "lr": lr, "eps": eps, "awp": bool(trainer.awp and recipe.uses_awp(epoch)),
                "loss": loss_sum / count, "clean_acc": clean / count, "adv_acc": adv / count,
                "images": int(count), "seconds": seconds, "images_per_second": count / seconds,
            }
            history.append(record)
            if processes.is_main:
                _save_checkpoint(checkpoint_path, trainer, recipe, run, epoch, history, model_id)
                write_json_atomic(out_dir / HISTORY_NAME, history)
                bar.write(
                    f"epoch {epoch}/{recipe.epochs}: loss {record['loss']:.4f}, clean acc "
                    f"{record['clean_acc']:.4f}, adversarial acc {record['adv_acc']:.4f}, lr {lr:.4g}, "
                    f"eps {eps * 255:.2f}/255, {record['images_per_second']:.0f} images/s"
                )
            processes.barrier()
            done = epoch

    model_dir = None
    if done == recipe.epochs:
        model_dir = out_dir / MODEL_DIR_NAME
        if processes.is_main:
            _save_model(
                model_dir, trainer, recipe, run, architecture, model_id,
                data={
                    "dataset": recipe.dataset, "split": "train", "images": len(train_set),
                    "augmentation": augmentation_description(autoaugment=recipe.autoaugment),
                },
            )
        processes.barrier()
    return TrainResult(recipe, out_dir, checkpoint_path, model_dir, done, history)


def _save_checkpoint(
    path: Path,
    trainer: IKLATTrainer,
    recipe: Recipe,
    run: dict[str, Any],
    epoch: int,
    history: list[dict[str, Any]],
    model_id: str,
) -> None:
    state = {
        "format": CHECKPOINT_FORMAT, "ikl_zoo_version": __version__, "recipe": recipe.to_dict(), "run": run,
        "epoch": epoch, "history": history, "model_id": model_id, **trainer.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _save_model(
    model_dir: Path,
    trainer: IKLATTrainer,
    recipe: Recipe,
    run: dict[str, Any],
    architecture: dict[str, Any],
    model_id: str,
    *,
    data: dict[str, Any],
) -> Path:
    from ikl_zoo.zoo.checkpoints import save_zoo_folder

    averaged = (
        f"exponential moving average (decay {recipe.ema_decay}, every {recipe.ema_every}, from epoch "
        f"{recipe.ema_start_epoch}) of the weights and BatchNorm statistics"
    )
    config = {"model_id": model_id, "dataset": recipe.dataset, "threat_model": "Linf", "eps": recipe.eps,
              "architecture": architecture}
    prior = [[round(value, 8) for value in row] for row in trainer.class_prior.prior.tolist()]
    knobs = recipe.to_dict()
    extra = {
        # One flat mapping, so that a model card shows it as a table of settings.
        "training": {
            "method": "IKL-AT", "recipe": knobs.pop("name"), **knobs, "final_weights": averaged, **run,
            "trained_with": f"ikl-zoo {__version__} (ikl-zoo train)",
        },
        "class_prior": prior,
        "data": data,
        "seed": recipe.seed,
    }
    save_zoo_folder(trainer.ema.state_dict(), model_dir, entry_or_config=config, extra=extra)
    from ikl_zoo.cards.model_card import write_model_card

    # The card states the recipe; `ikl-zoo card --result` adds measured accuracy after evaluation.
    write_model_card(model_dir, model_dir)
    return model_dir
