"""One training step of a task-driven trial: forward, losses, the strategy's gradients, the updates.

The step knows no strategy: it computes the losses and hands the strategy a `StepContext` (the losses, the
enhanced image, a VJP through the enhancer); the strategy's own path returns the gradients and, after the
non-finite check, the enhancer's update and its telemetry (`gradprom.strategies.paths`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from gradprom.errors import GradpromError
from gradprom.strategies.paths import StepContext, Task
from gradprom.trainables import distributed as ddp
from gradprom.trainables.build import Trial, forward
from gradprom.trainables.reference import task_loss

if TYPE_CHECKING:
    from gradprom.strategies import Strategy


def output_layer(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of a model's last layer (its last module holding parameters of its own, e.g. SRResNet's
    tail conv): what `gate_on="head"` measures the cosine over. A model may name them via `gate_parameters()`."""
    if hasattr(model, "gate_parameters"):
        return list(model.gate_parameters())
    for module in reversed(list(model.modules())):
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            return own
    raise GradpromError(f"{type(model).__name__} has no trainable parameters to gate on")


def vjp_at(x_hat: Tensor, params: list[Tensor], cotangents: list[Tensor], retain_graph: bool = False,
           batched: bool = False) -> list[list[Tensor]]:
    """J^T·u through the enhancer for each cotangent u: one batched call (vmap over the cotangents) or one
    call per cotangent. Both give the same gradients; which is faster depends on the device (benchmarks)."""
    if batched and len(cotangents) > 1:
        stacked = torch.autograd.grad(x_hat, params, torch.stack(cotangents), is_grads_batched=True,
                                      retain_graph=retain_graph)
        return [[g[i] for g in stacked] for i in range(len(cotangents))]
    return [list(torch.autograd.grad(x_hat, params, u, retain_graph=retain_graph or i < len(cotangents) - 1))
            for i, u in enumerate(cotangents)]


@dataclass
class StepOut:
    """What one step leaves for its epoch: the losses and non-finite flags (device tensors, read every few
    steps) and each task's gate telemetry (the cosine and the weight its gate gave)."""

    loss_ip: Tensor
    loss_vr: Tensor
    bad: Tensor  # (non-finite loss, non-finite gradient), the same on every replica
    cos: list[Tensor]
    weight: list[Tensor]


def train_step(t: Trial, x: Tensor, y: Tensor, gen: torch.Generator, y_aux: Tensor | None = None) -> StepOut | None:
    """One step, top to bottom: degrade, enhance, the losses, the strategy's gradients, the updates.

    The `bad` flags are read by `train_epoch` every few steps, so the step never waits for the device, except
    under `nan_policy` skip-step, which must know before updating (the step returns None when skipped). A second
    auxiliary (`aux`, labels `y_aux`) is one more recognition task with its own recognizer, λ and gate.
    Forward passes run under the fast path's autocast; losses, gradients, cosines and updates are fp32.
    """
    s = t.strategy
    # the recognition tasks: the trial's own, then the second auxiliary's (none for a strategy without g_vr)
    heads = [(t.recognizer, y, s, t.opt_recognizer)] + ([(t.aux.recognizer, y_aux, t.aux.strategy, t.aux.opt)]
                                                       if t.aux else [])
    heads = heads if s.uses_aux_gradient else []
    theta = [p for p in t.enhancer.parameters() if p.requires_grad]

    # forward: degraded on the fly, on the device (observations already: left as they are); enhanced (fp32 from
    # here on); each recognizer on x̂
    x_in = t.fast.layout(t.train_degradation(x, gen))
    with t.fast.autocast():
        x_hat = t.enhancer(x_in).float()
        logits = [model(x_hat) for model, *_ in heads]
    # image-quality loss L_IP: against the clean x, or self-supervised from x_in alone (through its own forward)
    loss_ip, x_ip = t.image_loss(functools.partial(forward, t), x_in, x_hat, x if t.cfg.clean_targets else None, gen)
    tasks = [Task(task_loss(out.float(), target), trainable(model, gate), gate)
             for out, (model, target, gate, _) in zip(logits, heads, strict=True)]
    loss_bad = (~torch.isfinite(loss_ip + sum(task.loss for task in tasks))).float().reshape(1)

    # the strategy's own gradient path
    ctx = StepContext(loss_ip, x_hat, theta, tasks, functools.partial(vjp_at, x_hat, batched=t.cfg.vjp == "batched"),
                      functools.partial(output_layer, t.enhancer), ddp.average_, None if x_ip is x_hat else x_ip)
    grads = s.gradients(ctx)
    ddp.average_(grads.ip, *grads.tasks, *grads.recognizers, [loss_bad])  # the same on every replica
    grad_bad = ~torch.isfinite(torch.stack([g.sum() for g in grads.all()]).sum())
    bad = torch.stack([loss_bad[0] != 0, grad_bad])
    if t.cfg.nan_policy == "skip-step" and bad.any():  # the one host sync: skip-step must know before updating
        return None
    update = s.update(ctx, grads)  # the paper's core: how the gradients combine

    # the updates: the enhancer along the strategy's direction, each trained recognizer along its own gradient
    for p, g in zip(theta, update.direction, strict=True):
        p.grad = g
    t.opt_enhancer.step()
    for (_, _, _, opt), task, g_rec in zip(heads, tasks, grads.recognizers, strict=True):
        if opt is not None:
            for p, g in zip(task.params, g_rec, strict=True):
                p.grad = g
            opt.step()
    loss_vr = tasks[0].loss.detach() if tasks else torch.zeros((), device=x.device)
    return StepOut(loss_ip.detach(), loss_vr, bad, update.cos, update.weight)


def trainable(model: nn.Module, gate: Strategy) -> list[Tensor]:
    """A recognizer's parameters its gradient path updates: none when its strategy does not train it."""
    return [p for p in model.parameters() if p.requires_grad] if gate.trains_recognizer else []
