"""The inner maximisation of IKL-AT: Linf PGD on the IKL attack loss."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ikl_zoo.losses import ikl_loss

_FLOAT16_LOSS_SCALE = 1024.0


def autocast(device_type: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision in ``dtype``, or nothing when it is None."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device_type, dtype=dtype)


def ikl_pgd_attack(
    model: nn.Module, x: Tensor, y: Tensor, class_prior: Tensor, *, eps: float, step_size: float, steps: int,
    alpha: float = 1.0, beta: float = 0.0, amp_dtype: torch.dtype | None = None,
) -> Tensor:
    """Adversarial examples that maximise ``ikl_loss(model(x), model(x_adv), y, class_prior)``, as the
    released code: eval mode, start at ``x + 0.001 * N(0, 1)``, ``steps`` signed steps projected onto the
    eps-ball and [0, 1]. The clean logits are computed once (eval mode: the same at every step)."""
    was_training = model.training
    model.eval()
    mixed = autocast(x.device.type, amp_dtype)
    try:
        x = x.detach()
        prior = class_prior.detach().to(device=x.device, dtype=torch.float32)
        with torch.no_grad(), mixed:
            logits_clean = model(x).float()
        x_adv = x + 0.001 * torch.randn_like(x)
        scale = _FLOAT16_LOSS_SCALE if amp_dtype == torch.float16 else 1.0
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                with mixed:
                    logits_adv = model(x_adv)
                loss = ikl_loss(logits_clean, logits_adv.float(), y, prior, alpha=alpha, beta=beta)
                # Only the gradient's sign is used: scaling keeps float16 gradients from underflowing to 0.
                (grad,) = torch.autograd.grad(loss * scale, [x_adv])
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
        return x_adv.clamp(0.0, 1.0).detach()
    finally:
        model.train(was_training)
