"""Data-parallel helpers over torch.distributed (the process group Ray Train sets up; no Ray here).

`autograd.grad` bypasses DDP's all-reduce, so the training step averages each per-loss gradient
itself, before the cosine: every replica then sees the same vectors and takes the same branch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_(*groups: list[Tensor]) -> None:
    """Average every tensor of every group across workers, in place, with one all-reduce."""
    _, size = world()
    tensors = [t for g in groups for t in g]
    if size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def sum_(values: dict[Any, Tensor]) -> dict[Any, Tensor]:
    """Sum a dict of tensors across workers (evaluation counters); returns the dict."""
    if world()[1] > 1:
        for v in values.values():
            dist.all_reduce(v)
    return values


def broadcast_module_(module: nn.Module) -> None:
    """Make every replica start from rank 0's parameters and buffers."""
    if world()[1] > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def average_buffers_(module: nn.Module) -> None:
    """Average float buffers (BatchNorm running stats) so evaluation is identical on every replica."""
    average_([b.data for b in module.buffers() if b.is_floating_point()])
