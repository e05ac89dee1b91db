"""Several processes, one per GPU (or CPU process), under torchrun: who am I, and the few collectives
training needs.

    torchrun --nproc_per_node=4 -m capsnet.train --data-root DIR --out runs/ddp/capsnet_mnist.pt

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK (and MASTER_ADDR/PORT); a plain `python -m` run has
none of them and is a world of one, with no process group at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0  # 0..world_size-1; rank 0 alone writes checkpoints and prints
    local_rank: int = 0  # index of this process's GPU on its machine
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_from_env(env=os.environ) -> World:
    size = int(env.get("WORLD_SIZE", "1"))
    rank = int(env.get("RANK", "0"))
    local = int(env.get("LOCAL_RANK", str(rank)))
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={size}")
    return World(rank=rank, local_rank=local, world_size=size)


def init(world: World, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if world.distributed and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.world_size
        )


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def finish(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
