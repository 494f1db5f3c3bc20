"""IKL-AT training: processes, data, the epoch loop, resume, and the run folder: ``checkpoint.pt`` (the
training state, rewritten atomically every epoch), ``history.json`` and, after the last epoch, ``model/``
(a zoo folder of the averaged weights with its model card).

Every epoch reseeds the random generators from ``(seed, epoch, rank)`` and shuffles with a sampler seeded the
same way, so an epoch computes the same thing whether the run was interrupted before it or not: on CPU a
resumed run is bit-for-bit the uninterrupted one."""

from __future__ import annotations

import itertools
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ikl_zoo import __version__
from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.cards.model_card import write_model_card
from ikl_zoo.data import cifar_dataset
from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate.distributed import Shard, process_group_from_environment
from ikl_zoo.evaluate.prepare import resolve_device
from ikl_zoo.train.recipes import Recipe, TrainingError, architecture_config, get_recipe
from ikl_zoo.train.trainer import IKLATTrainer
from ikl_zoo.zoo.checkpoints import non_finite_tensors, save_zoo_folder, torch_load_reason
from ikl_zoo.zoo.spec import model_from_config

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
MODEL_DIR_NAME = "model"
CHECKPOINT_FORMAT = "ikl-zoo-train/1"
_CHECKPOINT_KEYS = ("recipe", "run", "epoch", "history", "model_id", "model", "optimizer", "ema",
                    "class_prior")
_STATISTICS = ("loss", "clean_correct", "adv_correct", "images")  # what each step sums, in this order


@dataclass(frozen=True)
class RunSettings:
    """How a run is carried out, apart from what it computes (the recipe). ``resume`` continues
    ``out_dir/checkpoint.pt`` if there is one (without it, an existing checkpoint is an error);
    ``steps_per_epoch`` caps the batches of each epoch (smoke runs); ``stop_after_epochs`` ends this run after
    that many epochs (e.g. a job time limit), to be continued with ``resume``."""

    data_dir: str | os.PathLike[str]
    out_dir: str | os.PathLike[str]
    resume: bool = False
    device: str | None = None
    amp: str = "off"
    workers: int = 4
    steps_per_epoch: int | None = None
    stop_after_epochs: int | None = None
    model_id: str | None = None
    download: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise TrainingError("--steps-per-epoch must be at least 1")


@dataclass
class TrainResult:
    """Where a training run left its checkpoint and zoo folder, and its per-epoch history."""

    recipe: Recipe
    out_dir: Path
    model_dir: Path | None  # the zoo folder; None while epochs remain (``stop_after_epochs``)
    epochs_done: int
    history: list[dict[str, Any]]

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME


def _means(totals: torch.Tensor) -> dict[str, Any]:
    """The loss and accuracies over the images that ``totals`` sums (see ``_STATISTICS``)."""
    loss, clean, adv, count = totals.tolist()
    return {"loss": loss / count, "clean_acc": clean / count, "adv_acc": adv / count, "images": int(count)}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_recipe(name: str | None, *, overrides: dict[str, Any], out_dir: str | os.PathLike[str],
                   resume: bool) -> Recipe:
    """A preset (default: the dataset's) with overrides, or, resuming with neither, the checkpoint's."""
    saved = resume and name is None and not overrides and load_training_checkpoint(out_dir)
    if saved:
        return Recipe.from_dict(saved["recipe"])
    return get_recipe(name or overrides.get("dataset") or "cifar10", **overrides)


def _recipe_to_run(recipe: Recipe | None, saved: dict[str, Any] | None,
                   settings: RunSettings) -> tuple[Recipe, str]:
    """The recipe and model id of this run: the given ones, or the checkpoint's when resuming."""
    out_dir = Path(settings.out_dir)
    if saved is None:
        if recipe is None:
            raise TrainingError(f"no recipe given and no checkpoint in {out_dir}", fix="pass a recipe")
        return recipe, settings.model_id or out_dir.resolve().name
    if not settings.resume:
        epochs = f"{saved['epoch']}/{saved['recipe']['epochs']}"
        raise TrainingError(f"{out_dir} already holds a training checkpoint (epoch {epochs})",
                            fix="pass --resume to continue it, or choose another --out")
    saved_recipe = Recipe.from_dict(saved["recipe"])
    if recipe is not None and (differences := recipe_differences(saved_recipe, recipe)):
        raise TrainingError(f"the recipe differs from the checkpoint's in {'; '.join(differences)}",
                            fix="resume with the same options (or none), or train into another --out")
    if saved["run"]["steps_per_epoch"] != settings.steps_per_epoch:
        raise TrainingError("the checkpoint was trained with --steps-per-epoch "
                            f"{saved['run']['steps_per_epoch']}", fix="resume with the same value")
    return saved_recipe, settings.model_id or saved["model_id"]


