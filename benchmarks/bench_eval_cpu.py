"""ikl-zoo's evaluator against a direct ``pyautoattack`` call on CPU: same model, images, seed and batch.

The model is the demo ResNet-18 (pyautoattack's plainly trained test checkpoint, not IKL-AT), the images
are the real CIFAR-10 test images foolbox ships. With the examples in one chunk and the same batch size,
the robust flags must be identical; the timing shows what the evaluator's bookkeeping costs or saves
(it freezes the weights, so the attacks compute no weight gradients).

    python benchmarks/bench_eval_cpu.py                          # standard AA, eps 8/255: about 2 minutes
    python benchmarks/bench_eval_cpu.py --eps 1/255 --version custom --attacks apgd-ce,apgd-t
    python benchmarks/bench_eval_cpu.py --eps 1/255 --version custom --attacks fab-t \
        --options fab.n_iter=20,fab.n_target_classes=3 --repeats 3    # FAB-T: the weight-gradient saving
    python benchmarks/bench_eval_cpu.py --eps 2/255 --precisions ieee,bf16   # and the flags between them

Each precision runs both sides under it (the direct call on the model under bf16 autocast for bf16); with
several, the flags of each are compared with the first's: agreement between precisions, measured.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from functools import partial

import torch


def fraction(text: str) -> float:
    numerator, _, denominator = text.partition("/")
    return float(numerator) / float(denominator) if denominator else float(numerator)


def attack_options(text: str) -> dict[str, dict[str, float]]:
    """``fab.n_iter=20,square.p_init=0.8`` as ``evaluate``'s ``attack_options``."""
    options: dict[str, dict[str, float]] = {}
    for item in filter(None, text.split(",")):
        dotted, _, value = item.partition("=")
        attack_object, _, name = dotted.partition(".")
        options.setdefault(attack_object, {})[name] = float(value)
    return options


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eps", type=fraction, default=8 / 255, help="e.g. 8/255 (default) or 0.01")
    parser.add_argument("--version", choices=["standard", "plus", "rand", "custom"], default="standard")
    parser.add_argument("--attacks", default=None, help="custom version: comma-separated (apgd-ce,apgd-t)")
    parser.add_argument("--options", type=attack_options, default={},
                        help="custom version: attack settings, e.g. fab.n_iter=20,fab.n_target_classes=3")
    parser.add_argument("--n-examples", type=int, default=20, help="at most 20 (the images foolbox ships)")
    parser.add_argument("--batch-size", type=int, default=0, help="both sides (default: all examples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two calls; report the fastest")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--precisions", default="pytorch", help="comma-separated: pytorch, ieee, bf16")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from pyautoattack import AutoAttack

    from ikl_zoo import load_model
    from ikl_zoo.data import load_test_examples, write_sample_data_dir
    from ikl_zoo.evaluate import evaluate, prepare
    from ikl_zoo.evaluate.attacks import check_attack_options

    options = check_attack_options(args.options, version=args.version)
    if any("n_iter" in options.get(name, {}) for name in ("apgd", "apgd_targeted")):
        parser.error("APGD derives its step schedule from n_iter when built: set FAB and Square options only")

    attacks = args.attacks.split(",") if args.attacks else None
    batch_size = args.batch_size or args.n_examples
    with tempfile.TemporaryDirectory() as data_dir:
        write_sample_data_dir(data_dir, datasets=("cifar10",))
        x, y = load_test_examples("cifar10", data_dir=data_dir, n_examples=args.n_examples)
    model = load_model("demo-resnet18")
    print(
        f"demo ResNet-18 (not IKL-AT) on {len(x)} real CIFAR-10 test images, "
        f"Linf eps {args.eps * 255:.3g}/255, "
        f"AutoAttack {args.version}{' ' + ','.join(attacks) if attacks else ''}"
        f"{' ' + str(options) if options else ''}, seed {args.seed}, "
        f"batch {batch_size}, {torch.get_num_threads()} CPU threads",
        flush=True,
    )

    def direct(precision: str) -> list[bool]:
        wrapped = prepare.with_precision(model, precision, torch.device("cpu"))  # bf16: forward in autocast
        adversary = AutoAttack(wrapped, norm="Linf", eps=args.eps, version=args.version, attacks=attacks,
                               seed=args.seed, device="cpu")
        for attack_object, settings in options.items():  # as AutoAttack's README sets them
            for name, value in settings.items():
                setattr(getattr(adversary, attack_object), name, value)
        with prepare.strict_fp32() if precision == "ieee" else contextlib.nullcontext():
            _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        return (y_adv == y).tolist()

    def ours(precision: str) -> list[bool]:
        result = evaluate(model, x, y, eps=args.eps, version=args.version, attacks=attacks,
                          attack_options=options, seed=args.seed, batch_size=batch_size,
                          chunk_size=len(x), device="cpu", precision=precision, progress=False)
        return result.robust_flags

    identical, first = True, None
    for precision in args.precisions.split(","):
        print(f"precision {precision}:", flush=True)
        flags = compare(partial(direct, precision), partial(ours, precision), repeats=args.repeats, n=len(x))
        identical &= flags["direct"] == flags["ikl-zoo"]
        first = first or (precision, flags["ikl-zoo"])
        if first[0] != precision:
            agree = sum(a == b for a, b in zip(first[1], flags["ikl-zoo"], strict=True))
            print(f"flags at {precision} agree with {first[0]} on {agree}/{len(x)}")
    return 0 if identical else 1


def compare(direct, ours, *, repeats: int, n: int) -> dict[str, list[bool]]:
    """Both calls, alternated ``repeats`` times; prints each time and the fastest of each."""
    times: dict[str, list[float]] = {"direct": [], "ikl-zoo": []}
    flags: dict[str, list[bool]] = {}
    for repeat in range(repeats):
        order = (("direct", direct), ("ikl-zoo", ours))
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            flags[name] = run()
            times[name].append(time.perf_counter() - start)
            print(f"  {name:8s} {times[name][-1]:7.1f} s  robust {sum(flags[name])}/{n}", flush=True)

    best = {name: min(values) for name, values in times.items()}
    for name, label in (("direct", "direct pyautoattack"), ("ikl-zoo", "ikl-zoo evaluate")):
        accuracy = 100 * sum(flags[name]) / n
        print(f"{label + ':':21s}{best[name]:.1f} s, robust accuracy {accuracy:.2f}%")
    print(f"ratio (direct / ikl-zoo): {best['direct'] / best['ikl-zoo']:.2f}x; "
          f"flags identical: {flags['direct'] == flags['ikl-zoo']}")
    return flags


if __name__ == "__main__":
    sys.exit(main())
