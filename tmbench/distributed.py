"""The process group under ``torchrun``, shared by evaluation (prompts sharded by rank) and
training (DDP). The same code runs with gloo on CPU and nccl on GPU (DESIGN 7)."""

from __future__ import annotations

import os
from typing import Any

import torch


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) unless launched by torchrun with several processes."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPU) and return this rank's
    device: cuda:LOCAL_RANK on GPU, ``device`` unchanged on CPU or outside torchrun."""
    import torch.distributed as dist

    gpu = device.startswith("cuda")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    if gpu and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process)."""
    rank, world = dist_info()
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if dist_info()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def mean_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar tensors averaged over ranks (one all-reduce), as floats: training logs the global
    batch's loss parts this way (DDP averages the gradients itself)."""
    vals = torch.stack([v.detach().float().reshape(()) for v in values.values()])
    world = dist_info()[1]
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(vals)
        vals /= world
    return dict(zip(values.keys(), vals.tolist()))
