"""The run folder: ``checkpoint.pt`` (the training state, rewritten atomically every epoch), ``history.json``
and, after the last epoch, ``model/``: a zoo folder of the averaged weights with its model card."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ikl_zoo import __version__
from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.cards.model_card import write_model_card
from ikl_zoo.train.recipes import Recipe
from ikl_zoo.train.trainer import IKLATTrainer, TrainingError
from ikl_zoo.zoo.checkpoints import save_zoo_folder, torch_load_reason

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.json"
MODEL_DIR_NAME = "model"
CHECKPOINT_FORMAT = "ikl-zoo-train/1"
_CHECKPOINT_KEYS = ("recipe", "run", "epoch", "history", "model_id", "model", "optimizer", "ema",
                    "class_prior")


def prepare_out_dir(out_dir: Path) -> None:
    """Fail before the first epoch, not after it, when the run folder cannot take a checkpoint."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
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


def save_checkpoint(out_dir: Path, trainer: IKLATTrainer, *, run: dict[str, Any], epoch: int,
                    history: list[dict[str, Any]], model_id: str) -> None:
    """The training state after ``epoch``, then the history: each file whole or not at all."""
    state = {"format": CHECKPOINT_FORMAT, "ikl_zoo_version": __version__, "recipe": trainer.recipe.to_dict(),
             "run": run, "epoch": epoch, "history": history, "model_id": model_id, **trainer.state_dict()}
    with atomic_path(out_dir / CHECKPOINT_NAME) as tmp:
        torch.save(state, tmp)
    write_json_atomic(out_dir / HISTORY_NAME, history)


def save_model(out_dir: Path, trainer: IKLATTrainer, *, run: dict[str, Any], architecture: dict[str, Any],
               model_id: str, images: int) -> Path:
    """``out_dir/model``: the zoo folder of the averaged weights, its config stating the recipe, its card."""
    recipe, knobs, model_dir = trainer.recipe, trainer.recipe.to_dict(), out_dir / MODEL_DIR_NAME
    averaged = (f"exponential moving average (decay {recipe.ema_decay}, every {recipe.ema_every}, from epoch "
                f"{recipe.ema_start_epoch}) of the weights and BatchNorm statistics")
    config = {"model_id": model_id, "dataset": recipe.dataset, "threat_model": "Linf", "eps": recipe.eps,
              "architecture": architecture}
    extra = {
        # One flat mapping, so that a model card shows it as a table of settings.
        "training": {"method": "IKL-AT", "recipe": knobs.pop("name"), **knobs, "final_weights": averaged,
                     **run, "trained_with": f"ikl-zoo {__version__} (ikl-zoo train)"},
        "class_prior": [[round(value, 8) for value in row] for row in trainer.class_prior.prior.tolist()],
        "data": {"dataset": recipe.dataset, "split": "train", "images": images,
                 "augmentation": recipe.augmentation},
        "seed": recipe.seed,
    }
    save_zoo_folder(trainer.ema.state_dict(), model_dir, entry_or_config=config, extra=extra)
    # The card states the recipe; `ikl-zoo card --result` adds measured accuracy after evaluation.
    write_model_card(model_dir, model_dir)
    return model_dir
