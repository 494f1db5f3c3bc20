"""The ``ikl-zoo`` command line: thin click commands over the library.

Each command parses its options, calls one library function and prints; the logic lives in the
library. Library imports happen inside the commands so ``ikl-zoo --help`` stays fast.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click
from click.core import ParameterSource

from ikl_zoo import __version__
from ikl_zoo.errors import IklZooError

DATASET_OPTION = click.option(
    "--dataset", type=click.Choice(["cifar10", "cifar100"]), default="cifar10", show_default=True
)


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line naming the command's --help, instead of click's usage block."""

    def show(self, file: IO[Any] | None = None) -> None:
        command = self.ctx.command_path if self.ctx is not None else "ikl-zoo"
        message = " ".join(self.format_message().split()).removesuffix(".")
        click.echo(f"Error: {message} (see {command} --help)", file=file, err=True)


@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # bare `ikl-zoo`: the help itself
    except _OneLineUsageError:
        raise
    except click.UsageError as error:
        raise _OneLineUsageError(error.format_message(), ctx=error.ctx) from None


class IklZooCommand(click.Command):
    """Every ikl-zoo command: its usage errors name it, so the one-line error points at its --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:  # click's parser leaves some without a context: name the command
            error.ctx = error.ctx or ctx
            raise


class IklZooGroup(click.Group):
    """Turns bad options and library errors into one line on stderr and exit status 2, never a traceback."""

    command_class = IklZooCommand

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        with _one_line_usage_errors():  # the group's own options
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            with _one_line_usage_errors():  # unknown commands, their options, UsageErrors they raise
                return super().invoke(ctx)
        except IklZooError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted: finished work is saved; rerun with --resume to continue.", err=True)
            sys.exit(130)


@click.group(name="ikl-zoo", cls=IklZooGroup)
@click.version_option(__version__, prog_name="ikl-zoo")
def main() -> None:
    """IKL-AT robust models: list, load, evaluate, publish and train."""


# --- zoo commands: list, download, convert, push -------------------------------------------------


@main.command("list")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100"]), default=None, help="Only this one.")
def list_command(dataset: str | None) -> None:
    """Registered models with their published clean and AutoAttack accuracy (%)."""
    from ikl_zoo.zoo.catalog import format_models_table, models_table

    click.echo(format_models_table(models_table(dataset=dataset)))


@main.command()
@click.argument("model")
@DATASET_OPTION
@click.option("--revision", default=None, help="Hub branch, tag or commit (default: the pinned one).")
def download(model: str, dataset: str, revision: str | None) -> None:
    """Fetch MODEL's weights into the cache (Hub, else Google Drive) and print their path and sha256."""
    from ikl_zoo.zoo.checkpoints import file_sha256
    from ikl_zoo.zoo.hub import download_checkpoint

    path = download_checkpoint(model, dataset=dataset, revision=revision)
    click.echo(f"path: {path}")
    click.echo(f"sha256: {file_sha256(path)}")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=str))
@click.option("--model", "model_id", required=True, help="Registered id the checkpoint belongs to.")
@DATASET_OPTION
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Zoo folder to write."
)
@click.option("--overwrite", is_flag=True, help="Replace the zoo files of a folder that is not empty.")
def convert(checkpoint: str, model_id: str, dataset: str, out_dir: str, overwrite: bool) -> None:
    """Turn CHECKPOINT (.pt/.pth/.safetensors, any wrapping) into a Hub-ready folder with a model card."""
    from ikl_zoo.publish import convert_checkpoint
    from ikl_zoo.zoo.checkpoints import CONFIG_NAME, read_zoo_config

    folder = convert_checkpoint(checkpoint, out_dir, model_id=model_id, dataset=dataset, overwrite=overwrite)
    click.echo(f"wrote {folder} (model.safetensors, {CONFIG_NAME}, README.md)")
    click.echo(f"sha256: {read_zoo_config(folder)['sha256']}")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--repo-id", required=True, help="ORG/NAME on the Hugging Face Hub (created if missing).")
