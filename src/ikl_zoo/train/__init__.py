"""IKL-AT training: recipes, the PGD attack on the IKL loss, AWP, weight averaging and the training loop."""

from ikl_zoo.train.loop import (
    RunSettings,
    TrainResult,
    load_training_checkpoint,
    resolve_recipe,
    train_ikl_at,
)
from ikl_zoo.train.recipes import RECIPES, Recipe, RecipeError, TrainingError, architecture_config, get_recipe
from ikl_zoo.train.trainer import AdversarialWeightPerturbation, IKLATTrainer, ModelEMA, ikl_pgd_attack

__all__ = [
    "RECIPES", "AdversarialWeightPerturbation", "IKLATTrainer", "ModelEMA", "Recipe", "RecipeError",
    "RunSettings", "TrainResult", "TrainingError", "architecture_config", "get_recipe", "ikl_pgd_attack",
    "load_training_checkpoint", "resolve_recipe", "train_ikl_at",
]
