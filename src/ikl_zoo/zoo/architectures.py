"""Network definitions whose state_dict keys match RobustBench's checkpoints one for one: attribute names
are dictated by the published checkpoints (TRADES' ``WideResNet``, DeepMind's ``DMWideResNet`` and the CIFAR
ResNet that ships with AutoAttack); the code around them is ours."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR_NORMALISATION = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}
"""Each training set's channel (mean, std), which the DeepMind WideResNet normalises with inside."""


def _blocks(make_block: Callable[..., nn.Module], num_blocks: int, planes: tuple[int, int], stride: int
            ) -> nn.Sequential:
    """``num_blocks`` blocks, the first changing width and stride."""
    (first, planes), strides = planes, [stride] + [1] * (num_blocks - 1)
    return nn.Sequential(*(make_block(first if i == 0 else planes, planes, s) for i, s in enumerate(strides)))


def _blocks_per_group(depth: int) -> int:
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1 (e.g. 10, 16, 28, 34), got {depth}")
    return (depth - 4) // 6


# WRN-34-10 as TRADES and RobustBench define it: ReLU, pre-activation, inputs in [0, 1].
class TradesBlock(nn.Module):
    """Pre-activation basic block; a 1x1 ``convShortcut`` where the width changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.convShortcut = (None if in_planes == out_planes
                             else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x), inplace=True)
        out = self.conv2(F.relu(self.bn2(self.conv1(activated)), inplace=True))
        # A width change routes the shortcut through the activated input, as TRADES does.
        return (x if self.convShortcut is None else self.convShortcut(activated)) + out


class BlockGroup(nn.Module):
    """``_blocks`` under the attribute the checkpoints name (``layer``: TRADES, ``block``: DeepMind)."""

    def __init__(self, attribute: str, make_block: Callable[..., nn.Module], num_blocks: int,
                 planes: tuple[int, int], stride: int) -> None:
        super().__init__()
        self.attribute = attribute
        setattr(self, attribute, _blocks(make_block, num_blocks, planes, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.attribute)(x)


class WideResNet(nn.Module):
    """TRADES WideResNet (``sub_block1=False``): the WRN-34-10 of IKL-AT, TRADES and most AT papers."""

    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10) -> None:
        super().__init__()
        num_blocks = _blocks_per_group(depth)
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        for i in range(3):
            group = BlockGroup("layer", TradesBlock, num_blocks, channels[i : i + 2], min(i + 1, 2))
            setattr(self, f"block{i + 1}", group)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.fc = nn.Linear(channels[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")  # as TRADES
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))), inplace=True)
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


# WRN-28-10 as DeepMind and RobustBench define it: SiLU, explicit "SAME" padding, normalisation inside.
class DMBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, activation: type[nn.Module],
                 bn_momentum: float) -> None:
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes, momentum=bn_momentum)
        self.relu_0 = activation()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes, momentum=bn_momentum)
        self.relu_1 = activation()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = (None if in_planes == out_planes
                         else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False))
        # TensorFlow's "SAME" padding: symmetric at stride 1, bottom/right only at stride 2.
        self._same_padding = (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu_0(self.batchnorm_0(x))
        out = self.conv_0(F.pad(activated, self._same_padding))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return (x if self.shortcut is None else self.shortcut(activated)) + out


class DMWideResNet(nn.Module):
    """DeepMind's WideResNet: the WRN-28-10 (SiLU) that IKL-AT trains with generated data."""

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10, *,
                 activation: type[nn.Module] = nn.SiLU, mean: tuple[float, ...] = CIFAR10_MEAN,
                 std: tuple[float, ...] = CIFAR10_STD, bn_momentum: float = 0.01) -> None:
        super().__init__()
        num_blocks = _blocks_per_group(depth)
        channels = [16, 16 * width, 32 * width, 64 * width]
        # Not persistent: RobustBench's checkpoints do not carry the normalisation constants.
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)
        self.init_conv = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        make = functools.partial(DMBlock, activation=activation, bn_momentum=bn_momentum)
        groups = [BlockGroup("block", make, num_blocks, channels[i : i + 2], min(i + 1, 2)) for i in range(3)]
        self.layer = nn.Sequential(*groups)
        self.batchnorm = nn.BatchNorm2d(channels[3], momentum=bn_momentum)
        self.relu = activation()
        self.logits = nn.Linear(channels[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.batchnorm(self.layer(self.init_conv((x - self.mean) / self.std))))
        return self.logits(F.adaptive_avg_pool2d(out, 1).flatten(1))


# The CIFAR ResNet-18 whose plainly trained checkpoint ships with pyautoattack (demo model).
class ResNetBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs (3x3 stem, no max-pool), inputs in [0, 1], no normalisation."""

    def __init__(self, blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = (64, 64, 128, 256, 512)
        for stage, num_blocks in zip(range(1, 5), blocks_per_stage, strict=True):
            planes = widths[stage - 1 : stage + 1]
            setattr(self, f"layer{stage}", _blocks(ResNetBlock, num_blocks, planes, min(stage, 2)))
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