@click.option("--revision", default=None, help="Branch to push to (created if missing; default main).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--token", default=None, help="Hub write token (default: HF_TOKEN or `hf auth login`).")
def push(folder: str, repo_id: str, revision: str | None, private: bool, token: str | None) -> None:
    """Check FOLDER (config.json, model.safetensors, sha256) and upload it to the Hub."""
    from ikl_zoo.publish import push_zoo_folder

    url = push_zoo_folder(folder, repo_id=repo_id, revision=revision, private=private, token=token)
    click.echo(f"pushed {folder} to {repo_id}: {url}")


# --- data and evaluation commands: sample-data, eval ---------------------------------------------


@main.command("sample-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Data dir to write.")
@click.option("--dataset", "datasets", type=click.Choice(["cifar10", "cifar100"]), multiple=True,
              help="Only these datasets (repeatable; default both).")
def sample_data(out_dir: str, datasets: tuple[str, ...]) -> None:
    """Write the 20 real CIFAR-10 and CIFAR-100 test images foolbox ships as a data dir (test split only)."""
    from ikl_zoo.data import write_sample_data_dir

    root = write_sample_data_dir(out_dir, datasets=datasets or ("cifar10", "cifar100"))
    click.echo(f"wrote {root} (CIFAR test images 0-19 of {', '.join(datasets or ('cifar10', 'cifar100'))})")


def _parse_eps(ctx: click.Context, param: click.Parameter, value: str) -> float:
    numerator, _, denominator = value.partition("/")
    try:
        eps = float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{value!r} is not a number or a fraction such as 8/255") from None
    if not (math.isfinite(eps) and eps > 0):
        raise click.BadParameter(f"{value!r} must be a positive finite number, e.g. 8/255")
    return eps


def _parse_batch_size(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    text = value.strip()
    if text.lower() == "auto":
        return "auto"
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    raise click.BadParameter(f"{value!r} is neither a positive integer nor auto")


def _parse_attack_options(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    options: dict[str, dict[str, float]] = {}
    for item in values:
        key, _, number = item.partition("=")
        attack_object, _, setting = key.partition(".")
        try:
            value = float(number)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected OBJECT.SETTING=N, e.g. apgd.n_iter=10") from None
        if not (attack_object and setting):
            raise click.BadParameter(f"{item!r}: expected OBJECT.SETTING=N, e.g. apgd.n_iter=10")
        options.setdefault(attack_object, {})[setting] = int(value) if value.is_integer() else value
    return options


@main.command("eval")
@click.option("--model", "model_id", required=True,
              help="Registered id (`ikl-zoo list`), zoo folder, or robustbench:<RobustBench id>.")
@DATASET_OPTION
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=True), default=None,
              help="Local weights (.pt/.pth/.safetensors or zoo folder) instead of the published ones.")
@click.option("--revision", default=None, help="Hub branch, tag or commit (default: the pinned one).")
@click.option("--data-dir", default="data", show_default=True, type=click.Path(file_okay=False),
              help="CIFAR in torchvision's layout (downloaded there if missing), or `ikl-zoo sample-data`'s.")
@click.option("--download/--no-download", default=True, show_default=True,
              help="Download CIFAR into --data-dir when it is missing.")
@click.option("--n-examples", type=click.IntRange(min=1), default=10000, show_default=True,
              help="The first N test images (RobustBench uses all 10,000).")
@click.option("--eps", default="8/255", show_default=True, callback=_parse_eps,
              help="Budget, e.g. 8/255 or 0.5.")
@click.option("--norm", type=click.Choice(["Linf", "L2", "L1"]), default="Linf", show_default=True)
@click.option("--version", "aa_version", type=click.Choice(["standard", "plus", "rand", "custom"]),
              default="standard", show_default=True, help="AutoAttack version.")
@click.option("--attacks", default=None, help="Custom version: comma-separated, e.g. apgd-ce,apgd-t.")
@click.option("--attack-option", "attack_options", multiple=True, callback=_parse_attack_options,
              help="Custom version: OBJECT.SETTING=N on AutoAttack's attack objects, e.g. apgd.n_restarts=1.")
@click.option("--seed", type=int, default=0, show_default=True, help="Chunk k is attacked with seed + k.")
@click.option("--batch-size", default="auto", show_default=True, callback=_parse_batch_size,
              help="Attack batch size, or auto: the largest that fits, halved on out-of-memory.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Examples per chunk: the unit of resumption and of sharding over ranks.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory for chunks and result.json "
              "[default: runs/<model>_<dataset>_<norm>_<eps>_<version>].")
