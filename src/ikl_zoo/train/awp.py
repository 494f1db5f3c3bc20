"""Adversarial weight perturbation (Wu et al., NeurIPS 2020) as IKL-AT's released code applies it."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ikl_zoo.train.attack import autocast

_TINY = 1e-20


class AdversarialWeightPerturbation:
    """One ascent step on a proxy copy of the network gives a per-layer direction scaled to ``gamma``.

    ``compute`` loads the network into the proxy, takes one SGD step (learning rate ``lr``, no momentum) on
    minus the training loss, and returns for every weight matrix/kernel the difference rescaled to the norm
    of that weight; ``perturb`` adds ``gamma`` times it, ``restore`` removes it after the optimiser step.
    The proxy runs in train mode so that only its own BatchNorm statistics move. Under torchrun the proxy
    gradients are averaged over processes so that every replica gets the same perturbation.
    """

    def __init__(self, model: nn.Module, *, gamma: float, lr: float) -> None:
        self.model, self.gamma = model, gamma
        self.proxy = copy.deepcopy(model)
        self.proxy_optimizer = torch.optim.SGD(self.proxy.parameters(), lr=lr)

    def compute(
        self, x_clean: Tensor, x_adv: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor], *,
        amp_dtype: torch.dtype | None = None, loss_scale: float = 1.0,
    ) -> dict[str, Tensor]:
        """The perturbation for this batch under ``loss_fn(logits_clean, logits_adv)``; ``loss_scale`` keeps
        float16 gradients from underflowing (a non-finite proxy gradient then gives no perturbation)."""
        self.proxy.load_state_dict(self.model.state_dict())
        self.proxy.train()
        with autocast(x_clean.device.type, amp_dtype):
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
            return {name: self.model.get_parameter(name).norm() / (delta.norm() + _TINY) * delta
                    for name, delta in deltas.items()}

    @torch.no_grad()
    def perturb(self, diff: dict[str, Tensor]) -> None:
        self._add(diff, self.gamma)

    @torch.no_grad()
    def restore(self, diff: dict[str, Tensor]) -> None:
        self._add(diff, -self.gamma)

    def _add(self, diff: dict[str, Tensor], coefficient: float) -> None:
        for name, weight in self.model.named_parameters():
            if name in diff:
                weight.add_(diff[name], alpha=coefficient)
