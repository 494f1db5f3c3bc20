"""KL, DKL and IKL losses (Cui et al., "Decoupled Kullback-Leibler Divergence Loss", NeurIPS 2024).

Notation follows the paper: ``z_m`` are the logits of the "teacher" side (the clean input in adversarial
training, the teacher network in distillation), ``z_n`` those of the "student" side (the adversarial input,
the student network); ``s = softmax(z)``; ``D(z)[j, k] = z_j - z_k``. Every loss returns the batch mean.

The weighted MSE between logit differences, ``1/4 sum_jk w_j w_k (D(z_m) - D(z_n))[j, k]^2``, is computed in
O(C) per sample: since ``D(z_m) - D(z_n) = D(z_m - z_n)`` and, with ``W = sum_j w_j`` and ``d = z_m - z_n``,
``sum_jk w_j w_k (d_j - d_k)^2 = 2 W sum_j w_j (d_j - mu)^2`` where ``mu = sum_j w_j d_j / W``. Centring on
``mu`` first (rather than expanding ``sum w d^2 - (sum w d)^2``) avoids cancellation in float32."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ikl_zoo.errors import IklZooError

__all__ = ["KD_PRESETS", "ClassPrior", "KDConfig", "dkl_loss", "ikl_kd_loss", "ikl_loss", "kd_preset",
           "kl_loss", "weighted_logit_mse"]


def _check_logits(z_m: Tensor, z_n: Tensor) -> None:
    if z_m.ndim != 2 or z_m.shape != z_n.shape:
        raise ValueError("logits must both be (batch, classes) with the same shape, got "
                         f"{tuple(z_m.shape)} and {tuple(z_n.shape)}")


def _class_weights(class_prior: Tensor, y: Tensor, like: Tensor) -> Tensor:
    num_classes = like.shape[1]
    if class_prior.shape != (num_classes, num_classes):
        raise ValueError(f"class_prior must be ({num_classes}, {num_classes}) for {num_classes} classes, "
                         f"got {tuple(class_prior.shape)}")
    if y.shape != like.shape[:1]:
        raise ValueError(f"labels must have shape ({like.shape[0]},), got {tuple(y.shape)}")
    rows = class_prior.detach()[y.to(class_prior.device)]  # then cast: the batch's rows, not the matrix
    return rows.to(device=like.device, dtype=like.dtype)


def kl_loss(z_m: Tensor, z_n: Tensor) -> Tensor:
    """``KL(s_m || s_n)``, the loss that DKL decouples (TRADES' robust term with ``z_m`` clean)."""
    _check_logits(z_m, z_n)
    log_s_m = F.log_softmax(z_m, dim=1)
    return (log_s_m.exp() * (log_s_m - F.log_softmax(z_n, dim=1))).sum(1).mean()


def weighted_logit_mse(z_m: Tensor, z_n: Tensor, weights: Tensor, *, pairwise: bool = False) -> Tensor:
    """Per-sample wMSE (module docstring), shape (batch,); ``pairwise=True`` builds the paper's C x C
    matrices, to check and benchmark the O(C) form every loss here uses."""
    _check_logits(z_m, z_n)
    if weights.shape != z_m.shape:
        raise ValueError(f"weights must have shape {tuple(z_m.shape)}, got {tuple(weights.shape)}")
    if pairwise:
        delta_m = z_m.unsqueeze(2) - z_m.unsqueeze(1)
        delta_n = z_n.unsqueeze(2) - z_n.unsqueeze(1)
        outer = weights.unsqueeze(2) * weights.unsqueeze(1)
        return 0.25 * (outer * (delta_m - delta_n).pow(2)).sum(dim=(1, 2))
    d, total = z_m - z_n, weights.sum(1, keepdim=True)
    mu = (weights * d).sum(1, keepdim=True) / total.clamp_min(torch.finfo(total.dtype).tiny)
    return 0.5 * total.squeeze(1) * (weights * (d - mu).pow(2)).sum(1)


def dkl_loss(z_m: Tensor, z_n: Tensor, *, alpha: float = 1.0, beta: float = 1.0) -> Tensor:
    """DKL, the paper's Theorem 1: ``beta * wMSE(z_m, S(z_n); S(s_m)) + alpha * (-S(s_m) . log s_n)``.

    The wMSE term trains only ``z_m`` and the cross-entropy term only ``z_n``; with ``alpha = beta = 1`` the
    gradients with respect to both equal those of ``kl_loss`` (the value differs by the entropy of ``s_m``).
    """
    _check_logits(z_m, z_n)
    s_m = F.softmax(z_m, dim=1).detach()
    wmse = weighted_logit_mse(z_m, z_n.detach(), s_m).mean()
    cross_entropy = -(s_m * F.log_softmax(z_n, dim=1)).sum(1).mean()
    return beta * wmse + alpha * cross_entropy


def ikl_loss(z_m: Tensor, z_n: Tensor, y: Tensor, class_prior: Tensor, *, alpha: float = 1.0,
             beta: float = 1.0, prior_power: float = 1.0) -> Tensor:
    """IKL for adversarial training, as the paper's released code trains IKL-AT.

    ``beta * 1/4 sum_jk w[j,k] (D(z_m) - D(z_n))^2 + alpha * (-S(s_m) . log s_n)`` with no stop-gradient on
    either ``D`` (the wMSE term trains the clean and the adversarial branch) and class-wise global weights
    ``w = p_y (outer) p_y`` from the class prior (row ``c`` of ``class_prior`` is ``p_c``; see
    ``ClassPrior``).

    ``prior_power`` raises the prior to a power first (the released code's ``gamma``); the wMSE is then
    normalised by ``sum_i (sum_j w_ij)^2`` over the batch, as released, which is the plain batch mean whenever
    the rows sum to one (``prior_power = 1``)."""
    _check_logits(z_m, z_n)
    weights = _class_weights(class_prior, y, z_m).pow(prior_power)  # x ** 1.0 is x exactly
    wmse = weighted_logit_mse(z_m, z_n, weights).sum() / weights.sum(1).pow(2).sum()
    cross_entropy = -(F.softmax(z_m, dim=1).detach() * F.log_softmax(z_n, dim=1)).sum(1).mean()
    return beta * wmse + alpha * cross_entropy


@dataclass(frozen=True)
class KDConfig:
    """The hyper-parameters of IKL for knowledge distillation, as ``ikl_kd_loss`` uses them.

    Defaults as the authors' ``IKL_KD`` (``DKLv1/KD-dkl/mdistiller/engine/cfg.py``): ``weight_temperature``
    (``T2``) 100. ``uses_class_prior`` (``GI``): a class prior built at ``weight_temperature`` is required."""

    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 1.0
    weight_temperature: float = 100.0
    ce_weight: float = 1.0
    warmup_epochs: float = 0.0
    uses_class_prior: bool = False
    source: str = ""


_KD_CONFIGS = "github.com/jiequancui/DKL, DKLv1/KD-dkl/configs/"
# CIFAR-100 (configs/cifar100/ikl_kd/STEM.yaml): T 4, 20 warm-up epochs, no GI key (T2 stays 100).
_CIFAR100_KD = {  # teacher-student: (STEM, alpha, beta)
    "res110-res32": ("res110_res32", 1, 12), "res32x4-res8x4": ("res32x4_res8x4", 1, 8),
    "res32x4-shufflev1": ("res32x4_shuv1", 1, 8), "res32x4-shufflev2": ("res32x4_shuv2", 3, 12),
    "res50-mobilenetv2": ("res50_mv2", 1, 12), "res56-res20": ("res56_res20", 1, 4),
    "vgg13-mobilenetv2": ("vgg13_mv2", 4, 12), "vgg13-vgg8": ("vgg13_vgg8", 1, 12),
    "wrn40_2-shufflev1": ("wrn40_2_shuv1", 1, 4), "wrn40_2-wrn16_2": ("wrn40_2_wrn_16_2", 3, 12),
    "wrn40_2-wrn40_1": ("wrn40_2_wrn_40_1", 1, 8),
}
# ImageNet: GI on, T2 1, T 1; cfg.py's 1 warm-up epoch is none, as their epochs count from 1.
KD_PRESETS: dict[str, KDConfig] = {
    **{f"cifar100-{pair}": KDConfig(float(alpha), float(beta), temperature=4.0, warmup_epochs=20.0,
                                    source=f"{_KD_CONFIGS}cifar100/ikl_kd/{stem}.yaml")
       for pair, (stem, alpha, beta) in _CIFAR100_KD.items()},
    "imagenet-res34-res18": KDConfig(1.0, 0.5, weight_temperature=1.0, uses_class_prior=True,
                                     source=f"{_KD_CONFIGS}imagenet/r34_r18/ikl_kd.yaml"),
    "imagenet-res50-mobilenetv1": KDConfig(4.0, 1.0, weight_temperature=1.0, uses_class_prior=True,
                                           source=f"{_KD_CONFIGS}imagenet/r50_mv1/ikl_kd.yaml"),
}


def kd_preset(name: str) -> KDConfig:
    """The authors' released configuration ``name`` (see ``KD_PRESETS``)."""
    if name not in KD_PRESETS:
        raise IklZooError(f"unknown KD preset {name!r}", fix=f"known: {', '.join(KD_PRESETS)}")
    return KD_PRESETS[name]


def ikl_kd_loss(z_m: Tensor, z_n: Tensor, y: Tensor, *, config: KDConfig = KDConfig(),
                class_prior: Tensor | None = None, epoch: float | None = None) -> Tensor:
    """IKL for knowledge distillation: teacher logits ``z_m``, student logits ``z_n``, labels ``y``.

    ``ce_weight * CE(z_n, y) + min(epoch / warmup_epochs, 1) * (beta * wMSE + alpha * CE_T)`` where
    ``CE_T = -S(softmax(z_m / T)) . log softmax(z_n / T)``. The wMSE weights come from the class prior (global
    information on: pass ``class_prior``, e.g. a ``ClassPrior`` over teacher logits at ``weight_temperature``;
    required when ``config.uses_class_prior``) or, without it, from ``softmax(z_m / weight_temperature)`` per
    sample. With a warm-up, ``epoch`` (counted from 1, fractions allowed) is required."""
    _check_logits(z_m, z_n)
    if config.uses_class_prior and class_prior is None:
        raise ValueError("ikl_kd_loss: this configuration uses the class prior: pass class_prior= (a "
                         "ClassPrior built at temperature=config.weight_temperature)")
    weights = (_class_weights(class_prior, y, z_m) if class_prior is not None
               else F.softmax(z_m.detach() / config.weight_temperature, dim=1))
    warmup = 1.0  # the IKL terms grow linearly over warmup_epochs
    if config.warmup_epochs > 0:
        if epoch is None:
            raise ValueError("ikl_kd_loss: pass epoch= when warmup_epochs > 0")
        warmup = min(epoch / config.warmup_epochs, 1.0)
    wmse = weighted_logit_mse(z_m, z_n, weights).mean()
    soft_targets = F.softmax(z_m.detach() / config.temperature, dim=1)
    soft_cross_entropy = -(soft_targets * F.log_softmax(z_n / config.temperature, dim=1)).sum(1).mean()
    ikl = config.beta * wmse + config.alpha * soft_cross_entropy
    return config.ce_weight * F.cross_entropy(z_n, y) + warmup * ikl


class ClassPrior:
    """IKL's class-wise global information: row ``c`` is the mean of ``softmax(S(z)/T)`` over class ``c``.

    Feed it the clean ("teacher") logits of every training batch with ``update``; at the end of the epoch
    call ``step`` (after ``all_reduce`` under DDP) to turn the sums into the next epoch's normalised rows.
    Before the first ``step`` every row is uniform; a class with no sample in an epoch keeps its previous row.
    Sums are kept in float64 so that the order of accumulation hardly matters."""

    def __init__(
        self, num_classes: int, *, temperature: float = 4.0, device: torch.device | str | None = None
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"ClassPrior needs at least 2 classes, got {num_classes}")
        if temperature <= 0:
            raise ValueError(f"ClassPrior temperature must be positive, got {temperature}")
        self.num_classes, self.temperature = num_classes, float(temperature)
        shape = (num_classes, num_classes)
        self.prior = torch.full(shape, 1.0 / num_classes, dtype=torch.float64, device=device)
        self._sums = torch.zeros_like(self.prior)

    @torch.no_grad()
    def update(self, logits: Tensor, y: Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes or y.shape != logits.shape[:1]:
            raise ValueError(f"ClassPrior.update expects ({self.num_classes}-class logits, labels), got "
                             f"{tuple(logits.shape)} and {tuple(y.shape)}")
        probs = F.softmax(logits.detach().float() / self.temperature, dim=1).to(torch.float64)
        self._sums.index_add_(0, y.to(self._sums.device), probs.to(self._sums.device))

    def all_reduce(self) -> None:
        """Sum the accumulated rows over all processes (no-op outside ``torch.distributed``)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self._sums)

    def step(self) -> Tensor:
        totals = self._sums.sum(1, keepdim=True)
        seen = totals.squeeze(1) > 0
        self.prior[seen] = self._sums[seen] / totals[seen]
        self._sums.zero_()
        return self.prior

    def weights(self, y: Tensor) -> Tensor:
        return self.prior[y.to(self.prior.device)]

    def state_dict(self) -> dict[str, object]:
        return {"temperature": self.temperature, "prior": self.prior.clone(), "sums": self._sums.clone()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        prior = torch.as_tensor(state["prior"], dtype=torch.float64)
        if prior.shape != self.prior.shape:
            raise ValueError(f"class prior {tuple(prior.shape)} does not fit {self.num_classes} classes")
        self.temperature = float(state["temperature"])  # type: ignore[arg-type]
        self.prior.copy_(prior)
        self._sums.copy_(torch.as_tensor(state["sums"], dtype=torch.float64))