@click.option("--resume", is_flag=True, help="Continue the run in --out (refused if its arguments differ).")
@click.option("--channels-last/--no-channels-last", default=None, help="[default: on for GPUs, off for CPUs]")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (GPU).")
@click.option("--robustbench-dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoint cache for robustbench: models [default: <ikl-zoo cache>/robustbench].")
@click.option("--record", is_flag=True, help="Also add the result to the leaderboard records.")
@click.option("--records", "records_root", default="leaderboard", show_default=True,
              help="Records folder for --record.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs, CI).")
def eval_command(
    model_id: str, dataset: str, checkpoint: str | None, revision: str | None, data_dir: str, download: bool,
    n_examples: int, eps: float, norm: str, aa_version: str, attacks: str | None, attack_options: dict,
    seed: int, batch_size: int | str, chunk_size: int, device: str, out_dir: str | None, resume: bool,
    channels_last: bool | None, compile_model: bool, robustbench_dir: str | None, record: bool,
    records_root: str, no_progress: bool,
) -> None:
    """Clean and AutoAttack robust accuracy of a model, as RobustBench measures it: resumable, shardable.

    Run it under `torchrun --nproc-per-node N` to deal the chunks to N GPUs (or CPU processes).
    """
    import os

    from ikl_zoo.errors import EvaluationError
    from ikl_zoo.evaluate.attacks import check_eps, show_autoattack_warnings
    from ikl_zoo.zoo.registry import is_registered

    try:  # before any model or data is loaded
        check_eps(eps, norm=norm)
    except EvaluationError as error:
        raise click.BadParameter(str(error), param_hint="'--eps'") from None
    if record and checkpoint is not None and is_registered(model_id, dataset=dataset):
        # write_record refuses such a result at the end: say so before hours of attacks. An id that is not
        # registered gets the loader's error (close names), not advice to convert for it.
        from ikl_zoo.leaderboard.records import replaced_weights_error

        raise replaced_weights_error(model_id, checkpoint, dataset=dataset)
    from ikl_zoo.evaluate.run import default_run_dir, evaluate_model
    from ikl_zoo.evaluate.summary import format_summary

    if out_dir is None:
        out_dir = str(default_run_dir(model_id, dataset=dataset, norm=norm, eps=eps, version=aa_version))
    with show_autoattack_warnings():
        result = evaluate_model(
            model_id, dataset=dataset, checkpoint=checkpoint, revision=revision, data_dir=data_dir,
            download=download, n_examples=n_examples, eps=eps, norm=norm, version=aa_version,
            attacks=[a.strip() for a in attacks.split(",") if a.strip()] if attacks else None,
            attack_options=attack_options, seed=seed, batch_size=batch_size, chunk_size=chunk_size,
            device=device, out=out_dir, resume=resume, channels_last=channels_last,
            compile_model=compile_model, robustbench_dir=robustbench_dir, progress=not no_progress,
        )
    if os.environ.get("RANK", "0") != "0":
        return
    click.echo(format_summary(result))
    click.echo(f"result: {os.path.join(out_dir, 'result.json')}")
    if record:
        from ikl_zoo.leaderboard.records import write_record

        click.echo(f"record: {write_record(result, root=records_root)}")


# --- leaderboard, card and submit commands -------------------------------------------------------

RECORDS_OPTION = click.option(
    "--records", "records_root", default="leaderboard", show_default=True,
    help="Folder of result records (written by `ikl-zoo eval --record` or `ikl-zoo record`).",
)


@main.command()
@click.argument("models", nargs=-1)
@DATASET_OPTION
@click.option("--threat-model", type=click.Choice(["Linf", "L2"]), default="Linf", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex", "html", "json"]), default="md",
              show_default=True, help="html is one self-contained page.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the first N rows.")
