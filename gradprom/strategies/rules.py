"""The seven strategies of design.md, each one small class."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gradprom.strategies.base import (
    GATED,
    GRANULARITY,
    LAM,
    SYMMETRIC,
    THRESHOLD,
    GatedStrategy,
    Strategy,
    register_strategy,
)
from gradprom.strategies.paths import Gradients, StepContext


@register_strategy("enhancer_only", settings=(GRANULARITY,))
class EnhancerOnly(Strategy):
    """Enhancer trained on L_IP alone; a recognizer pretrained on clean images only scores it."""

    name = "enhancer_only"
    trains_recognizer = False
    needs_pretrained_recognizer = True
    uses_aux_gradient = False

    def __init__(self, granularity: str = "global") -> None:
        """No λ: nothing of the recognizer's gradient is added (so a front over λ runs it once)."""
        super().__init__(granularity=granularity)

    def describe(self) -> str:
        return f"{self.name}(granularity={self.granularity})"

    def gradients(self, ctx: StepContext) -> Gradients:
        """∇θ L_IP is the update: one backward, no recognizer."""
        return Gradients(list(torch.autograd.grad(ctx.loss_ip, ctx.theta)), [], [])

    def combine(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> list[Tensor]:
        if g_vr:  # the cosine is still worth recording when a caller computed g_vr
            self.pairwise(g_ip, g_vr)
        self.last_weight = torch.zeros(())
        return list(g_ip)


@register_strategy("joint")
class Joint(Strategy):
    """Plain task-driven training: always add λ·g_vr; the recognizer trains too."""

    name = "joint"
    #: the weight on λ·g_vr, which never depends on the cosine
    fixed_weight = 1.0

    def gradients(self, ctx: StepContext) -> Gradients:
        """No gate, so plain joint training's cost: one backward of L_IP + Σ λ_k·w·L_k, whose recognizer parts
        are rescaled by 1/(λ_k·w) to ∇φ L_k. No cosine is measured."""
        weights = [task.gate.lam * self.fixed_weight for task in ctx.tasks]
        total = ctx.loss_ip
        for w, task in zip(weights, ctx.tasks, strict=True):
            total = total + w * task.loss
        grads = torch.autograd.grad(total, [*ctx.theta, *(p for task in ctx.tasks for p in task.params)])
        for gate in ctx.gates:
            gate.last_cos = torch.full((), math.nan, device=ctx.x_hat.device)
            gate.last_weight = torch.full((), self.fixed_weight, device=ctx.x_hat.device)
        g_rec, start = [], len(ctx.theta)
        for w, task in zip(weights, ctx.tasks, strict=True):
            g_rec.append([g / w for g in grads[start:start + len(task.params)]])
            start += len(task.params)
        return Gradients(list(grads[:len(ctx.theta)]), [], g_rec)

    def weights(self, cos: Tensor) -> Tensor:
        return torch.ones_like(cos)


@register_strategy("frozen")
class Frozen(Joint):
    """ESTR-style: the recognizer is pretrained on clean images, then frozen; the enhancer adds λ·g_vr."""

    name = "frozen"
    trains_recognizer = False
    needs_pretrained_recognizer = True


@register_strategy("threshold", settings=(THRESHOLD, *GATED))
class Threshold(GatedStrategy):
    """Promote λ·g_vr only when cos(g_ip, g_vr) ≥ τ."""

    name = "threshold"

    def __init__(self, lam: float = 1.0, threshold: float = 0.0, granularity: str = "global", ema: float = 0.0,
                 gate_every: int = 1, gate_on: str = "all") -> None:
        super().__init__(lam=lam, granularity=granularity, ema=ema, gate_every=gate_every, gate_on=gate_on)
        self.threshold = float(threshold)

    def weights(self, cos: Tensor) -> Tensor:
        return (cos >= self.threshold).to(cos.dtype)

    def describe(self) -> str:
        return super().describe().replace("(", f"(threshold={self.threshold:g}, ", 1)


@register_strategy("gradprom", settings=GATED)
class GradProm(Threshold):
    """Gradient promotion: add λ·g_vr only when the two gradients agree (cos ≥ 0)."""

    name = "gradprom"

    def __init__(self, lam: float = 1.0, granularity: str = "global", ema: float = 0.0, gate_every: int = 1,
                 gate_on: str = "all") -> None:
        super().__init__(lam=lam, threshold=0.0, granularity=granularity, ema=ema, gate_every=gate_every,
                         gate_on=gate_on)

    def describe(self) -> str:
        return GatedStrategy.describe(self)


@register_strategy("gradprom_soft", settings=GATED)
class GradPromSoft(GatedStrategy):
    """The paper's lemma form: g_ip + λ·max(0, cos)·g_vr."""

    name = "gradprom_soft"

    def weights(self, cos: Tensor) -> Tensor:
        return cos.clamp_min(0.0)


@register_strategy("pcgrad", settings=(LAM, GRANULARITY, SYMMETRIC))
class PCGrad(Strategy):
    """PCGrad-like: on conflict (cos < 0) project g_vr onto g_ip's normal plane, then g_ip + λ·g_vr.

    `symmetric=True` also projects g_ip onto g_vr's normal plane (the original PCGrad), both from the
    original vectors.
    """

    name = "pcgrad"

    def __init__(self, lam: float = 1.0, granularity: str = "global", symmetric: bool = False) -> None:
        super().__init__(lam=lam, granularity=granularity)
        self.symmetric = bool(symmetric)

    def combine(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> list[Tensor]:
        _, cos, dots, sq_ip, sq_vr = self.pairwise(g_ip, g_vr)
        conflict = cos < 0  # cos is 0 where a norm is 0, so zero vectors are never projected
        coef_vr = torch.where(conflict, dots / sq_ip.clamp_min(torch.finfo(sq_ip.dtype).tiny), 0.0)
        coef_ip = torch.where(conflict & torch.tensor(self.symmetric),
                              dots / sq_vr.clamp_min(torch.finfo(sq_vr.dtype).tiny), 0.0)
        self.last_weight = torch.ones(())
        out = []
        for a, b, cv, ci in zip(g_ip, g_vr, coef_vr, coef_ip, strict=True):
            vr = b - cv.to(b.dtype) * a
            ip = a - ci.to(a.dtype) * b
            out.append(ip + self.lam * vr)
        return out

    def describe(self) -> str:
        return f"{self.name}(lam={self.lam:g}, granularity={self.granularity}, symmetric={self.symmetric})"
