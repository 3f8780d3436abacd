"""Data-parallel set-up under ``torchrun``: which rank this process is, joining the group, gathering.

``torchrun`` (PyTorch's launcher) puts ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each process's
environment; without them everything here describes a plain single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a data-parallel run (``world_size`` 1: a plain single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Without ``WORLD_SIZE`` > 1 this is a single process on ``device``. Under ``torchrun``
    each process takes GPU ``LOCAL_RANK`` (backend NCCL) when ``device`` is a GPU, or stays on the
    CPU (backend gloo).

    Returns:
        this process's place, and the device it trains on.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), device
    info = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def all_gather(obj, ddp: Distributed) -> list:
    """Every rank's ``obj`` in rank order (just ``[obj]`` in a single process)."""
    if not ddp.enabled:
        return [obj]
    out: list = [None] * ddp.world_size
    dist.all_gather_object(out, obj)
    return out
