"""IKL-AT recipes: every training knob in one frozen dataclass, the published settings as named presets.

The procedure follows the authors' released training code (github.com/jiequancui/DKL,
``DKLv2/Adv-training-dkl/train_dkl_cifar10.py`` and ``train_dkl_cifar100.py``): TRADES-style loss
``CE(z_clean, y) + IKL(z_clean, z_adv)``; a Linf PGD on the IKL attack loss whose eps grows linearly with the
epoch (``eps * epoch / epochs``) in 5 sign steps of half the current eps (what those scripts' ``--train_budget
high`` branch runs in every epoch); AWP from epoch 10; SGD with per-epoch cosine decay; and as the final model
an exponential moving average (decay 0.9) of the end-of-epoch weights, BatchNorm statistics included, which is
what their ``swa.py workdir 0.9 1 200`` step computes."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torchvision import transforms

from ikl_zoo.errors import IklZooError
from ikl_zoo.threat import DATASET_TITLES, DATASETS, NUM_CLASSES
from ikl_zoo.zoo.architectures import CIFAR_NORMALISATION
from ikl_zoo.zoo.registry import list_models

_RELEASED_CODE = "github.com/jiequancui/DKL, DKLv2/Adv-training-dkl/train_dkl_{}.py"
_PAPER = "Cui et al., Decoupled Kullback-Leibler Divergence Loss, NeurIPS 2024 (arXiv 2305.13948)"
# The checks of the knobs: (knobs, passes, what each of them must be).
_CHECKS: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (("epochs", "batch_size", "ema_start_epoch"), lambda v: v >= 1, "must be at least 1"),
    (("lr_warmup_epochs", "attack_steps", "awp_warmup_epochs", "eps_ramp_epochs"),
     lambda v: v is None or v >= 0, "must not be negative"),
    (("eps", "attack_step_size", "weight_decay", "awp_gamma", "aug_weight", "alpha", "beta", "attack_alpha",
      "attack_beta", "prior_power"), lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0"),
    (("lr", "temperature"), lambda v: math.isfinite(v) and v > 0, "must be a positive finite number"),
    (("momentum", "ema_decay"), lambda v: 0 <= v < 1, "must lie in [0, 1)"),
    (("seed",), lambda v: 0 <= v < 2**32, "must lie in [0, 2**32 - 1]"),
    (("autoaugment_fill",), lambda v: v in range(256), "must be a grey level in [0, 255]"),
    (("dataset",), lambda v: v in DATASETS, f"must be one of {', '.join(DATASETS)}"),
    (("ema_every",), lambda v: v in ("epoch", "step"), "must be 'epoch' or 'step'"),
)


class RecipeError(IklZooError):
    """An unknown preset, an unknown knob or a value outside its range."""


class TrainingError(IklZooError):
    """A training run that cannot start or continue as asked."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what IKL-AT training computes (run settings such as the device are apart).

    ``name``: the preset it started from, ``source``: where its values are from. ``arch``: ``wrn-D-W`` (TRADES
    WideResNet), ``wrn-D-W-silu`` (DeepMind WideResNet) or a registered model id. ``batch_size`` is global;
    ``eps`` (inputs in [0, 1]) grows linearly over ``eps_ramp_epochs`` (None: all; 0: no ramp);
    ``attack_step_size`` is a fraction of the current eps. ``alpha``/``beta`` weigh IKL's cross-entropy and
    wMSE in the loss, ``attack_alpha``/``attack_beta`` in the attack; ``temperature`` and ``prior_power`` (the
    released ``gamma``) shape the class prior. AWP (``awp_gamma``, 0: off) starts at ``awp_warmup_epochs``;
    the average folds in every epoch's or step's weights from ``ema_start_epoch``. ``autoaugment`` adds a
    second view whose IKL is weighted ``aug_weight``; AutoAugment fills the area its rotations, shears and
    translations uncover with grey ``autoaugment_fill``, by default the authors' 128 (their ``CIFAR10Policy``,
    ``DKLv2/Adv-training-dkl/autoaug.py``; torchvision's default is 0)."""

    name: str
    source: str
    dataset: str = "cifar10"
    arch: str = "wrn-34-10"
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.2
    lr_warmup_epochs: int = 0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eps: float = 8 / 255
    eps_ramp_epochs: int | None = None
    attack_steps: int = 5
    attack_step_size: float = 0.5
    alpha: float = 3.0
    beta: float = 20.0
    temperature: float = 4.0
    prior_power: float = 1.0
    attack_alpha: float = 1.0
    attack_beta: float = 0.0
    awp_gamma: float = 0.005
    awp_warmup_epochs: int = 10
    ema_decay: float = 0.9
    ema_every: str = "epoch"
    ema_start_epoch: int = 1
    autoaugment: bool = False
    aug_weight: float = 0.5
    autoaugment_fill: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"{knob} {problem}" for knobs, passes, problem in _CHECKS for knob in knobs
                    if not passes(getattr(self, knob))]
        if math.isfinite(self.eps) and self.eps > 1:
            # Inputs lie in [0, 1]: a radius above 1 is almost always pixel levels (8 meaning 8/255).
            hint = f"did you mean {self.eps:g}/255?" if float(self.eps).is_integer() else "e.g. 8/255"
            problems.append(f"eps {self.eps:g} exceeds the [0, 1] image range ({hint})")
        if problems:
            raise RecipeError(f"invalid recipe {self.name!r}: {'; '.join(problems)}")

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with some knobs changed; an unknown knob is an error that lists the known ones."""
        known = sorted(f.name for f in dataclasses.fields(self))
        if unknown := sorted(set(overrides) - set(known)):
            raise RecipeError(f"unknown recipe knob(s) {', '.join(unknown)}",
                              fix=f"known: {', '.join(known)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def eps_at(self, epoch: int) -> float:
        """The attack radius during ``epoch`` (counted from 1)."""
        ramp = self.epochs if self.eps_ramp_epochs is None else self.eps_ramp_epochs
        return self.eps if ramp == 0 else self.eps * min(1.0, epoch / ramp)

    def lr_at(self, epoch: int) -> float:
        """The learning rate during ``epoch`` (counted from 1): linear warm-up, then the released cosine."""
        if epoch < self.lr_warmup_epochs:
            return self.lr * epoch / self.lr_warmup_epochs
        progress = (epoch - self.lr_warmup_epochs) / (self.epochs - self.lr_warmup_epochs + 1)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def uses_awp(self, epoch: int) -> bool:
        return self.awp_gamma > 0 and epoch >= self.awp_warmup_epochs

    def training_transform(self) -> Callable[[Any], Any]:
        """Crop (zero padding 4), flip, ``ToTensor``; ``autoaugment``: two views, AutoAugment fills grey."""
        crop_flip = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        basic = transforms.Compose([*crop_flip, transforms.ToTensor()])
        if not self.autoaugment:
            return basic
        grey = [self.autoaugment_fill] * 3
        policy = transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10, fill=grey)
        return TwoViews(basic, transforms.Compose([*crop_flip, policy, transforms.ToTensor()]))

    @property
    def augmentation(self) -> str:
        """The training transform in words, for the zoo folder's config and so its model card."""
        basic = "random crop 32 (padding 4) + horizontal flip"
        autoaugment = f"AutoAugment (CIFAR-10 policy, fill {self.autoaugment_fill})"
        return f"two views: {basic}; the same + {autoaugment}" if self.autoaugment else basic


