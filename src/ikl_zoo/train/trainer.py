"""The IKL-AT optimisation step and the state it needs (optimiser, class prior, AWP, EMA, loss scaler)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ikl_zoo.errors import IklZooError
from ikl_zoo.losses import ClassPrior, ikl_loss
from ikl_zoo.train.attack import autocast, ikl_pgd_attack
from ikl_zoo.train.awp import AdversarialWeightPerturbation
from ikl_zoo.train.ema import ModelEMA
from ikl_zoo.train.recipes import Recipe

AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingError(IklZooError):
    """A training run that cannot start or continue as asked."""


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
    step on ``CE(z_clean, y) + IKL(z_clean, z_adv)`` and folds the clean logits into the class prior.
    """

    def __init__(
        self, net: nn.Module, recipe: Recipe, *, device: torch.device | str, amp: str = "off",
        distributed: bool = False,
    ) -> None:
        if amp not in AMP_DTYPES:
            raise TrainingError(f"unknown --amp {amp!r}", fix=f"choose one of {', '.join(AMP_DTYPES)}")
        self.device, self.recipe, self.amp_dtype = torch.device(device), recipe, AMP_DTYPES[amp]
        self.net = net.to(self.device)
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
        self.class_prior = ClassPrior(recipe.num_classes, temperature=recipe.temperature, device=self.device)
        self.awp = (
            AdversarialWeightPerturbation(self.net, gamma=recipe.awp_gamma, lr=recipe.lr)
            if recipe.awp_gamma > 0 else None
        )
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
        prior = self.class_prior.prior.to(torch.float32)
        x_adv = self._attack(x, labels, prior, epoch)
        self.net.train()
        awp_diff = self._perturb_weights(x, x_adv, labels, prior, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, self.amp_dtype):
            logits_adv, logits_clean = self.forward_pair(x_adv, x)
        logits_adv, logits_clean = logits_adv.float(), logits_clean.float()
        self.class_prior.update(logits_clean[:first_view], labels[:first_view])
        loss = self._loss(logits_clean, logits_adv, labels, prior, first_view)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if awp_diff:
            self.awp.restore(awp_diff)  # type: ignore[union-attr]
        with torch.no_grad():
            count = torch.tensor(float(len(labels)), device=self.device)
            return {
                "loss": loss.detach() * count,
                "clean_correct": (logits_clean.argmax(1) == labels).sum().float(),
                "adv_correct": (logits_adv.argmax(1) == labels).sum().float(),
                "images": count,
            }

    def _batch(self, images: Tensor | Sequence[Tensor], y: Tensor) -> tuple[Tensor, Tensor, int]:
        """The images and labels on the device, two views stacked, and how many belong to the first view."""
        if isinstance(images, Tensor):
            x, labels = images, y
        elif len(images) == 2:
            x, labels = torch.cat(tuple(images)), torch.cat((y, y))
        else:
            raise TrainingError("a batch is one tensor of images or a pair (view, autoaugment view)")
        return x.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True), len(y)

    def _attack(self, x: Tensor, labels: Tensor, prior: Tensor, epoch: int) -> Tensor:
        recipe, eps = self.recipe, self.recipe.eps_at(epoch)
        return ikl_pgd_attack(
            self.net, x, labels, prior, eps=eps, step_size=recipe.attack_step_size * eps,
            steps=recipe.attack_steps, alpha=recipe.attack_alpha, beta=recipe.attack_beta,
            amp_dtype=self.amp_dtype,
        )

    def _ikl(self, logits_clean: Tensor, logits_adv: Tensor, y: Tensor, prior: Tensor) -> Tensor:
        r = self.recipe
        return ikl_loss(logits_clean, logits_adv, y, prior, alpha=r.alpha, beta=r.beta,
                        prior_power=r.prior_power)

    def _perturb_weights(
        self, x: Tensor, x_adv: Tensor, labels: Tensor, prior: Tensor, epoch: int
    ) -> dict[str, Tensor]:
        """AWP from the recipe's epoch on; its objective is CE + IKL over the whole batch, as released."""
        if self.awp is None or not self.recipe.uses_awp(epoch):
            return {}

        def awp_loss(logits_clean: Tensor, logits_adv: Tensor) -> Tensor:
            return F.cross_entropy(logits_clean, labels) + self._ikl(logits_clean, logits_adv, labels, prior)

        scale = self.scaler.get_scale()
        diff = self.awp.compute(x, x_adv, awp_loss, amp_dtype=self.amp_dtype, loss_scale=scale)
        self.awp.perturb(diff)
        return diff

    def _loss(
        self, logits_clean: Tensor, logits_adv: Tensor, labels: Tensor, prior: Tensor, first_view: int
    ) -> Tensor:
        """``CE + IKL``; with two views the AutoAugment view's IKL is weighted by ``aug_weight``."""
        def ikl(part: slice) -> Tensor:
            return self._ikl(logits_clean[part], logits_adv[part], labels[part], prior)

        loss = F.cross_entropy(logits_clean, labels) + ikl(slice(0, first_view))
        two_views = first_view < len(labels)
        return loss + self.recipe.aug_weight * ikl(slice(first_view, None)) if two_views else loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict(), "class_prior": self.class_prior.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        self.class_prior.load_state_dict(state["class_prior"])
        if state.get("scaler"):  # None in a checkpoint of an older version
            self.scaler.load_state_dict(state["scaler"])
