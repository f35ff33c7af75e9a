"""What the training step hands a strategy, and what the strategy hands back: the strategy owns the gradient path.

The step computes the losses; the strategy decides how their gradients reach the enhancer's parameters θ
(one backward of a weighted sum, two VJPs through the enhancer and a cosine, a cheap gate that measures on
the last layer or every k-th step) and returns the gradients (`Gradients`); after the step's non-finite check
it combines them into the enhancer's update and its telemetry (`Update`). Nothing here knows the trainer, so
a user's strategy with its own fast path registers without an edit of the step.

Both losses reach θ only through the enhancer's outputs, so a path takes the cotangents u = ∂L/∂x̂ (one
backward through each recognizer, which also yields its own gradient ∇φ L) and pulls them back through the
enhancer with `StepContext.pull` / `pull_sum`. The recognizers see x̂ = f(y); a self-supervised image loss may
be measured through a forward of its own (`x_ip`: f of a sub-image, a masked or a recorrupted image), whose
cotangent is pulled back through that output; with a supervised loss `x_ip` is x̂ itself.
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
    x_ip: Tensor | None = None  # the enhanced image L_IP is measured through, when not x̂ (a self-supervised loss)

    @property
    def gates(self) -> list[Gate]:
        return [task.gate for task in self.tasks]

    @property
    def ip_output(self) -> Tensor:
        """The output L_IP reaches θ through: x̂, or a self-supervised loss's own forward."""
        return self.x_hat if self.x_ip is None else self.x_ip

    def pull(self, params: list[Tensor], u_ip: Tensor, u_tasks: list[Tensor],
             retain_graph: bool = False) -> tuple[list[Tensor], list[list[Tensor]]]:
        """(J_ip^T·u_ip, [J^T·u_k]): each cotangent pulled back through the output it belongs to, over `params`
        (one VJP each; under a supervised loss all at x̂, as one call)."""
        if self.x_ip is None:
            g_ip, *g_tasks = self.vjp(params, [u_ip, *u_tasks], retain_graph)
            return g_ip, g_tasks
        g_ip = list(torch.autograd.grad(self.x_ip, params, u_ip, retain_graph=True))
        return g_ip, self.vjp(params, u_tasks, retain_graph) if u_tasks else []

    def pull_sum(self, params: list[Tensor], u_ip: Tensor, weighted: list[Tensor],
                 retain_graph: bool = False) -> list[Tensor]:
        """J_ip^T·u_ip + J^T·Σ weighted: the combined update in one backward (one VJP of u_ip + Σ weighted under a
        supervised loss; else one backward through both outputs)."""
        if self.x_ip is None:
            return self.vjp(params, [u_ip + sum(weighted)], retain_graph)[0]
        if not weighted:
            return list(torch.autograd.grad(self.x_ip, params, u_ip, retain_graph=retain_graph))
        return list(torch.autograd.grad([self.x_ip, self.x_hat], params, [u_ip, sum(weighted)],
                                        retain_graph=retain_graph))


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
    (u_ip,) = torch.autograd.grad(ctx.loss_ip, ctx.ip_output, retain_graph=True)
    u_tasks, g_rec = [], []
    for task in ctx.tasks:
        u, *g = torch.autograd.grad(task.loss, [ctx.x_hat, *task.params], retain_graph=True)
        u_tasks.append(u)
        g_rec.append(g)
    return u_ip, u_tasks, g_rec


def exact(ctx: StepContext) -> Gradients:
    """Every gradient over all enhancer parameters: g_ip and each g_k, from one VJP each through the enhancer."""
    u_ip, u_tasks, g_rec = cotangents(ctx)
    g_ip, g_tasks = ctx.pull(ctx.theta, u_ip, u_tasks)
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
