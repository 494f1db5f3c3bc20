"""The IKL-AT optimisation step and its pieces: the PGD attack on the IKL loss, adversarial weight
perturbation, the weight average, and the state the step needs (optimiser, class prior, loss scaler)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ikl_zoo.losses import ClassPrior, ikl_loss
from ikl_zoo.train.recipes import Recipe, TrainingError

AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_FLOAT16_LOSS_SCALE = 1024.0


def ikl_pgd_attack(model: nn.Module, x: Tensor, y: Tensor, class_prior: Tensor, *, eps: float,
                   step_size: float, steps: int, alpha: float = 1.0, beta: float = 0.0,
                   amp_dtype: torch.dtype | None = None) -> Tensor:
    """Adversarial examples that maximise ``ikl_loss(model(x), model(x_adv), y, class_prior)``, as the
    released code: eval mode, start at ``x + 0.001 * N(0, 1)``, ``steps`` signed steps projected onto the
    eps-ball and [0, 1]. The clean logits are computed once (eval mode: the same at every step)."""
    was_training = model.training
    model.eval()
    mixed = torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    try:
        x = x.detach()
        with torch.no_grad(), mixed:
            logits_clean = model(x).float()
        x_adv = x + 0.001 * torch.randn_like(x)
        scale = _FLOAT16_LOSS_SCALE if amp_dtype == torch.float16 else 1.0
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                with mixed:
                    logits_adv = model(x_adv)
                loss = ikl_loss(logits_clean, logits_adv.float(), y, class_prior, alpha=alpha, beta=beta)
                # Only the gradient's sign is used: scaling keeps float16 gradients from underflowing to 0.
                (grad,) = torch.autograd.grad(loss * scale, [x_adv])
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
        return x_adv.clamp(0.0, 1.0).detach()
    finally:
        model.train(was_training)


class AdversarialWeightPerturbation:
    """One ascent step on a proxy copy of the network gives each weight matrix/kernel a direction, rescaled to
    that weight's norm; ``perturb`` adds ``gamma`` times it, ``restore`` removes it after the optimiser step.
    The proxy runs in train mode so that only its own BatchNorm statistics move; under torchrun its gradients
    are averaged over processes so that every replica gets the same perturbation."""

    def __init__(self, model: nn.Module, *, gamma: float, lr: float) -> None:
        self.model, self.gamma = model, gamma
        self.proxy = copy.deepcopy(model)
        self.proxy_optimizer = torch.optim.SGD(self.proxy.parameters(), lr=lr)

    def compute(self, x_clean: Tensor, x_adv: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor], *,
                amp_dtype: torch.dtype | None = None, loss_scale: float = 1.0) -> dict[str, Tensor]:
        """The perturbation for this batch under ``loss_fn(logits_clean, logits_adv)``; ``loss_scale`` keeps
        float16 gradients from underflowing (a non-finite proxy gradient then gives no perturbation)."""
        self.proxy.load_state_dict(self.model.state_dict())
        self.proxy.train()
        with torch.autocast(x_clean.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits_clean, logits_adv = self.proxy(x_clean), self.proxy(x_adv)
        loss = -loss_fn(logits_clean.float(), logits_adv.float())
        self.proxy_optimizer.zero_grad(set_to_none=True)
        (loss * loss_scale).backward()
        grads = [p.grad for p in self.proxy.parameters() if p.grad is not None]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for grad in grads:
                torch.distributed.all_reduce(grad)
                grad.div_(torch.distributed.get_world_size())
        if loss_scale != 1.0 and not torch.stack([grad.isfinite().all() for grad in grads]).all():
            return {}
        self.proxy_optimizer.step()
        proxy_params = dict(self.proxy.named_parameters())
        with torch.no_grad():  # biases and BatchNorm affine parameters are not perturbed
            deltas = {name: proxy_params[name] - weight for name, weight in self.model.named_parameters()
                      if weight.ndim > 1}
            return {name: self.model.get_parameter(name).norm() / (delta.norm() + 1e-20) * delta
                    for name, delta in deltas.items()}

    @torch.no_grad()
    def perturb(self, diff: dict[str, Tensor], *, sign: float = 1.0) -> None:
        for name, weight in self.model.named_parameters():
            if name in diff:
                weight.add_(diff[name], alpha=sign * self.gamma)

    def restore(self, diff: dict[str, Tensor]) -> None:
        self.perturb(diff, sign=-1.0)


class ModelEMA:
    """``average = decay * average + (1 - decay) * current`` over every floating-point ``state_dict`` entry:
    BatchNorm statistics too, so no recalibration pass; integer buffers are copied."""

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.state = {key: value.detach().clone() for key, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, *, copy: bool = False) -> None:
        """Fold the current state in; ``copy=True`` restarts the average from it."""
        for key, value in model.state_dict().items():
            average = self.state[key]
            if copy or not average.is_floating_point():
                average.copy_(value)
            else:
                average.mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)

    def state_dict(self) -> dict[str, Tensor]:
        return {key: value.clone() for key, value in self.state.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if missing := set(self.state) ^ set(state):
            raise ValueError(f"EMA state does not match the network: {sorted(missing)[:3]}")
        for key, value in state.items():
            self.state[key].copy_(value)


class _AdvCleanForward(nn.Module):
    """Both training forward passes in one module call, so that DDP sees one forward per backward."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_adv: Tensor, x_clean: Tensor) -> tuple[Tensor, Tensor]:
        # Separate calls, adversarial first, as the released code: BatchNorm sees each batch on its own.
        return self.net(x_adv), self.net(x_clean)


