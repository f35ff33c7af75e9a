"""What the training step hands a strategy, and what the strategy hands back: the strategy owns the gradient path.

The step computes the losses; the strategy decides how their gradients reach the enhancer's parameters θ
(one backward of a weighted sum, two VJPs through the enhancer and a cosine, a cheap gate that measures on
the last layer or every k-th step) and returns the gradients (`Gradients`); after the step's non-finite check
it combines them into the enhancer's update and its telemetry (`Update`). Nothing here knows the trainer, so
a user's strategy with its own fast path registers without an edit of the step.

Both losses reach θ only through the enhanced image x̂, so a path takes the cotangents u = ∂L/∂x̂ (one
backward through each recognizer, which also yields its own gradient ∇φ L) and pulls them back through the
enhancer with `StepContext.vjp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

#: vjp(params, cotangents, retain_graph) → J^T·u over `params` for each cotangent u at x̂
VJP = Callable[[list[Tensor], list[Tensor], bool], list[list[Tensor]]]


class Gate(Protocol):
    """What a path reads and sets on a task's gate (a `Strategy`: its λ, its last decision, its rule), named here
    so the paths need not know the strategies that use them."""

    lam: float
    last_cos: Tensor
    last_weight: Tensor

    def combine(self, g_ip: list[Tensor], g_vr: list[Tensor]) -> list[Tensor]: ...


@dataclass
class Task:
    """One recognition task of a step: its loss through x̂, the trainable parameters of its recognizer (empty
    when that recognizer does not train) and the strategy that gates its gradient (the trial's own strategy for
    the first task; a second auxiliary has a gate of its own)."""

    loss: Tensor
    params: list[Tensor]
    gate: Gate


@dataclass
class StepContext:
    """Everything a strategy's gradient path may use in one step."""

    loss_ip: Tensor  # the image-quality loss L_IP
    x_hat: Tensor  # the enhanced image, fp32, still in the enhancer's graph
    theta: list[Tensor]  # the enhancer's trainable parameters
    tasks: list[Task]  # the recognition tasks (none for a strategy that uses no recognition gradient)
    vjp: VJP
    head: Callable[[], list[Tensor]]  # the enhancer's last layer's parameters (what gate_on="head" measures)
    average: Callable[..., None]  # average lists of tensors over data-parallel replicas, in place (alone: no-op)

    @property
    def gates(self) -> list[Gate]:
        return [task.gate for task in self.tasks]


@dataclass
class Gradients:
    """A path's result before the update: `ip` is ∇θ L_IP, or the finished update when the path combined the
    losses already (one backward, a cheap gate); `tasks` holds ∇θ L_k per task, empty in that case; `recognizers`
    holds each task's ∇φ L_k, its recognizer's update (empty for a recognizer that does not train)."""

    ip: list[Tensor]
    tasks: list[list[Tensor]]
    recognizers: list[list[Tensor]]

    def all(self) -> list[Tensor]:
        """Every gradient, in the order the step's non-finite check sums them."""
        out = list(self.ip)
        for k, rec in enumerate(self.recognizers):
            out += [*(self.tasks[k] if k < len(self.tasks) else []), *rec]
        return out


@dataclass
class Update:
    """The enhancer's update direction, with each task's gate telemetry (its cosine and the weight it gave)."""

    direction: list[Tensor]
    cos: list[Tensor]
    weight: list[Tensor]


def cotangents(ctx: StepContext) -> tuple[Tensor, list[Tensor], list[list[Tensor]]]:
    """u_ip = ∂L_IP/∂x̂, and per task u_k = ∂L_k/∂x̂ with its recognizer's ∇φ L_k from the same backward."""
    (u_ip,) = torch.autograd.grad(ctx.loss_ip, ctx.x_hat, retain_graph=True)
    u_tasks, g_rec = [], []
    for task in ctx.tasks:
        u, *g = torch.autograd.grad(task.loss, [ctx.x_hat, *task.params], retain_graph=True)
        u_tasks.append(u)
        g_rec.append(g)
    return u_ip, u_tasks, g_rec


def exact(ctx: StepContext) -> Gradients:
    """Every gradient over all enhancer parameters: g_ip and each g_k, from one VJP each through the enhancer."""
    u_ip, u_tasks, g_rec = cotangents(ctx)
    g_ip, *g_tasks = ctx.vjp(ctx.theta, [u_ip, *u_tasks], False)
    return Gradients(g_ip, g_tasks, g_rec)


def combine_tasks(ctx: StepContext, grads: Gradients) -> list[Tensor]:
    """g_ip through each task's gate: the first task's `combine(g_ip, g_1)`, and every further task adds its own
    contribution `combine(g_ip, g_k) − g_ip`. A path that combined already returns its update as is."""
    if not grads.tasks:
        return grads.ip
    first, *others = zip(ctx.gates, grads.tasks, strict=True)
    update = first[0].combine(grads.ip, first[1])
    for gate, g in others:
        update = [u + c - a for u, c, a in zip(update, gate.combine(grads.ip, g), grads.ip, strict=True)]
    return update
