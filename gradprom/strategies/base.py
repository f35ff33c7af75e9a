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
GATE_ON = ("all", "head")


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
    #: a weight on λ·g_vr that never depends on the cosine (joint: 1). The step then takes one VJP of the
    #: combined cotangent u_ip + λ·w·u_vr, plain joint training's cost, and records no cosine.
    fixed_weight: ClassVar[float | None] = None
    #: telemetry name of the cosine in `last_cos` (the full enhancer gradients' cosine)
    cos_name: str = "cos"

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

    def gate_cos(self, cos: Tensor) -> Tensor:
        """The cosine the gate reads (the cosine itself; a gated strategy may smooth it)."""
        return cos

    def combine(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> list[Tensor]:
        """The enhancer's update direction `g_ip + λ·w(cos)·g_vr`, w per tensor or global."""
        _, cos, *_ = self.pairwise(g_ip, g_vr)
        w = self.weights(self.gate_cos(cos))
        self.last_weight = w.float().mean().detach()
        return [a + (self.lam * wi).to(a.dtype) * b for a, b, wi in zip(g_ip, g_vr, w, strict=True)]

    def state_dict(self) -> dict[str, Tensor]:
        """What the strategy keeps between steps, for checkpoints: a resumed trial must gate as it would have.
        The base keeps the last cosine and gate weight (a cheap gate reuses its last decision)."""
        return {"last_cos": self.last_cos, "last_weight": self.last_weight}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.last_cos, self.last_weight = state["last_cos"], state["last_weight"]

    def describe(self) -> str:
        return f"{self.name}(lam={self.lam:g}, granularity={self.granularity})"


class GatedStrategy(Strategy):
    """A strategy whose update is `g_ip + λ·w·g_vr` with a gate weight w from the cosine, plus the gate's
    options: `ema=β` (gate on an exponential moving average of the cosine, so one noisy batch does not flip
    it; 0 = off) and the cheaper gates `gate_every=k` (measure every k-th step, reuse the decision between)
    and `gate_on="head"` (measure the cosine over the enhancer's last layer only). With a global weight
    the update is one VJP of the combined cotangent `u_ip + λ·w·u_vr`, so a step that does not measure
    needs a single backward through the enhancer; that is why the cheap gates need granularity "global".
    """

    def __init__(self, lam: float = 1.0, granularity: str = "global", ema: float = 0.0, gate_every: int = 1,
                 gate_on: str = "all") -> None:
        super().__init__(lam=lam, granularity=granularity)
        if not 0.0 <= ema < 1.0:
            raise GradpromError(f"ema (β) must lie in [0, 1), got {ema}; 0 turns it off")
        if isinstance(gate_every, bool) or not isinstance(gate_every, int) or gate_every < 1:
            raise GradpromError(f"gate_every must be an integer ≥ 1, got {gate_every!r}")
        if gate_on not in GATE_ON:
            raise GradpromError(f"gate_on must be one of {', '.join(GATE_ON)}, got '{gate_on}'")
        if (gate_every > 1 or gate_on != "all") and granularity != "global":
            raise GradpromError("gate_every and gate_on='head' need granularity 'global' (one gate weight for "
                                "the whole enhancer, so the update is a single VJP)")
        self.ema, self.gate_every, self.gate_on = float(ema), int(gate_every), gate_on
        self._ema_cos: Tensor | None = None

    @property
    def cos_name(self) -> str:
        """Telemetry name of the cosine the gate measures: `head_cos` over the last layer (gate_on='head'),
        never to be read as the full gradients' `cos`."""
        return "head_cos" if self.gate_on == "head" else "cos"

    @property
    def cheap(self) -> bool:
        """Whether some steps skip the two full VJPs (gate_every > 1 or gate_on='head')."""
        return self.gate_every > 1 or self.gate_on == "head"

    def gate_cos(self, cos: Tensor) -> Tensor:
        """The cosine the gate reads: `cos`, or its EMA (started at the first cosine, so unbiased)."""
        if not self.ema:
            return cos
        prev = self._ema_cos
        self._ema_cos = cos.detach() if prev is None or prev.shape != cos.shape else \
            self.ema * prev + (1.0 - self.ema) * cos.detach()
        return self._ema_cos

    def state_dict(self) -> dict[str, Tensor]:
        """The base state plus the EMA of the cosine (when started)."""
        return {**super().state_dict(), **({"ema_cos": self._ema_cos} if self._ema_cos is not None else {})}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self._ema_cos = state.get("ema_cos")

    def decide(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> Tensor:
        """The global gate weight w from (possibly partial, e.g. the head's) gradients; kept as `last_weight`."""
        global_cos = self.pairwise(g_ip, g_vr)[0]
        self.last_weight = self.weights(self.gate_cos(global_cos)).detach()
        return self.last_weight

    def describe(self) -> str:
        extra = "".join(f", {k}={v}" for k, v, off in (("ema", self.ema, 0.0), ("gate_every", self.gate_every, 1),
                                                       ("gate_on", self.gate_on, "all")) if v != off)
        return super().describe()[:-1] + extra + ")"
