"""Sharding over processes with ``torch.distributed``: chunks are dealt to ranks, rank 0 merges."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# torch.distributed.nn binds the world group as its functions' default argument when first imported, and
# torch._dynamo (which torchvision imports) imports it. Imported inside a group, it keeps the group alive past
# destroy_process_group, and gloo's threads, still running as the interpreter exits, now and then abort it.
import torch.distributed.nn  # noqa: F401  (so it is imported before any group exists)

PROCESS_GROUP_TIMEOUT = timedelta(hours=24)
"""Ranks wait for each other only at the end; a slow shard of a long run must not time the others out."""


@dataclass(frozen=True)
class Shard:
    """This process's place among the ranks; collectives are no-ops for a single process."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        holder = [obj if self.is_main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.active:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (downloads, caches), the others after it."""
        if not self.is_main:
            self.barrier()
        try:
            yield
        finally:
            if self.is_main:
                self.barrier()


def current_shard() -> Shard:
    if dist.is_available() and dist.is_initialized():
        return Shard(rank=dist.get_rank(), world_size=dist.get_world_size())
    return Shard()


@contextmanager
def process_group_from_environment(device: torch.device) -> Iterator[Shard]:
    """Join torchrun's process group for the duration (NCCL for CUDA devices, gloo otherwise); without
    torchrun, or when the caller already made a group, only report the current shard."""
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    if not torchrun or not dist.is_available() or dist.is_initialized():
        yield current_shard()
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", timeout=PROCESS_GROUP_TIMEOUT, device_id=device)
    else:
        dist.init_process_group(backend="gloo", timeout=PROCESS_GROUP_TIMEOUT)
    try:
        yield current_shard()
    finally:
        dist.destroy_process_group()