def train_ikl_at(recipe: Recipe | None, settings: RunSettings) -> TrainResult:
    """Train with IKL-AT and write the averaged weights as a zoo folder, ``out_dir/model``. ``recipe`` None
    resumes the checkpoint's; under ``torchrun`` each process trains its share of every (global) batch."""
    saved = load_training_checkpoint(settings.out_dir)
    recipe, model_id = _recipe_to_run(recipe, saved, settings)
    try:  # default: this process's GPU if any (torchrun's LOCAL_RANK), else the CPU
        device = resolve_device(settings.device or "auto")
    except EvaluationError as error:  # the evaluator's devices and messages
        raise TrainingError(error.problem, fix=error.fix) from None
    with process_group_from_environment(device) as shard:
        return _TrainingRun(recipe, settings, shard, device, model_id).train(saved)


class _TrainingRun:
    """One run of the epoch loop: the trainer, the data and the history, saved after every epoch."""

    def __init__(self, recipe: Recipe, settings: RunSettings, shard: Shard, device: torch.device,
                 model_id: str) -> None:
        if recipe.batch_size % shard.world_size:
            raise TrainingError(f"batch size {recipe.batch_size} does not split over {shard.world_size} "
                                "processes", fix="pass a multiple of the process count")
        self.recipe, self.settings, self.shard, self.device = recipe, settings, shard, device
        self.model_id, self.out_dir = model_id, Path(settings.out_dir)
        self.local_batch = recipe.batch_size // shard.world_size
        self.architecture = architecture_config(recipe.arch, dataset=recipe.dataset)
        _seed_everything(recipe.seed)  # the same initial weights in every process and every run
        self.trainer = IKLATTrainer(model_from_config(self.architecture), recipe, device=device,
                                    amp=settings.amp, distributed=shard.active)
        torch.backends.cudnn.benchmark |= device.type == "cuda"
        self.run = {"steps_per_epoch": settings.steps_per_epoch, "amp": settings.amp,
                    "world_size": shard.world_size, "device": device.type}
        self.train_set = cifar_dataset(recipe.dataset, data_dir=settings.data_dir, train=True,
                                       download=settings.download, transform=recipe.training_transform())
        prepare_out_dir(self.out_dir)
        self.sampler = DistributedSampler(self.train_set, shard.world_size, shard.rank, seed=recipe.seed)
        batches = math.ceil(len(self.sampler) / self.local_batch)
        self.batches = min(batches, settings.steps_per_epoch or batches)
        self.history: list[dict[str, Any]] = []

    def train(self, saved: dict[str, Any] | None) -> TrainResult:
        done = 0
        if saved is not None:
            self.trainer.load_state_dict(saved)
            self.history, done = list(saved["history"]), int(saved["epoch"])
        stop = self.settings.stop_after_epochs
        last = self.recipe.epochs if stop is None else min(self.recipe.epochs, done + stop)
        shown = self.settings.progress and self.shard.is_main and sys.stderr.isatty()  # logs: no redraws
        with tqdm(total=self.batches * max(last - done, 0), disable=not shown, unit="step",
                  dynamic_ncols=True) as bar:
            for epoch in range(done + 1, last + 1):
                self._save(self._epoch(epoch, bar), bar)
                done = epoch
        model_dir = self._write_model() if done == self.recipe.epochs else None
        return TrainResult(self.recipe, self.out_dir, model_dir, done, self.history)

    def _loader(self, epoch: int) -> DataLoader:
        """This epoch's batches, shuffled and augmented the same way whether the run was resumed or not."""
        seeds = np.random.SeedSequence([self.recipe.seed, epoch, self.shard.rank])
        epoch_seed = int(seeds.generate_state(1)[0])
        _seed_everything(epoch_seed)
        self.sampler.set_epoch(epoch)
        return DataLoader(self.train_set, batch_size=self.local_batch, sampler=self.sampler,
                          num_workers=self.settings.workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(epoch_seed))

    def _epoch(self, epoch: int, bar: tqdm) -> dict[str, Any]:
        recipe, trainer = self.recipe, self.trainer
        lr, eps = recipe.lr_at(epoch), recipe.eps_at(epoch)
        trainer.set_lr(lr)
        bar.set_description(f"epoch {epoch}/{recipe.epochs}")
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        started = time.perf_counter()
        for index, (images, y) in enumerate(itertools.islice(self._loader(epoch), self.batches)):
            stats = trainer.step(images, y, epoch=epoch)
            totals += torch.stack([stats[key] for key in _STATISTICS]).double()
            if recipe.ema_every == "step":
                trainer.ema.update(trainer.net, copy=epoch <= recipe.ema_start_epoch)
            bar.update(1)
            if not bar.disable and (index % 10 == 0 or index == self.batches - 1):
                bar.set_postfix(_means(totals), lr=lr, eps=f"{eps * 255:.2f}/255")
        self._end_epoch(epoch, totals)
        seconds = time.perf_counter() - started
        means = _means(totals)
        return {"epoch": epoch, "lr": lr, "eps": eps, "awp": recipe.uses_awp(epoch),
                **means, "seconds": seconds, "images_per_second": means["images"] / seconds}

    def _end_epoch(self, epoch: int, totals: torch.Tensor) -> None:
        """Refuse diverged weights, then fold the epoch into the class prior, the average and the totals."""
        non_finite = non_finite_tensors(self.trainer.net.state_dict())
        if non_finite:  # a diverged network is never saved: the last checkpoint stays the last finite state
            raise TrainingError(f"training diverged in epoch {epoch} ({non_finite[0]} is no longer finite); "
                                "the checkpoint of the previous epoch is kept",
                                fix="train again with a lower --lr (or --amp off)")
        self.trainer.class_prior.all_reduce()
        self.trainer.class_prior.step()
        if self.recipe.ema_every == "epoch":
            self.trainer.ema.update(self.trainer.net, copy=epoch <= self.recipe.ema_start_epoch)
        if self.shard.active:
            torch.distributed.all_reduce(totals)

    def _save(self, record: dict[str, Any], bar: tqdm) -> None:
        """The training state after the epoch of ``record``, then the history: each file whole or none."""
        self.history.append(record)
        if self.shard.is_main:
            state = {"format": CHECKPOINT_FORMAT, "ikl_zoo_version": __version__, "epoch": record["epoch"],
                     "recipe": self.recipe.to_dict(), "run": self.run, "history": self.history,
                     "model_id": self.model_id, **self.trainer.state_dict()}
            with atomic_path(self.out_dir / CHECKPOINT_NAME) as tmp:
                torch.save(state, tmp)
            write_json_atomic(self.out_dir / HISTORY_NAME, self.history)
            bar.write("epoch {epoch}/{epochs}: loss {loss:.4f}, clean acc {clean_acc:.4f}, adversarial acc "
                      "{adv_acc:.4f}, lr {lr:.4g}, eps {pixels:.2f}/255, {images_per_second:.0f} images/s"
                      .format(**record, epochs=self.recipe.epochs, pixels=record["eps"] * 255))
        self.shard.barrier()

    def _write_model(self) -> Path:
        """``out_dir/model``: the zoo folder of the averaged weights, its config stating the recipe."""
        model_dir = self.out_dir / MODEL_DIR_NAME
        if self.shard.is_main:
            config = {"model_id": self.model_id, "dataset": self.recipe.dataset, "threat_model": "Linf",
                      "eps": self.recipe.eps, "architecture": self.architecture}
            weights = self.trainer.ema.state_dict()
            save_zoo_folder(weights, model_dir, entry_or_config=config, extra=self._provenance())
            # The card states the recipe; `ikl-zoo card --result` adds measured accuracy after evaluation.
            write_model_card(model_dir, model_dir)
        self.shard.barrier()
        return model_dir

    def _provenance(self) -> dict[str, Any]:
        """How the weights were made, for the zoo folder's config and so its model card."""
        recipe, knobs = self.recipe, self.recipe.to_dict()
        averaged = (f"exponential moving average (decay {recipe.ema_decay}, every {recipe.ema_every}, from "
                    f"epoch {recipe.ema_start_epoch}) of the weights and BatchNorm statistics")
        return {
            # One flat mapping, so that a model card shows it as a table of settings.
            "training": {"method": "IKL-AT", "recipe": knobs.pop("name"), **knobs, "final_weights": averaged,
                         **self.run, "trained_with": f"ikl-zoo {__version__} (ikl-zoo train)"},
            "class_prior": [[round(p, 8) for p in row] for row in self.trainer.class_prior.prior.tolist()],
            "data": {"dataset": recipe.dataset, "split": "train", "images": len(self.train_set),
                     "augmentation": recipe.augmentation},
            "seed": recipe.seed,
        }


