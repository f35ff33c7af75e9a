"""The strategy contract: how the enhancement gradient `g_ip` and the recognition gradient `g_vr` combine.

Each strategy is one small class (LibMTL style) that owns its whole gradient path: `gradients(ctx)` takes the
step's losses and returns the gradients (the base: the exact two-VJP path; joint training: one backward; the
cheap gates: a VJP of the combined cotangent), and `update(ctx, grads)` turns them into the enhancer's update
and the gates' telemetry. Most strategies only say how much of g_vr to add (`weights`, or `combine` on two lists
of tensors, one per enhancer parameter). Everything is branch-free on tensors (the gate is a 0/1 or soft
weight), so no host sync happens inside a step; the last decision is kept for telemetry (`last_cos`,
`last_weight`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from gradprom.errors import GradpromError
from gradprom.registry import Meta, Registry, keyword_options
from gradprom.settings import Setting
from gradprom.strategies.paths import Gradients, StepContext, Update, combine_tasks, cotangents, exact

GRANULARITIES = ("global", "tensor")
GATE_ON = ("all", "head")

# The strategies' trial settings, declared once and shared by every strategy that takes them.
LAM = Setting("lam", 1.0, "λ: weight of the recognizer's gradient in the enhancer's update", above=0, log=True)
GRANULARITY = Setting("granularity", "global", "gate/project the flattened gradient (global) or each parameter "
                      "tensor on its own (tensor)", choices=GRANULARITIES)
THRESHOLD = Setting("threshold", 0.0, "τ: threshold promotes λ·g_vr when cos ≥ τ", low=-1, high=1)
SYMMETRIC = Setting("symmetric", False, "pcgrad: also project g_ip onto g_vr's normal plane (original PCGrad)")
EMA = Setting("ema", 0.0, "gates: gate on an EMA of the cosine with this β (0: off)", low=0, below=1)
GATE_EVERY = Setting("gate_every", 1, "gates: measure the cosine every k-th step, reuse the decision between", low=1)
GATE_ON_ = Setting("gate_on", "all", "gates: 'head' measures the cosine over the enhancer's last layer only",
                   choices=GATE_ON)
GATED = (LAM, GRANULARITY, EMA, GATE_EVERY, GATE_ON_)


@dataclass(frozen=True, kw_only=True)
class StrategyMeta(Meta):
    """A strategy's entry: its help line and its settings, which are exactly its constructor's options."""


STRATEGIES: Registry[Strategy, StrategyMeta] = Registry("strategy", StrategyMeta)
S = TypeVar("S", bound="type[Strategy]")


def register_strategy(name: str, *, settings: tuple[Setting, ...] = (LAM, GRANULARITY),
                      help: str = "") -> Callable[[S], S]:
    """Decorator registering a `Strategy` subclass under `name`; its `settings` are its constructor's options
    (same names, same defaults) and become trial settings. `help` defaults to the docstring's first line."""

    def add(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise GradpromError(f"register_strategy needs a Strategy subclass, got {cls!r}")
        takes = keyword_options(cls)
        declared = {s.name: s.default for s in settings}
        if takes != declared:
            raise GradpromError(f"strategy '{name}': its constructor's options {takes} must be its settings "
                                f"{declared} (same names and defaults)")
        line = help or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        return STRATEGIES.register(name, help=line, settings=tuple(settings))(cls)

    return add


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
    #: telemetry name of the cosine in `last_cos` (the full enhancer gradients' cosine)
    cos_name: str = "cos"

    def __init__(self, lam: float = 1.0, granularity: str = "global") -> None:
        self.lam = float(lam)
        self.granularity = granularity
        self.last_cos: Tensor = torch.zeros(())
        self.last_weight: Tensor = torch.zeros(())

    def gradients(self, ctx: StepContext) -> Gradients:
        """This step's gradients. The base takes the exact path (g_ip and every g_k over all enhancer
        parameters, one VJP each), which a rule on their cosine needs."""
        return exact(ctx)

    def update(self, ctx: StepContext, grads: Gradients) -> Update:
        """The enhancer's update from this step's (finite) gradients, with each task's gate telemetry."""
        direction = combine_tasks(ctx, grads)
        gates = ctx.gates or [self]
        return Update(direction, [g.last_cos for g in gates], [g.last_weight for g in gates])

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
        if (gate_every > 1 or gate_on != "all") and granularity != "global":
            raise GradpromError("gate_every and gate_on='head' need granularity 'global' (one gate weight for "
                                "the whole enhancer, so the update is a single VJP)")
        self.ema, self.gate_every, self.gate_on = float(ema), int(gate_every), gate_on
        self._ema_cos: Tensor | None = None
        self.steps = 0  # steps taken so far: gate_every measures on every gate_every-th

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

    def gradients(self, ctx: StepContext) -> Gradients:
        """The exact path, or a cheap gate's: decide the weights w_k without the full gradients (on the last
        layer's, or reuse the last decisions between measuring steps), then one VJP of u_ip + Σ λ_k·w_k·u_k."""
        measure = self.steps % self.gate_every == 0
        self.steps += 1
        if not self.cheap:
            return super().gradients(ctx)
        u_ip, u_tasks, g_rec = cotangents(ctx)
        if measure and self.gate_on == "head":  # the cosines over the enhancer's last layer only
            h_ip, h_tasks = ctx.pull(ctx.head(), u_ip, u_tasks, True)
            ctx.average(h_ip, *h_tasks)
            for gate, h in zip(ctx.gates, h_tasks, strict=True):
                gate.decide(h_ip, h)
        elif not measure:  # reuse the last decisions; no cosine measured
            for gate in ctx.gates:
                gate.last_cos = torch.full((), math.nan, device=ctx.x_hat.device)
        if self.gate_on == "head" or not measure:
            weighted = [g.lam * g.last_weight.to(u.dtype) * u for g, u in zip(ctx.gates, u_tasks, strict=True)]
            return Gradients(ctx.pull_sum(ctx.theta, u_ip, weighted), [], g_rec)
        g_ip, g_tasks = ctx.pull(ctx.theta, u_ip, u_tasks)  # a measuring step of gate_every
        return Gradients(g_ip, g_tasks, g_rec)

    def state_dict(self) -> dict[str, Tensor]:
        """The base state plus the step count and the EMA of the cosine (when started)."""
        return {**super().state_dict(), "steps": torch.tensor(self.steps),
                **({"ema_cos": self._ema_cos} if self._ema_cos is not None else {})}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self._ema_cos = state.get("ema_cos")
        self.steps = int(state.get("steps", 0))

    def decide(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> Tensor:
        """The global gate weight w from (possibly partial, e.g. the head's) gradients; kept as `last_weight`."""
        global_cos = self.pairwise(g_ip, g_vr)[0]
        self.last_weight = self.weights(self.gate_cos(global_cos)).detach()
        return self.last_weight

    def describe(self) -> str:
        extra = "".join(f", {k}={v}" for k, v, off in (("ema", self.ema, 0.0), ("gate_every", self.gate_every, 1),
                                                       ("gate_on", self.gate_on, "all")) if v != off)
        return super().describe()[:-1] + extra + ")"