class IKLATTrainer:
    """``step`` crafts the adversarial batch, applies AWP when the recipe says so for ``epoch``, takes one SGD
    step on ``CE(z_clean, y) + IKL(z_clean, z_adv)`` and folds the clean logits into the class prior."""

    def __init__(self, net: nn.Module, recipe: Recipe, *, device: torch.device | str, amp: str = "off",
                 distributed: bool = False) -> None:
        if amp not in AMP_DTYPES:
            raise TrainingError(f"unknown --amp {amp!r}", fix=f"choose one of {', '.join(AMP_DTYPES)}")
        self.device, self.recipe, self.amp_dtype = torch.device(device), recipe, AMP_DTYPES[amp]
        self.net = net.to(self.device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self.class_prior = ClassPrior(recipe.num_classes, temperature=recipe.temperature, device=self.device)
        self.awp = (AdversarialWeightPerturbation(self.net, gamma=recipe.awp_gamma, lr=recipe.lr)
                    if recipe.awp_gamma > 0 else None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")  # a no-op when disabled
        self.ema = ModelEMA(self.net, decay=recipe.ema_decay)
        self.forward_pair: nn.Module = _AdvCleanForward(self.net)
        if distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_pair = nn.parallel.DistributedDataParallel(self.forward_pair, device_ids=device_ids)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, images: Tensor | Sequence[Tensor], y: Tensor, *, epoch: int) -> dict[str, Tensor]:
        """One step on a batch (or ``(view, autoaugment_view)``); returns detached sums over every view:
        ``loss`` (times the image count), ``clean_correct``, ``adv_correct`` and ``images``."""
        x, labels, first_view = self._batch(images, y)
        x_adv = self._attack(x, labels, epoch)
        self.net.train()
        awp_diff = self._perturb_weights(x, x_adv, labels, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits_adv, logits_clean = self.forward_pair(x_adv, x)
        logits_adv, logits_clean = logits_adv.float(), logits_clean.float()
        self.class_prior.update(logits_clean[:first_view], labels[:first_view])
        loss = self._loss(logits_clean, logits_adv, labels, first_view)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if awp_diff:
            self.awp.restore(awp_diff)  # type: ignore[union-attr]
        with torch.no_grad():
            count = torch.tensor(float(len(labels)), device=self.device)
            return {"loss": loss.detach() * count, "images": count,
                    "clean_correct": (logits_clean.argmax(1) == labels).sum().float(),
                    "adv_correct": (logits_adv.argmax(1) == labels).sum().float()}

    def _batch(self, images: Tensor | Sequence[Tensor], y: Tensor) -> tuple[Tensor, Tensor, int]:
        """The images and labels on the device, two views stacked, and how many belong to the first view."""
        if isinstance(images, Tensor):
            x, labels = images, y
        elif len(images) == 2:
            x, labels = torch.cat(tuple(images)), torch.cat((y, y))
        else:
            raise TrainingError("a batch is one tensor of images or a pair (view, autoaugment view)")
        return x.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True), len(y)

    def _attack(self, x: Tensor, labels: Tensor, epoch: int) -> Tensor:
        recipe, eps = self.recipe, self.recipe.eps_at(epoch)
        return ikl_pgd_attack(self.net, x, labels, self.class_prior.prior, eps=eps,
                              step_size=recipe.attack_step_size * eps, steps=recipe.attack_steps,
                              alpha=recipe.attack_alpha, beta=recipe.attack_beta, amp_dtype=self.amp_dtype)

    def _perturb_weights(self, x: Tensor, x_adv: Tensor, labels: Tensor, epoch: int) -> dict[str, Tensor]:
        """AWP from the recipe's epoch on; its objective is CE + IKL over the whole batch, as released."""
        if self.awp is None or not self.recipe.uses_awp(epoch):
            return {}
        whole_batch = partial(self._loss, labels=labels, first_view=len(labels))
        scale = self.scaler.get_scale()
        diff = self.awp.compute(x, x_adv, whole_batch, amp_dtype=self.amp_dtype, loss_scale=scale)
        self.awp.perturb(diff)
        return diff

    def _loss(self, logits_clean: Tensor, logits_adv: Tensor, labels: Tensor, first_view: int) -> Tensor:
        """``CE + IKL``; the IKL of a second view (from ``first_view`` on) is weighted by ``aug_weight``."""
        recipe = self.recipe

        def ikl(part: slice) -> Tensor:
            return ikl_loss(logits_clean[part], logits_adv[part], labels[part], self.class_prior.prior,
                            alpha=recipe.alpha, beta=recipe.beta, prior_power=recipe.prior_power)

        loss = F.cross_entropy(logits_clean, labels) + ikl(slice(0, first_view))
        two_views = first_view < len(labels)
        return loss + recipe.aug_weight * ikl(slice(first_view, None)) if two_views else loss

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict(), "class_prior": self.class_prior.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        self.class_prior.load_state_dict(state["class_prior"])
        if state.get("scaler"):  # None in a checkpoint of an older version
            self.scaler.load_state_dict(state["scaler"])
