"""The enhancer's actual update in a training step equals the strategy's output on the two gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gradprom.strategies import get_strategy
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.loop import build_trial, seeded_generator, train_step

STRATEGIES = ["enhancer_only", "joint", "frozen", "gradprom", "threshold", "gradprom_soft", "pcgrad"]


def plain_gradients(trial, x, y, gen_seed):
    """g_ip, g_vr and ∇φ L_VR the slow, obvious way: two separate full backward passes."""
    enhancer, recognizer = copy.deepcopy(trial.enhancer), copy.deepcopy(trial.recognizer)
    gen = seeded_generator(x.device, gen_seed)
    x_hat = enhancer(trial.degradation(x, gen))
    F.l1_loss(x_hat, x).backward(retain_graph=True)
    g_ip = [p.grad.clone() for p in enhancer.parameters()]
    enhancer.zero_grad()
    F.cross_entropy(recognizer(x_hat), y).backward()
    g_vr = [p.grad.clone() for p in enhancer.parameters()]
    g_phi = [p.grad.clone() if p.grad is not None else None for p in recognizer.parameters()]
    return g_ip, g_vr, g_phi


@pytest.mark.parametrize("name", STRATEGIES)
def test_step_applies_strategy_update(name: str, tiny: dict) -> None:
    cfg = TrialConfig.from_dict({**tiny, "strategy": name, "lam": 0.7, "threshold": -0.2})
    trial = build_trial(cfg)
    # SGD with lr 1: a parameter's change is exactly minus the gradient the step assigned
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
    if trial.opt_recognizer is not None:
        trial.opt_recognizer = torch.optim.SGD(trial.recognizer.parameters(), lr=1.0)
    x, y = trial.data.train.images[:16], trial.data.train.targets[:16]
    g_ip, g_vr, g_phi = plain_gradients(trial, x, y, gen_seed=5)
    before_e = [p.detach().clone() for p in trial.enhancer.parameters()]
    before_r = [p.detach().clone() for p in trial.recognizer.parameters()]

    train_step(trial, x, y, seeded_generator(x.device, 5))

    options = {"lam": 0.7, **({"threshold": -0.2} if name == "threshold" else {})}
    expected = get_strategy(name, **options).combine(g_ip, g_vr)
    for b, p, e in zip(before_e, trial.enhancer.parameters(), expected, strict=True):
        torch.testing.assert_close(b - p.detach(), e, rtol=1e-4, atol=1e-6)
    moved = [not torch.equal(b, p.detach()) for b, p in zip(before_r, trial.recognizer.parameters(), strict=True)]
    if trial.strategy.trains_recognizer:
        for b, p, g in zip(before_r, trial.recognizer.parameters(), g_phi, strict=True):
            torch.testing.assert_close(b - p.detach(), g, rtol=1e-4, atol=1e-6)
    else:
        assert not any(moved), "a frozen recognizer must not change"


def test_gate_differs_between_strategies_on_the_same_batch(tiny: dict) -> None:
    """Sanity for the test above: the strategies really produce different updates on this batch."""
    deltas = {}
    for name in ("enhancer_only", "joint"):
        trial = build_trial(TrialConfig.from_dict({**tiny, "strategy": name, "lam": 5.0}))
        trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
        before = torch.cat([p.detach().flatten().clone() for p in trial.enhancer.parameters()])
        x, y = trial.data.train.images[:16], trial.data.train.targets[:16]
        train_step(trial, x, y, seeded_generator(x.device, 5))
        deltas[name] = before - torch.cat([p.detach().flatten() for p in trial.enhancer.parameters()])
    assert not torch.allclose(deltas["enhancer_only"], deltas["joint"])