@click.option("--only-ikl", is_flag=True, help="Only IKL-AT models.")
@click.option("--no-extra-data", is_flag=True, help="Hide models trained with extra real data.")
@click.option("--compare", is_flag=True, help="Show MODELS side by side, with differences from the first.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a clean vs AutoAttack scatter (.png, .pdf or .svg).")
@click.option("--robustbench-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A RobustBench checkout: read its model_info/ instead of the shipped copy.")
@RECORDS_OPTION
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Write the table here instead of printing it.")
def leaderboard(
    models: tuple[str, ...], dataset: str, threat_model: str, fmt: str, top: int | None, only_ikl: bool,
    no_extra_data: bool, compare: bool, plot: str | None, robustbench_dir: str | None, records_root: str,
    out_file: str | None,
) -> None:
    """RobustBench's leaderboard with ikl-zoo's measurements beside it; or --compare MODEL MODEL ..."""
    from ikl_zoo.atomic import write_text_atomic
    from ikl_zoo.leaderboard.plot import plot_board
    from ikl_zoo.leaderboard.table import build_board, compare_models, render_board

    if models and not compare:
        raise click.UsageError("model ids are only taken with --compare, e.g. --compare MODEL_A MODEL_B")
    if compare:
        if top or only_ikl or no_extra_data:
            raise click.UsageError("--top, --only-ikl and --no-extra-data filter the board, not --compare")
        board = compare_models(list(models), dataset=dataset, threat_model=threat_model,
                               robustbench_dir=robustbench_dir, records_root=records_root)
    else:
        board = build_board(dataset, threat_model, robustbench_dir=robustbench_dir, records_root=records_root,
                            top=top, only_ikl=only_ikl, no_extra_data=no_extra_data)
    text = render_board(board, fmt)
    if out_file:
        from ikl_zoo.leaderboard.records import output_errors

        with output_errors(out_file, fix="pass an -o/--out path you can write"):
            written = write_text_atomic(out_file, text)
        click.echo(f"wrote {written}")  # outside: a closed stdout is not the file's fault
    else:
        click.echo(text, nl=False)
    if plot:
        click.echo(f"wrote {plot_board(board, plot)}", err=out_file is None)


@main.command()
@click.argument("result", type=click.Path(exists=True, dir_okay=False))
@RECORDS_OPTION
@click.option("--overwrite", is_flag=True, help="Replace a record on more examples or another eps/version.")
def record(result: str, records_root: str, overwrite: bool) -> None:
    """Add RESULT (a result.json of `ikl-zoo eval`) to the leaderboard records, or update its record."""
    from ikl_zoo.leaderboard.records import read_result, write_record

    click.echo(f"wrote {write_record(read_result(result), root=records_root, overwrite=overwrite)}")


