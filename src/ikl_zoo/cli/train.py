"""The train command."""

import json
import os
import shlex
from typing import Any

import click

from ikl_zoo.cli import base
from ikl_zoo.threat import DATASETS, format_eps

_AT_LEAST_1, _AT_LEAST_0 = click.IntRange(min=1), click.IntRange(min=0)


@click.command()
@click.option("--data-dir", required=True, type=base.FOLDER,
              help="Folder with the CIFAR training split in torchvision's layout (downloaded if missing).")
@click.option("-o", "--out", "out_dir", required=True, type=base.FOLDER,
              help="Run folder: checkpoint.pt and history.json each epoch, model/ (zoo folder) at the end.")
@click.option("--recipe", "recipe_name", help="Preset: cifar10, cifar100 or cifar100-autoaug [--dataset's].")
@click.option("--dataset", type=click.Choice(DATASETS), help="Training set, and the preset [cifar10].")
@click.option("--arch", help="wrn-DEPTH-WIDTH[-silu] or a registered id [wrn-34-10].")
@click.option("--epochs", type=_AT_LEAST_1, help="Training epochs [200].")
@click.option("--batch-size", type=_AT_LEAST_1, help="Global batch, over all GPUs [128].")
@click.option("--lr", type=float, help="Peak learning rate, cosine decay per epoch [0.2].")
@click.option("--lr-warmup-epochs", type=_AT_LEAST_0, help="Epochs of linear learning-rate warmup [0].")
@click.option("--momentum", type=float, help="SGD momentum [0.9].")
@click.option("--weight-decay", type=float, help="SGD weight decay [5e-4].")
@click.option("--eps", callback=base.parse_budget, help="Final Linf radius, e.g. 8/255 [8/255].")
@click.option("--eps-ramp-epochs", type=_AT_LEAST_0, help="Epochs of linear eps growth (0: none) [all].")
@click.option("--attack-steps", type=_AT_LEAST_0, help="PGD steps of the training attack [5].")
@click.option("--attack-step-size", type=float, help="PGD step as a fraction of the current eps [0.5].")
@click.option("--alpha", type=float, help="IKL cross-entropy weight [3].")
@click.option("--beta", type=float, help="IKL wMSE weight [20].")
@click.option("--temperature", type=float, help="Class-prior softmax temperature [4].")
@click.option("--prior-power", type=float, help="Power on the class prior [1].")
@click.option("--attack-alpha", type=float, help="Attack loss cross-entropy weight [1].")
@click.option("--attack-beta", type=float, help="Attack loss wMSE weight [0 CIFAR-10, 1 CIFAR-100].")
@click.option("--awp-gamma", type=float, help="AWP size, 0 turns it off [0.005].")
@click.option("--awp-warmup-epochs", type=_AT_LEAST_0, help="AWP from this epoch on [10].")
@click.option("--ema-decay", type=float, help="Decay of the weight average, the final model [0.9].")
@click.option("--ema-every", type=click.Choice(["epoch", "step"]), help="Average per epoch or step [epoch].")
@click.option("--ema-start-epoch", type=_AT_LEAST_1, help="Average the weights from this epoch on [1].")
@click.option("--autoaugment/--no-autoaugment", default=None, help="Second AutoAugment view [off].")
@click.option("--aug-weight", type=float, help="Weight of the AutoAugment view's IKL [0.5].")
@click.option("--autoaugment-fill", type=click.IntRange(0, 255), help="Grey level of the pixels AutoAugment "
              "uncovers [128, the authors'].")
@click.option("--seed", type=int, help="Seed of initialisation, data order and attacks [0].")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out (afresh if there is none).")
@click.option("--device", help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default="off",
              help="Mixed precision for training (evaluation always runs in float32).")
@click.option("--workers", type=_AT_LEAST_0, default=4, help="Data loader processes.")
@click.option("--steps-per-epoch", type=_AT_LEAST_1, help="Cap the batches of every epoch (smoke runs).")
@click.option("--stop-after-epochs", type=_AT_LEAST_1,
              help="End this run after N epochs (e.g. a job time limit); continue with --resume.")
@click.option("--model-id", help="Id written into model/config.json (default: the --out folder's name).")
@click.option("--download/--no-download", default=True, help="Download CIFAR into --data-dir if missing.")
@click.option("--show-recipe", is_flag=True, help="Print the resolved recipe as JSON and exit.")
def train(recipe_name: str | None, show_recipe: bool, **options: Any) -> None:
    """Train a robust network with IKL-AT. TRADES-style with the IKL loss, AWP and weight averaging, as the
    authors' code; any knob can be overridden. Multi-GPU: torchrun --nproc-per-node N -m ikl_zoo.cli train"""
    from ikl_zoo.train import Recipe, RunSettings, resolve_recipe, train_ikl_at
    knobs = Recipe.__dataclass_fields__.keys()
    overrides = {key: value for key, value in options.items() if key in knobs and value is not None}
    settings = RunSettings(**{key: value for key, value in options.items() if key not in knobs})
    recipe = resolve_recipe(recipe_name, overrides=overrides, out_dir=settings.out_dir,
                            resume=settings.resume)
    if show_recipe:
        return click.echo(json.dumps(recipe.to_dict(), indent=2))
    result = train_ikl_at(recipe, settings)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one process reports
        return None
    if result.model_dir is None:
        return click.echo(f"stopped after epoch {result.epochs_done}: rerun the same command with --resume")
    evaluate = ["ikl-zoo", "eval", "--model", str(result.model_dir), "--dataset", result.recipe.dataset,
                "--eps", format_eps(result.recipe.eps), "--data-dir", str(settings.data_dir)]
    click.echo(f"wrote {result.model_dir} (averaged weights); evaluate it with:\n  {shlex.join(evaluate)}")
