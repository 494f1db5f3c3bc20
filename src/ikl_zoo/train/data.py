"""IKL-AT's training augmentation: random crop (padding 4) and flip, AutoAugment optional."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision import transforms


class TwoViews:
    """Returns ``(basic(image), augmented(image))``: the second view is the AutoAugment one."""

    def __init__(self, basic: Callable[[Any], Any], augmented: Callable[[Any], Any]) -> None:
        self.basic, self.augmented = basic, augmented

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.basic(image), self.augmented(image)


def training_transform(*, autoaugment: bool, fill: int) -> Callable[[Any], Any]:
    """Crop (4-pixel zero padding), flip, ``ToTensor``; ``autoaugment``: two views, AutoAugment fills grey."""
    crop_flip = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    basic = transforms.Compose([*crop_flip, transforms.ToTensor()])
    if not autoaugment:
        return basic
    policy = transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10, fill=[fill] * 3)
    return TwoViews(basic, transforms.Compose([*crop_flip, policy, transforms.ToTensor()]))


def augmentation_description(*, autoaugment: bool, fill: int) -> str:
    """The training transform in words, for the zoo folder's config and so its model card."""
    basic = "random crop 32 (padding 4) + horizontal flip"
    augmented = f"two views: {basic}; the same + AutoAugment (CIFAR-10 policy, fill {fill})"
    return augmented if autoaugment else basic

