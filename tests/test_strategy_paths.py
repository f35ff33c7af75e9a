"""Strategies own their gradient path: the step hands them the losses and a VJP, they return the update.

A user's strategy with a path of its own (`tests/fixtures/plugin_example.ImageSpaceGate`) runs through the unchanged
trainer, and its update is checked against the gradient of the loss it stands for, computed by autograd on copies.
"""

from __future__ import annotations

import copy
import inspect

import torch
import torch.nn.functional as F

import gradprom.trainables.step as step_module
from gradprom.plugins import load_plugins
from gradprom.strategies import get_strategy
from gradprom.strategies.paths import Gradients
from gradprom.trainables.build import build_trial, seeded_generator
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.step import train_step


def test_a_plugin_strategy_with_its_own_path_trains_through_the_unchanged_step(
        tiny: dict, monkeypatch) -> None:
    monkeypatch.setenv("GRADPROM_PLUGINS", "tests.fixtures.plugin_example")
    load_plugins()
    trial = build_trial(TrialConfig.from_dict({**tiny, "strategy": "image_space_gate", "lam": 0.7}))
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)  # a change is minus the gradient
    x, y = trial.data.train.images[:16], trial.data.train.targets[:16]
    enhancer, recognizer = copy.deepcopy(trial.enhancer), copy.deepcopy(trial.recognizer)
    before = [p.detach().clone() for p in trial.enhancer.parameters()]

    out = train_step(trial, x, y, seeded_generator(x.device, 3))

    # independently: the cotangents' cosine at x̂, then ∇θ (L_IP + λ·w·L_VR) by one plain backward
    x_hat = enhancer(trial.degradation(x, seeded_generator(x.device, 3)))
    loss_ip, loss_vr = F.l1_loss(x_hat, x), F.cross_entropy(recognizer(x_hat), y)
    u_ip, u_vr = (torch.autograd.grad(loss, x_hat, retain_graph=True)[0].flatten() for loss in (loss_ip, loss_vr))
    cos = float(u_ip @ u_vr / (u_ip.norm() * u_vr.norm()))
    w = 1.0 if cos >= 0 else 0.0
    expected = torch.autograd.grad(loss_ip + 0.7 * w * loss_vr, list(enhancer.parameters()))
    for b, p, e in zip(before, trial.enhancer.parameters(), expected, strict=True):
        torch.testing.assert_close(b - p.detach(), e, rtol=1e-4, atol=1e-6)
    assert abs(float(out.cos[0]) - cos) < 1e-5 and float(out.weight[0]) == w  # its telemetry reaches the epoch


def test_the_step_has_no_branch_on_a_strategy() -> None:
    """No strategy name, no probe of a strategy attribute, and no strategy state written in the step."""
    source = inspect.getsource(step_module.train_step)
    for word in ("getattr", "hasattr", "fixed_weight", "gate_every", "gate_on", "last_cos", "last_weight",
                 "enhancer_only", "joint", "gradprom", "pcgrad", "steps_done", "cheap"):
        assert word not in source, word


def test_each_built_in_path_returns_what_its_update_needs(tiny: dict) -> None:
    """Joint and the cheap gates combine in their path (no per-task gradients left); the exact path leaves g_k."""
    seen = {}
    for name, extra in (("joint", {}), ("gradprom", {}), ("gradprom", {"gate_on": "head"}), ("enhancer_only", {})):
        trial = build_trial(TrialConfig.from_dict({**tiny, "strategy": name, **extra}))
        real = trial.strategy.gradients

        def spy(ctx, real=real, key=f"{name}{extra}"):
            grads = real(ctx)
            seen[key] = grads
            return grads

        trial.strategy.gradients = spy
        x, y = trial.data.train.images[:8], trial.data.train.targets[:8]
        train_step(trial, x, y, seeded_generator(x.device, 0))
    assert isinstance(seen["joint{}"], Gradients) and seen["joint{}"].tasks == []
    assert len(seen["gradprom{}"].tasks) == 1 and seen["gradprom{'gate_on': 'head'}"].tasks == []
    assert seen["enhancer_only{}"].recognizers == [] and seen["enhancer_only{}"].tasks == []
    assert get_strategy("gradprom").state_dict()["steps"].item() == 0
