"""An exponential moving average of a network's whole state: weights and BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
        missing = set(self.state) ^ set(state)
        if missing:
            raise ValueError(f"EMA state does not match the network: {sorted(missing)[:3]}")
        for key, value in state.items():
            self.state[key].copy_(value)
