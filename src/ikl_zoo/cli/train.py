"""The train command."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import click

from ikl_zoo.cli.base import IklZooCommand
from ikl_zoo.threat import format_eps, parse_eps


def _radius(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    try:
        return None if value is None else parse_eps(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command(cls=IklZooCommand)
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder with the CIFAR training split in torchvision's layout (downloaded if missing).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Run folder: checkpoint.pt, history.json every epoch; model/ (zoo folder) at the end.")
@click.option("--recipe", "recipe_name", default=None,
              help="Preset: cifar10, cifar100 or cifar100-autoaug (default: the --dataset one).")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100"]), default=None)
@click.option("--arch", default=None,
              help="wrn-34-10 (default), wrn-28-10-silu, wrn-DEPTH-WIDTH[-silu] or a registered model id.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="[200]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Global batch [128].")
@click.option("--lr", type=float, default=None, help="Peak learning rate, cosine decay per epoch [0.2].")
@click.option("--lr-warmup-epochs", type=click.IntRange(min=0), default=None, help="[0]")
@click.option("--momentum", type=float, default=None, help="[0.9]")
@click.option("--weight-decay", type=float, default=None, help="[5e-4]")
@click.option("--eps", callback=_radius, default=None, help="Final Linf radius, e.g. 8/255 [8/255].")
@click.option("--eps-ramp-epochs", type=click.IntRange(min=0), default=None,
              help="Epochs over which eps grows linearly (0: none) [all].")
@click.option("--attack-steps", type=click.IntRange(min=0), default=None, help="PGD steps [5].")
@click.option("--attack-step-size", type=float, default=None, help="Step / current eps [0.5].")
@click.option("--alpha", type=float, default=None, help="IKL cross-entropy weight [3].")
@click.option("--beta", type=float, default=None, help="IKL wMSE weight [20].")
@click.option("--temperature", type=float, default=None, help="Class-prior softmax temperature [4].")
@click.option("--prior-power", type=float, default=None, help="Power on the class prior [1].")
@click.option("--attack-alpha", type=float, default=None, help="Attack loss cross-entropy weight [1].")
@click.option("--attack-beta", type=float, default=None,
              help="Attack loss wMSE weight [0 CIFAR-10, 1 CIFAR-100].")
@click.option("--awp-gamma", type=float, default=None, help="AWP size, 0 turns it off [0.005].")
@click.option("--awp-warmup-epochs", type=click.IntRange(min=0), default=None, help="AWP from epoch [10].")
@click.option("--ema-decay", type=float, default=None, help="Weight-average decay [0.9].")
@click.option("--ema-every", type=click.Choice(["epoch", "step"]), default=None, help="[epoch]")
@click.option("--ema-start-epoch", type=click.IntRange(min=1), default=None, help="[1]")
@click.option("--autoaugment/--no-autoaugment", default=None, help="Second AutoAugment view [off].")
@click.option("--aug-weight", type=float, default=None, help="Weight of the AutoAugment view's IKL [0.5].")
@click.option("--autoaugment-fill", type=click.IntRange(0, 255), default=None,
              help="Grey level AutoAugment fills uncovered pixels with [128, the authors'].")
@click.option("--seed", type=int, default=None, help="[0]")
@click.option("--resume", is_flag=True, help="Continue the checkpoint in --out (afresh if there is none).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), default="off", show_default=True,
              help="Mixed precision for training (evaluation always runs in float32).")
@click.option("--workers", type=click.IntRange(min=0), default=4, show_default=True, help="Loader workers.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
              help="Cap the batches of every epoch (smoke runs).")
@click.option("--stop-after-epochs", type=click.IntRange(min=1), default=None,
              help="End this run after N epochs (e.g. a job time limit); continue with --resume.")
@click.option("--model-id", default=None, help="Id written into model/config.json (default: the --out name).")
@click.option("--download/--no-download", default=True, show_default=True,
              help="Download CIFAR into --data-dir when it is missing.")
@click.option("--show-recipe", is_flag=True, help="Print the resolved recipe as JSON and exit.")
def train(recipe_name: str | None, show_recipe: bool, **options: Any) -> None:
    """Train a network with IKL-AT (TRADES-style, IKL loss, AWP, weight averaging); any knob overridable.

    Multi-GPU: torchrun --nproc-per-node N -m ikl_zoo.cli train ..."""
    from ikl_zoo.train import Recipe, RunSettings, resolve_recipe, train_ikl_at

    knobs = {knob.name for knob in dataclasses.fields(Recipe)}
    overrides = {key: value for key, value in options.items() if key in knobs and value is not None}
    settings = RunSettings(**{key: value for key, value in options.items() if key not in knobs})
    recipe = resolve_recipe(recipe_name, overrides=overrides, out_dir=settings.out_dir,
                            resume=settings.resume)
    if show_recipe:
        click.echo(json.dumps(recipe.to_dict(), indent=2))
        return
    result = train_ikl_at(recipe, settings)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one process reports
        return
    if result.model_dir is None:
        click.echo(f"stopped after epoch {result.epochs_done}; continue with the same command and --resume")
        return
    click.echo(f"wrote {result.model_dir} (averaged weights); evaluate it with:\n  ikl-zoo eval --model "
               f"{result.model_dir} --dataset {result.recipe.dataset} --eps {format_eps(result.recipe.eps)} "
               f"--data-dir {settings.data_dir}")
