"""ikl-zoo's flags are pyautoattack's flags: same seed, same batches, same attack settings.

APGD's flags on the tiny network do not change with the seed or the batch size, so equality under APGD
cannot see broken seeding or batching. Square's random search with 10 queries at eps 0.05 does change
with both; the Square tests first show that on direct pyautoattack calls, then require ikl-zoo to match
them. (Square shows it on the demo ResNet-18 too, but a pass of it costs 17 times the tiny network's.)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import pytest
import torch

from ikl_zoo import load_model
from ikl_zoo.evaluate import evaluate, prepare

from .conftest import FAST_APGD, TINY_EPS, direct_autoattack

SQUARE_EPS = 0.05
SQUARE_OPTIONS = {"n_queries": 10}
SQUARE = dict(
    eps=SQUARE_EPS, version="custom", attacks=["square"], attack_options={"square": SQUARE_OPTIONS},
    progress=False,
)
CHUNK_SEED, CHUNK_SIZE, CHUNK_BATCH = 1, 7, 3
"""Three chunks (7, 7, 6 images), attacked in batches of 3 with seeds 1, 2, 3."""

DirectSquare = Callable[..., list[bool]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two busy cores: one thread for the tests' small passes is several times faster than two, and
    ikl-zoo and the direct calls it is compared with run alike either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def direct_square(tiny_model, cifar10_sample) -> DirectSquare:
    """``flags(seed, batch_size, start=0, stop=20)``: a direct AutoAttack Square call on images start:stop,
    cached because several tests compare against the same calls."""
    x, y = cifar10_sample

    @functools.cache
    def cached(seed: int, batch_size: int, start: int, stop: int) -> tuple[bool, ...]:
        return tuple(
            direct_autoattack(
                tiny_model, x[start:stop], y[start:stop], eps=SQUARE_EPS, seed=seed,
                batch_size=batch_size, attacks=["square"], square=SQUARE_OPTIONS,
            )
        )

    def flags(seed: int, batch_size: int, start: int = 0, stop: int = 20) -> list[bool]:
        return list(cached(seed, batch_size, start, stop))

    return flags


def _chunk_bounds() -> list[tuple[int, int]]:
    return [(start, min(start + CHUNK_SIZE, 20)) for start in range(0, 20, CHUNK_SIZE)]


def _per_chunk_direct(direct_square: DirectSquare, *, seed_of_chunk: Callable[[int], int]) -> list[bool]:
    flags: list[bool] = []
    for k, (start, stop) in enumerate(_chunk_bounds()):
        flags += direct_square(seed_of_chunk(k), CHUNK_BATCH, start, stop)
    return flags


@pytest.mark.slow
def test_demo_resnet18_flags_equal_a_direct_autoattack_call(cifar10_sample):
    """The demo ResNet-18 at eps 1/255 on the 20 real images: APGD-CE then APGD-T, two batches of 10.

    The attacks run with fewer iterations than AutoAttack's defaults (custom version) to fit a CPU test;
    the full standard suite is timed in benchmarks/bench_eval_cpu.py.
    """
    model = load_model("demo-resnet18")
    x, y = cifar10_sample
    apgd, apgd_targeted = {"n_iter": 5, "n_restarts": 1}, {"n_iter": 5, "n_target_classes": 2}
    result = evaluate(
        model,
        x,
        y,
        eps=1 / 255,
        version="custom",
        attacks=["apgd-ce", "apgd-t"],
        seed=0,
        batch_size=10,
        chunk_size=20,
        attack_options={"apgd": apgd, "apgd_targeted": apgd_targeted},
        progress=False,
    )
    expected = direct_autoattack(
        model,
        x,
        y,
        eps=1 / 255,
        seed=0,
        batch_size=10,
        attacks=["apgd-ce", "apgd-t"],
        apgd=apgd,
        apgd_targeted=apgd_targeted,
    )
    assert result.robust_flags == expected
    assert 0 < sum(expected) < 20, "the case must have non-trivial robustness to mean anything"
    assert result.clean_acc == 1.0
    assert result.per_attack["apgd-t"] == result.robust_acc <= result.per_attack["apgd-ce"] < 1.0
    assert result.provenance["max_perturbation"] <= 1 / 255 + 1e-6
    assert set(result.timings) >= {"total", "wall", "checks", "clean", "apgd-ce", "apgd-t"}


def test_square_flags_depend_on_seed_and_batch_size(direct_square):
    """The premise of the Square tests: a wrong seed or a wrong batching changes pyautoattack's flags."""
    assert direct_square(0, 20) != direct_square(0, 7), "batch size 20 vs 7 should change the flags"
    assert direct_square(0, 7) != direct_square(1, 7), "seed 0 vs 1 should change the flags"
    assert 0 < sum(direct_square(0, 7)) < 20