@main.command()
@click.argument("model", required=False)
@DATASET_OPTION
@click.option("--result", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A result.json of `ikl-zoo eval`: its figures go beside the published ones.")
@click.option("--repo-id", default=None, help="Hub repository (ORG/NAME) named in the loading snippet.")
@click.option("--all", "all_models", is_flag=True, help="Cards of every IKL-AT registry model.")
@RECORDS_OPTION
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for README.md (--all: one folder per model; default for a zoo folder: itself).")
def card(
    model: str | None, dataset: str, result: str | None, repo_id: str | None, all_models: bool,
    records_root: str, out_dir: str | None,
) -> None:
    """Write the Hugging Face model card (README.md) of MODEL: a registry id or a zoo folder."""
    from pathlib import Path

    from ikl_zoo.cards.model_card import write_model_card, write_registry_cards
    from ikl_zoo.leaderboard.records import read_result

    if all_models:
        if model or result:
            raise click.UsageError("--all writes the registry's cards; give no MODEL or --result with it")
        for path in write_registry_cards(out_dir or "cards", records_root=records_root):
            click.echo(f"wrote {path}")
        return
    if not model:
        raise click.UsageError("give a MODEL (registry id or zoo folder), or --all")
    if click.get_current_context().get_parameter_source("records_root") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--records is read with --all only: give one measurement with --result")
    if out_dir is None:
        if not Path(model).is_dir():
            raise click.UsageError("-o/--out is required unless MODEL is a zoo folder")
        out_dir = model
    evaluation = read_result(result) if result else None
    path = write_model_card(model, out_dir, dataset=dataset, result=evaluation, repo_id=repo_id)
    click.echo(f"wrote {path}")


@main.command()
@click.option("--result", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The result.json of a full `ikl-zoo eval`.")
@click.option("--name", default=None, help="RobustBench name: <Author><Year><FirstWordOfTitle>[_variant].")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--draft", is_flag=True, help="Write the files even if RobustBench would refuse them.")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="The model's zoo folder (config.json) when it is not in the registry.")
@click.option("--paper-title", default=None)
@click.option("--paper-url", default=None)
@click.option("--authors", default=None, help='"First Last, First Last, ..."')
@click.option("--venue", default=None, help='e.g. "NeurIPS 2024" or "arXiv, May 2023".')
@click.option("--architecture", default=None, help='e.g. "WideResNet-28-10".')
@click.option("--additional-data/--no-additional-data", default=None, help="Extra real training data?")
@click.option("--footnote", default=None)
@click.option("--checkpoint-url", default=None)
@click.option("--gdrive-id", default=None, help="Google Drive id of the checkpoint (for the model zoo).")
def submit(
    result: str, name: str | None, out_dir: str, draft: bool, model_dir: str | None, **paper: object
) -> None:
    """Write a RobustBench submission: model_info JSON, the filled [New Model] issue, the model-zoo entry."""
    from ikl_zoo.cards.submission import write_submission
    from ikl_zoo.leaderboard.records import read_result

    config = None
    if model_dir:
        from ikl_zoo.cards.model_card import read_config

        config = read_config(model_dir)
    info = {("link" if key == "paper_url" else key): value for key, value in paper.items()}
    submission, paths = write_submission(read_result(result), out_dir, name=name, draft=draft, info=info,
                                         config=config)
    for path in paths:
        click.echo(f"wrote {path}")
    for problem in submission.problems:
        click.echo(f"DRAFT: {problem}", err=True)
    for note in submission.notes:
        click.echo(f"Note: {note}", err=True)


# --- training commands: train --------------------------------------------------------------------


_RECIPE_KNOBS = (
    "dataset", "arch", "epochs", "batch_size", "lr", "lr_warmup_epochs", "momentum", "weight_decay", "eps",
    "eps_ramp_epochs", "attack_steps", "attack_step_size", "alpha", "beta", "temperature", "prior_power",
    "attack_alpha", "attack_beta", "awp_gamma", "awp_warmup_epochs", "ema_decay", "ema_every",
    "ema_start_epoch", "autoaugment", "aug_weight", "seed",
)


def _radius(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``8/255`` or ``0.0314`` as a float."""
    if value is None:
        return None
    numerator, _, denominator = value.partition("/")
    try:
        radius = float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{value!r} is not a radius such as 8/255 or 0.0314") from None
    if not radius >= 0:
        raise click.BadParameter("the radius must not be negative")
    return radius


@main.command()
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
def train(recipe_name: str | None, data_dir: str, out_dir: str, resume: bool, device: str | None, amp: str,
          workers: int, steps_per_epoch: int | None, stop_after_epochs: int | None, model_id: str | None,
          download: bool, show_recipe: bool, **knobs: object) -> None:
    """Train a network with IKL-AT (TRADES-style, IKL loss, AWP, weight averaging); any knob overridable.

    Multi-GPU: torchrun --nproc-per-node N -m ikl_zoo.cli train ...
    """
    import json
    import os

    from ikl_zoo.train import resolve_recipe, train_ikl_at

    overrides = {key: value for key, value in knobs.items() if key in _RECIPE_KNOBS and value is not None}
    recipe = resolve_recipe(recipe_name, overrides=overrides, out_dir=out_dir, resume=resume)
    if show_recipe:
        click.echo(json.dumps(recipe.to_dict(), indent=2))
        return
    result = train_ikl_at(
        recipe, data_dir=data_dir, out_dir=out_dir, resume=resume, device=device, amp=amp, workers=workers,
        steps_per_epoch=steps_per_epoch, stop_after_epochs=stop_after_epochs, model_id=model_id,
        download=download,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one process reports
        return
    if result.model_dir is not None:
        eps_255 = result.recipe.eps * 255
        eps = f"{round(eps_255)}/255" if abs(eps_255 - round(eps_255)) < 1e-9 else f"{result.recipe.eps:g}"
        click.echo(f"wrote {result.model_dir} (averaged weights); evaluate it with:\n  ikl-zoo eval --model "
                   f"{result.model_dir} --dataset {result.recipe.dataset} --eps {eps} --data-dir {data_dir}")
    else:
        click.echo(f"stopped after epoch {result.epochs_done}; continue with the same command and --resume")


if __name__ == "__main__":
    main()
