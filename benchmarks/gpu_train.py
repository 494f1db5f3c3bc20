"""IKL-AT training throughput against a plain TRADES step on a WRN-34-10 (GPU, random CIFAR-shaped data).

Both steps run the same PGD (``--attack-steps`` sign steps, model in eval mode, clean logits computed once)
and the same SGD update; they differ only in the loss: TRADES maximises and trains ``KL(s_clean || s_adv)``
(``CE + beta * KL``), IKL-AT uses ikl-zoo's ``IKLATTrainer`` (IKL attack loss with the wMSE term, training
loss ``CE + IKL`` with the class prior, prior update). AWP is off in both unless ``--awp`` is given, which
adds it to both. The ratio shows what the IKL loss costs on top of TRADES.

    python benchmarks/gpu_train.py                # about a minute on an H100
    python benchmarks/gpu_train.py --amp bf16 --dataset cifar100
    python benchmarks/gpu_train.py --device cpu --depth 10 --width 1 --batch-size 16 --attack-steps 2

Each step's figure is printed as soon as it is measured, and ``--budget-s`` (the measurements' share of the
wall clock) cuts the timed steps short when the warm-up shows they would not fit, so a run under a hard
time limit still prints both figures.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ikl_zoo.train import AdversarialWeightPerturbation, IKLATTrainer, get_recipe
from ikl_zoo.zoo.architectures import WideResNet


class TradesStep:
    """TRADES (Zhang et al., 2019): PGD on KL(s_clean || s_adv), then CE + beta * KL, optionally with AWP."""

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        attack_steps: int,
        eps: float,
        beta: float,
        awp: bool,
        amp_dtype: torch.dtype | None,
    ) -> None:
        self.net, self.attack_steps, self.eps, self.beta = net, attack_steps, eps, beta
        self.amp_dtype = amp_dtype
        self.device_type = next(net.parameters()).device.type
        self.optimizer = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
        self.awp = AdversarialWeightPerturbation(net, gamma=0.005, lr=0.2) if awp else None

    def _autocast(self):
        return torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _kl(self, logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction="batchmean")

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        net = self.net
        net.eval()
        with torch.no_grad(), self._autocast():
            clean = net(x).float()
        x_adv = x + 0.001 * torch.randn_like(x)
        for _ in range(self.attack_steps):
            x_adv.requires_grad_(True)
            with self._autocast():
                logits = net(x_adv)
            (grad,) = torch.autograd.grad(self._kl(clean, logits.float()), [x_adv])
            x_adv = torch.min(
                torch.max(x_adv.detach() + self.eps / 2 * grad.sign(), x - self.eps), x + self.eps
            )
            x_adv = x_adv.clamp(0, 1)
        net.train()
        diff = {}
        if self.awp is not None:
            diff = self.awp.compute(
                x,
                x_adv,
                lambda c, a: F.cross_entropy(c, y) + self.beta * self._kl(c, a),
                amp_dtype=self.amp_dtype,
            )
            self.awp.perturb(diff)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits_clean, logits_adv = net(x), net(x_adv)
        loss = F.cross_entropy(logits_clean.float(), y) + self.beta * self._kl(
            logits_clean.float(), logits_adv.float()
        )
        loss.backward()
        self.optimizer.step()
        if diff:
            self.awp.restore(diff)
        return loss.detach()


def images_per_second(
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    warmup: int,
    steps: int,
    budget_s: float,
) -> tuple[float, float, int]:
    """Images per second over the timed steps, the last loss and the number of timed steps: as many as
    ``steps``, fewer where the last warm-up step says they would not fit ``budget_s`` with the warm-up."""
    started = time.perf_counter()
    for index in range(max(warmup, 1)):  # the first step also times cudnn's autotuning: never timed
        step_started = time.perf_counter()
        float(step(x, y))  # synchronises
        last_step = time.perf_counter() - step_started
        if time.perf_counter() - started + last_step > budget_s and index >= 1:
            break  # the rest of the warm-up is spare
    left = budget_s - (time.perf_counter() - started)
    steps = max(1, min(steps, int(left / last_step)))
    started = time.perf_counter()
    for _ in range(steps):
        loss = step(x, y)
    last = float(loss)  # synchronises
    seconds = time.perf_counter() - started
    return steps * len(x) / seconds, last, steps


def measure(name: str, build: Callable[[], Callable], x, y, args, budget_s: float) -> float | None:
    """Prints one step's throughput as soon as it is known; a failure prints its traceback instead."""
    try:
        rate, loss, steps = images_per_second(
            build(), x, y, warmup=args.warmup, steps=args.steps, budget_s=budget_s
        )
    except Exception:  # the other step's figure must still come out
        print(f"{name} step FAILED:\n{traceback.format_exc().rstrip()}", flush=True)
        return None
    print(f"{name} step: {rate:8.1f} images/s (loss {loss:.3f}, {steps} timed steps)", flush=True)
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["cifar10", "cifar100"], default="cifar10")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--attack-steps", type=int, default=10, help="PGD steps in both (TRADES uses 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps, fewer if --budget-s says so")
    parser.add_argument("--budget-s", type=float, default=70.0, help="seconds for both steps' measurements")
    parser.add_argument("--amp", choices=["off", "bf16"], default="off")
    parser.add_argument("--awp", action="store_true", help="add AWP (gamma 0.005) to both steps")
    parser.add_argument("--depth", type=int, default=34, help="WideResNet depth (smaller: a CPU smoke run)")
    parser.add_argument("--width", type=int, default=10, help="WideResNet widen factor")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a smoke run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("this benchmark needs a CUDA GPU (or --device cpu for a smoke run)")
        torch.backends.cudnn.benchmark = True
    classes = 10 if args.dataset == "cifar10" else 100
    amp_dtype = torch.bfloat16 if args.amp == "bf16" else None
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(args.batch_size, 3, 32, 32, generator=generator).to(device)
    y = torch.randint(0, classes, (args.batch_size,), generator=generator).to(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"WRN-{args.depth}-{args.width}, {args.dataset}, batch {args.batch_size}, "
        f"{args.attack_steps} PGD steps, amp {args.amp}, AWP {'on' if args.awp else 'off'}, {where}, "
        f"torch {torch.__version__}",
        flush=True,
    )

    def trades() -> Callable:
        torch.manual_seed(0)
        step = TradesStep(
            WideResNet(args.depth, args.width, classes).to(device),
            attack_steps=args.attack_steps,
            eps=8 / 255,
            beta=6.0,
            awp=args.awp,
            amp_dtype=amp_dtype,
        )
        return step.step

    def ikl_at() -> Callable:
        torch.manual_seed(0)
        recipe = get_recipe(
            args.dataset,
            attack_steps=args.attack_steps,
            awp_gamma=0.005 if args.awp else 0.0,
            awp_warmup_epochs=1,
            eps_ramp_epochs=0,
            batch_size=args.batch_size,
        )
        ikl = IKLATTrainer(WideResNet(args.depth, args.width, classes), recipe, device=device, amp=args.amp)

        def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            stats = ikl.step(images, labels, epoch=recipe.epochs)
            ikl.class_prior.step()  # the end-of-epoch prior update, here after every step: an upper bound
            return stats["loss"] / stats["images"]

        return step

    trades_rate = measure("TRADES", trades, x, y, args, args.budget_s / 2)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    ikl_rate = measure("IKL-AT", ikl_at, x, y, args, args.budget_s / 2)
    if trades_rate is None or ikl_rate is None:
        return 1
    print(f"IKL-AT / TRADES throughput: {ikl_rate / trades_rate:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