@pytest.mark.parametrize(("seed", "batch_size"), [(0, 20), (0, 7), (1, 7)])
def test_square_flags_equal_a_direct_autoattack_call(
    tiny_model, cifar10_sample, direct_square, seed, batch_size
):
    result = evaluate(tiny_model, *cifar10_sample, seed=seed, batch_size=batch_size, chunk_size=20, **SQUARE)
    assert result.robust_flags == direct_square(seed, batch_size)
    assert result.per_attack["square"] == result.robust_acc
    assert result.provenance["max_perturbation"] <= SQUARE_EPS + 1e-6


def test_chunk_k_is_autoattack_with_seed_plus_k(tiny_model, cifar10_sample, direct_square):
    expected = _per_chunk_direct(direct_square, seed_of_chunk=lambda k: CHUNK_SEED + k)
    one_seed = _per_chunk_direct(direct_square, seed_of_chunk=lambda k: CHUNK_SEED)
    assert expected != one_seed, "the chunks' own seeds should matter in this case"
    result = evaluate(
        tiny_model, *cifar10_sample, seed=CHUNK_SEED, batch_size=CHUNK_BATCH, chunk_size=CHUNK_SIZE, **SQUARE
    )
    assert result.robust_flags == expected
    assert result.chunk_size == CHUNK_SIZE and result.batch_size == CHUNK_BATCH


def test_resumed_chunk_keeps_its_own_seed(tiny_model, cifar10_sample, direct_square, tmp_path):
    """A resumed run attacks the missing middle chunk first, yet with seed + its index, not + 0."""
    start, stop = _chunk_bounds()[1]
    assert direct_square(CHUNK_SEED + 1, CHUNK_BATCH, start, stop) != direct_square(
        CHUNK_SEED, CHUNK_BATCH, start, stop
    ), "the middle chunk's flags should depend on its seed"
    out = tmp_path / "run"
    arguments = dict(seed=CHUNK_SEED, batch_size=CHUNK_BATCH, chunk_size=CHUNK_SIZE, out=out, **SQUARE)
    evaluate(tiny_model, *cifar10_sample, **arguments)
    (out / "chunks" / "chunk_00001.json").unlink()
    (out / "result.json").unlink()
    resumed = evaluate(tiny_model, *cifar10_sample, resume=True, **arguments)
    assert resumed.provenance["resumed_chunks"] == 2
    assert resumed.robust_flags == _per_chunk_direct(direct_square, seed_of_chunk=lambda k: CHUNK_SEED + k)


def test_l2_threat_model_is_plumbed(tiny_model, cifar10_sample):
    x, y = cifar10_sample
    result = evaluate(
        tiny_model,
        x,
        y,
        eps=0.25,
        norm="L2",
        version="custom",
        attacks=["apgd-ce"],
        attack_options=FAST_APGD,
        seed=0,
        batch_size=20,
        chunk_size=20,
        progress=False,
    )
    expected = direct_autoattack(
        tiny_model,
        x,
        y,
        eps=0.25,
        norm="L2",
        seed=0,
        batch_size=20,
        attacks=["apgd-ce"],
        apgd=FAST_APGD["apgd"],
    )
    assert result.threat_model == "L2" and result.robust_flags == expected
    assert result.provenance["max_perturbation"] <= 0.25 + 1e-5
    assert 0 < sum(expected) < 20


def test_channels_last_does_not_change_flags(tiny_model, cifar10_sample):
    x, y = cifar10_sample
    runs = [
        evaluate(
            tiny_model,
            x,
            y,
            eps=TINY_EPS,
            version="custom",
            attacks=["apgd-ce"],
            attack_options=FAST_APGD,
            batch_size=10,
            chunk_size=20,
            channels_last=channels_last,
            progress=False,
        )
        for channels_last in (False, True)
    ]
    assert runs[0].robust_flags == runs[1].robust_flags
    assert tiny_model.conv1.weight.is_contiguous()  # the layout is the caller's again
    assert runs[1].provenance["channels_last"] is True