@dataclass(frozen=True)
class TwoViews:
    """Returns ``(basic(image), augmented(image))``: the second view is the AutoAugment one."""

    basic: Callable[[Any], Any]
    augmented: Callable[[Any], Any]

    def __call__(self, image: Any) -> tuple[Any, Any]:
        return self.basic(image), self.augmented(image)


def _preset(dataset: str, attack_beta: float, **more: Any) -> Recipe:
    source = (f"{_PAPER}: IKL-AT on {DATASET_TITLES[dataset]}, alpha 3, beta 20, T 4, attack loss alpha 1 "
              f"beta {attack_beta:g}; schedule, attack, AWP and weight averaging as in "
              f"{_RELEASED_CODE.format(dataset)} (whose shell scripts pass alpha 4: use --alpha 4 to match "
              "them)")
    name = more.pop("name", dataset)
    return Recipe(name=name, source=source, dataset=dataset, attack_beta=attack_beta, **more)


# cifar100-autoaug: the authors' train_dkl_cifar100_autoaug.sh (Cui2023Decoupled_WRN-34-10_autoaug).
RECIPES: dict[str, Recipe] = {"cifar10": _preset("cifar10", 0.0), "cifar100": _preset("cifar100", 1.0),
                              "cifar100-autoaug": _preset("cifar100", 1.0, name="cifar100-autoaug",
                                                          autoaugment=True, aug_weight=0.5)}


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """A preset with some knobs overridden, e.g. ``get_recipe("cifar10", epochs=100, awp_gamma=0)``."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}", fix=f"presets: {', '.join(RECIPES)}")
    return RECIPES[name].replace(**overrides)


_WRN_SPEC = re.compile(r"^wrn-(\d+)-(\d+)(-silu)?$", re.IGNORECASE)


def architecture_config(arch: str, *, dataset: str) -> dict[str, Any]:
    """The zoo ``architecture`` object (what ``model_from_config`` builds) for an ``--arch`` value."""
    if match := _WRN_SPEC.match(arch):
        depth, width = int(match.group(1)), int(match.group(2))
        if (depth - 4) % 6 != 0 or depth < 10 or width < 1:
            raise RecipeError(f"--arch {arch}: a WideResNet needs depth 6n+4 >= 10 and width >= 1",
                              fix="e.g. wrn-34-10")
        if match.group(3):
            config = {"architecture_class": "DMWideResNet", "depth": depth, "width": width,
                      "activation": "SiLU"}
        else:
            config = {"architecture_class": "WideResNet", "depth": depth, "widen_factor": width}
    else:
        entries = [entry for entry in list_models() if entry.model_id == arch]
        if not entries:
            raise RecipeError(f"unknown --arch {arch!r}", fix="use wrn-DEPTH-WIDTH (TRADES WideResNet), "
                              "wrn-DEPTH-WIDTH-silu (DeepMind WideResNet) or a registered model id")
        config = next((e for e in entries if e.dataset == dataset), entries[0]).config
    config = {**config, "num_classes": NUM_CLASSES[dataset]}
    # The DeepMind WideResNet normalises inside the network with the training set's statistics.
    if config["architecture_class"] == "DMWideResNet":
        mean, std = CIFAR_NORMALISATION[dataset]
        config.update(mean=list(mean), std=list(std))
    return config
