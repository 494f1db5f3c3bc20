"""The eval command and its option parsers."""

from __future__ import annotations

import os

import click

from ikl_zoo.cli.base import DATASET_OPTION, parse_budget
from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate.settings import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_N_EXAMPLES,
    PRECISIONS,
    VERSIONS,
    EvalSettings,
)
from ikl_zoo.threat import NORMS


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


@click.command(name="eval")
@click.option("--model", "model_id", required=True,
              help="Registered id (`ikl-zoo list`), zoo folder, hf-hub:ORG/NAME[@REVISION] or "
              "robustbench:<RobustBench id>.")
@DATASET_OPTION
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=True), default=None,
              help="Local weights (.pt/.pth/.safetensors or zoo folder) instead of the published ones.")
@click.option("--revision", default=None, help="Hub branch, tag or commit (default: the pinned one).")
@click.option("--data-dir", default="data", type=click.Path(file_okay=False),
              help="CIFAR in torchvision's layout (downloaded there if missing), or `ikl-zoo sample-data`'s.")
@click.option("--download/--no-download", default=True,
              help="Download CIFAR into --data-dir when it is missing.")
@click.option("--n-examples", type=click.IntRange(min=1), default=DEFAULT_N_EXAMPLES,
              help="The first N test images (RobustBench uses all 10,000).")
@click.option("--eps", default="8/255", callback=parse_budget,
              help="Budget, e.g. 8/255 or 0.5.")
@click.option("--norm", type=click.Choice(NORMS), default="Linf",
              help="The threat model: the ball of radius --eps around each image.")
@click.option("--version", "aa_version", type=click.Choice(VERSIONS),
              default="standard", help="AutoAttack version.")
@click.option("--attacks", default=None, help="Custom version: comma-separated, e.g. apgd-ce,apgd-t.")
@click.option("--attack-option", "attack_options", multiple=True, callback=_parse_attack_options,
              help="Custom version: OBJECT.SETTING=N on AutoAttack's attack objects, e.g. apgd.n_restarts=1.")
@click.option("--seed", type=int, default=0, help="Chunk k is attacked with seed + k.")
@click.option("--batch-size", default="auto", callback=_parse_batch_size,
              help="Attack batch size, or auto: the largest that fits, halved on out-of-memory.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=DEFAULT_CHUNK_SIZE,
              help="Examples per chunk: the unit of resumption and of sharding over ranks.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="pytorch",
              help="pytorch: torch's settings, as a direct AutoAttack call (TF32 convolutions on recent "
              "GPUs); ieee: strict fp32, the same flags on any GPU; bf16: autocast, a screen, not a record.")
@click.option("--estimate-only", is_flag=True, help="Print the run's estimated time and exit; write nothing.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory for chunks and result.json "
              "[default: runs/<model>_<dataset>_<norm>_<eps>_<version>].")
@click.option("--resume", is_flag=True, help="Continue the run in --out (refused if its arguments differ).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="Channels-last memory layout [default: on for GPUs, off for CPUs].")
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (GPU).")
@click.option("--robustbench-dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoint cache for robustbench: models [default: <ikl-zoo cache>/robustbench].")
@click.option("--record", is_flag=True, help="Also add the result to the leaderboard records.")
@click.option("--records", "records_root", default="leaderboard",
              help="Records folder for --record.")
@click.option("--no-progress", is_flag=True,
              help="No progress: neither bars (on a terminal) nor a line per chunk and attack (in a log).")
def eval_command(
    model_id: str, dataset: str, checkpoint: str | None, revision: str | None, data_dir: str, download: bool,
    n_examples: int, eps: float, norm: str, aa_version: str, attacks: str | None, attack_options: dict,
    seed: int, batch_size: int | str, chunk_size: int, precision: str, estimate_only: bool, device: str,
    out_dir: str | None, resume: bool, channels_last: bool | None, compile_model: bool,
    robustbench_dir: str | None, record: bool, records_root: str, no_progress: bool,
) -> None:
    """Measure clean and AutoAttack accuracy.

    The same flags as a direct AutoAttack call, as RobustBench measures; resumable and shardable. Run it
    under `torchrun --nproc-per-node N` to deal the chunks to N GPUs (or CPU processes).
    """
    from ikl_zoo.evaluate.attacks import show_autoattack_warnings
    from ikl_zoo.zoo.registry import is_registered

    try:  # before any model or data is loaded; the options' types are click's, so only eps can be wrong
        settings = EvalSettings(
            eps=eps, norm=norm, version=aa_version, attack_options=attack_options, seed=seed,
            attacks=[a.strip() for a in attacks.split(",") if a.strip()] if attacks else None,
            batch_size=batch_size, chunk_size=chunk_size, dataset=dataset, n_examples=n_examples,
            precision=precision, device=device, compile=compile_model, channels_last=channels_last,
        )
    except EvaluationError as error:
        raise click.BadParameter(str(error), param_hint="'--eps'") from None
    if record and checkpoint is not None and is_registered(model_id, dataset=dataset):
        # write_record refuses such a result at the end: say so before hours of attacks. An id that is not
        # registered gets the loader's error (close names), not advice to convert for it.
        from ikl_zoo.leaderboard.records import replaced_weights_error

        raise replaced_weights_error(model_id, checkpoint, dataset=dataset)
    from ikl_zoo.evaluate.run import ModelRequest, default_run_dir, estimate_model, evaluate_model
    from ikl_zoo.evaluate.summary import format_summary

    request = ModelRequest(
        model_id, checkpoint=checkpoint, revision=revision, data_dir=data_dir, download=download,
        robustbench_dir=robustbench_dir,
    )
    if estimate_only:
        click.echo(estimate_model(request, settings=settings))
        return
    out_dir = out_dir or str(default_run_dir(model_id, settings))
    with show_autoattack_warnings():
        result = evaluate_model(
            request, settings=settings, out=out_dir, resume=resume, progress=not no_progress
        )
    if os.environ.get("RANK", "0") != "0":
        return
    click.echo(format_summary(result))
    click.echo(f"result: {os.path.join(out_dir, 'result.json')}")
    if record:
        from ikl_zoo.leaderboard.records import write_record

        click.echo(f"record: {write_record(result, root=records_root)}")