def test_auto_batch_size_backs_off_on_out_of_memory_and_keeps_flags(
    tiny_model, cifar10_sample, direct_square
):
    """A model that runs out of memory above 5 images: auto halves 20 -> 10 -> 5 and redoes the chunk,
    whose flags are then those of batch size 5, not 10 or 20."""

    class SmallMemory(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if x.shape[0] > 5:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(x)

    assert direct_square(0, 5) not in (direct_square(0, 10), direct_square(0, 20))
    result = evaluate(SmallMemory(tiny_model), *cifar10_sample, batch_size="auto", chunk_size=20, **SQUARE)
    assert result.batch_size == 5 and result.robust_flags == direct_square(0, 5)
    assert any("out of memory at batch size 10" in message for message in result.warnings)


def test_fab_t_is_autoattacks_single_restart_targeted_fab(tiny_model, cifar10_sample):
    """FAB-T is FAB targeted with one restart, set by AutoAttack before each batch over the object's five:
    the same flags and the same number of model passes as a direct call (five restarts would take about
    four times as many, yet find the same points here)."""
    from pyautoattack import AutoAttack

    x, y = cifar10_sample
    fab = {"n_iter": 5, "n_target_classes": 2}

    class Counted(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.forward_calls = inner, 0

        def forward(self, images):
            self.forward_calls += 1
            return self.inner(images)

    counted = Counted(tiny_model)
    adversary = AutoAttack(counted, norm="Linf", eps=TINY_EPS, version="custom", attacks=["fab-t"], seed=0,
                           device="cpu")
    for name, value in fab.items():
        setattr(adversary.fab, name, value)
    assert adversary.fab.n_restarts == 5
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=20)
    result = evaluate(tiny_model, x, y, eps=TINY_EPS, version="custom", attacks=["fab-t"],
                      attack_options={"fab": fab}, seed=0, batch_size=20, chunk_size=20, progress=False)
    assert result.robust_flags == (y_adv == y).tolist()
    assert 0 < sum(result.robust_flags) < 20
    assert result.model_passes["forward"] == counted.forward_calls


class Bf16Screen(torch.nn.Module):
    """What a user would write for a bf16 direct call: the model's forward under autocast, fp32 logits."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner(x).float()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["ieee", "bf16"])
def test_demo_resnet18_flags_equal_a_direct_call_at_the_same_precision(cifar10_sample, precision):
    """The demo ResNet-18, APGD-CE and Square on 10 real images, against AutoAttack called directly under
    the same precision (strict fp32; or the model under bf16 autocast); the agreement between precisions
    is measured in benchmarks/bench_eval_cpu.py, not assumed here."""
    model = load_model("demo-resnet18")
    x, y = cifar10_sample[0][:10], cifar10_sample[1][:10]
    options = {"apgd": {"n_iter": 5, "n_restarts": 1}, "square": {"n_queries": 5}}
    result = evaluate(model, x, y, eps=2 / 255, version="custom", attacks=["apgd-ce", "square"], seed=0,
                      batch_size=5, chunk_size=10, attack_options=options, precision=precision,
                      progress=False)
    direct_model = Bf16Screen(model) if precision == "bf16" else model
    with prepare.strict_fp32() if precision == "ieee" else contextlib.nullcontext():
        expected = direct_autoattack(direct_model, x, y, eps=2 / 255, seed=0, batch_size=5,
                                     attacks=["apgd-ce", "square"], apgd=options["apgd"],
                                     square=options["square"])
    assert result.robust_flags == expected
    assert result.settings.precision == precision
    assert result.clean_acc > 0.5


@pytest.mark.parametrize("precision", ["ieee", "bf16"])
def test_square_flags_equal_a_direct_call_at_the_same_precision(tiny_model, cifar10_sample, precision):
    """Square depends on seed and batching (shown above): at each precision, the direct call's flags."""
    x, y = cifar10_sample
    direct_model = Bf16Screen(tiny_model) if precision == "bf16" else tiny_model
    with prepare.strict_fp32() if precision == "ieee" else contextlib.nullcontext():
        expected = direct_autoattack(direct_model, x, y, eps=SQUARE_EPS, seed=0, batch_size=7,
                                     attacks=["square"], square=SQUARE_OPTIONS)
    result = evaluate(tiny_model, x, y, seed=0, batch_size=7, chunk_size=20, precision=precision, **SQUARE)
    assert result.robust_flags == expected and 0 < sum(expected) < 20