def prepare_out_dir(out_dir: Path) -> None:
    """Fail before the first epoch, not after it, when the run folder cannot take a checkpoint."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as error:
        raise TrainingError(f"cannot write the run folder {out_dir} ({error.strerror or error})",
                            fix="choose another --out") from None
    if (checkpoint := out_dir / CHECKPOINT_NAME).exists() and not checkpoint.is_file():
        raise TrainingError(f"{checkpoint} is not a file", fix="remove it or choose another --out")


def load_training_checkpoint(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The training state saved in ``out_dir`` (loaded with ``weights_only``), or None."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which and how to proceed
        raise TrainingError(f"{path} is not a readable training checkpoint ({torch_load_reason(error)})",
                            fix="delete it to restart") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an ikl-zoo training checkpoint", fix="choose another --out")
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing or not isinstance(state["recipe"], dict) or not isinstance(state["run"], dict):
        raise TrainingError(f"{path} is damaged (missing or malformed: {', '.join(missing) or 'recipe/run'})",
                            fix="delete it to restart")
    return state


def recipe_differences(saved: Recipe, given: Recipe) -> list[str]:
    """The knobs (not the preset name or source) where a resumed run would train differently."""
    old, new = saved.to_dict(), given.to_dict()
    return [f"{key} (checkpoint {old[key]!r}, now {new[key]!r})" for key in old
            if key not in ("name", "source") and old[key] != new[key]]
