"""The strategy contract: how the enhancement gradient `g_ip` and the recognition gradient `g_vr` combine.

Each strategy is one small class with one method (LibMTL style). `combine` takes two lists of tensors,
one per enhancer parameter, and returns the enhancer's update direction as a list of tensors. It is
branch-free on tensors (the gate is a 0/1 or soft weight), so no host sync happens inside a step; the
last gate decision is kept on the strategy for telemetry (`last_cos`, `last_weight`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from gradprom.errors import GradpromError

GRANULARITIES = ("global", "tensor")


def flat_dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """Per-tensor dot products as a 1-D tensor, in at least fp32 (bf16/fp16 gradients are promoted)."""
    dtype = torch.promote_types(a[0].dtype, torch.float32) if a else torch.float32
    return torch.stack([torch.sum(x.to(dtype) * y.to(dtype)) for x, y in zip(a, b, strict=True)])


def safe_cos(dot: Tensor, sq_a: Tensor, sq_b: Tensor) -> Tensor:
    """cos = dot / (|a||b|), defined as 0 where either norm is 0 (design.md)."""
    denom = torch.sqrt(sq_a) * torch.sqrt(sq_b)
    return torch.where(denom > 0, dot / denom.clamp_min(torch.finfo(denom.dtype).tiny), torch.zeros_like(dot))


class Strategy:
    """Base class; subclasses implement `weights` (how much of g_vr to add) or override `combine`."""

    name: ClassVar[str] = "base"
    #: whether the recognizer follows ∇φ L_VR during enhancer training
    trains_recognizer: ClassVar[bool] = True
    #: whether the recognizer starts from (and, if not trained, stays) the one pretrained on clean images
    needs_pretrained_recognizer: ClassVar[bool] = False
    #: whether g_vr is used at all (enhancer_only needs no recognition gradient)
    uses_aux_gradient: ClassVar[bool] = True

    def __init__(self, lam: float = 1.0, granularity: str = "global") -> None:
        if not 0 < lam < float("inf"):
            raise GradpromError(f"lam (λ) must be a finite number > 0, got {lam}; e.g. --param lam=0.1")
        if granularity not in GRANULARITIES:
            raise GradpromError(f"granularity must be one of {', '.join(GRANULARITIES)}, got '{granularity}'")
        self.lam = float(lam)
        self.granularity = granularity
        self.last_cos: Tensor = torch.zeros(())
        self.last_weight: Tensor = torch.zeros(())

    def weights(self, cos: Tensor) -> Tensor:
        """Weight on λ·g_vr given the cosine(s); 1 = promote fully, 0 = drop."""
        raise NotImplementedError

    def pairwise(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> tuple[Tensor, ...]:
        """(global cos, then per tensor: cos, g_ip·g_vr, ‖g_ip‖², ‖g_vr‖²).

        With granularity "global" the per-tensor entries repeat the flattened vectors' values, so the
        rules below read the same at both granularities. The global cosine is recorded for telemetry.
        """
        dots, sq_ip, sq_vr = flat_dot(g_ip, g_vr), flat_dot(g_ip, g_ip), flat_dot(g_vr, g_vr)
        global_cos = safe_cos(dots.sum(), sq_ip.sum(), sq_vr.sum())
        self.last_cos = global_cos.detach()
        if self.granularity == "global":
            n = len(g_ip)
            return global_cos, global_cos.expand(n), dots.sum().expand(n), sq_ip.sum().expand(n), \
                sq_vr.sum().expand(n)
        return global_cos, safe_cos(dots, sq_ip, sq_vr), dots, sq_ip, sq_vr

    def combine(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> list[Tensor]:
        """The enhancer's update direction `g_ip + λ·w(cos)·g_vr`, w per tensor or global."""
        _, cos, *_ = self.pairwise(g_ip, g_vr)
        w = self.weights(cos)
        self.last_weight = w.float().mean().detach()
        return [a + (self.lam * wi).to(a.dtype) * b for a, b, wi in zip(g_ip, g_vr, w, strict=True)]

    def describe(self) -> str:
        return f"{self.name}(lam={self.lam:g}, granularity={self.granularity})"
