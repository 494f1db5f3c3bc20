"""IKL-AT training: recipes, the PGD attack on the IKL loss, AWP, weight averaging and the training loop."""

from ikl_zoo.train.attack import ikl_pgd_attack
from ikl_zoo.train.awp import AdversarialWeightPerturbation
from ikl_zoo.train.ema import ModelEMA
from ikl_zoo.train.loop import (
    IKLATTrainer,
    TrainingError,
    TrainResult,
    load_training_checkpoint,
    resolve_recipe,
    train_ikl_at,
)
from ikl_zoo.train.recipes import RECIPES, Recipe, RecipeError, architecture_config, get_recipe

__all__ = [
    "RECIPES",
    "AdversarialWeightPerturbation",
    "IKLATTrainer",
    "ModelEMA",
    "Recipe",
    "RecipeError",
    "TrainResult",
    "TrainingError",
    "architecture_config",
    "get_recipe",
    "ikl_pgd_attack",
    "load_training_checkpoint",
    "resolve_recipe",
    "train_ikl_at",
]
