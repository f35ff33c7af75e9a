"""The enhancer's actual update in a training step equals the strategy's output on the two gradients."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from gradprom.errors import GradpromError
from gradprom.strategies import get_strategy, safe_cos
from gradprom.trainables.build import build_trial, seeded_generator
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.step import output_layer, train_step
from tests.fixtures.settings import TINY

STRATEGIES = ["enhancer_only", "joint", "frozen", "gradprom", "threshold", "gradprom_soft", "pcgrad"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """TINY settings with one recognizer cache for the module's tests (overrides conftest's per-test cache): the
    pretrained recognizers are deterministic per cache key, so a test reading one another test trained sees the
    weights it would have trained itself, without paying for it again."""
    return {**TINY, "cache_dir": str(tmp_path_factory.mktemp("cache"))}


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


@pytest.mark.parametrize("vjp", ["two", "batched"])
@pytest.mark.parametrize("granularity", ["global", "tensor"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_step_applies_strategy_update(name: str, granularity: str, vjp: str, tiny: dict) -> None:
    """The fast path (one recognizer backward, two VJPs, as two calls or one batched call) gives exactly the
    update the strategy computes from the plainly computed gradients, at both granularities."""
    cfg = TrialConfig.from_dict({**tiny, "strategy": name, "lam": 0.7, "threshold": -0.2,
                                 "granularity": granularity, "vjp": vjp})
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

    options = {**({"lam": 0.7, "granularity": granularity} if name != "enhancer_only" else {}),  # no λ there
               **({"threshold": -0.2} if name == "threshold" else {})}
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


def one_step(trial, seed: int, batch: slice):  # noqa: ANN001, ANN201
    """Run one SGD(lr=1) step; returns (the update it applied, the plain g_ip, g_vr on that batch)."""
    x, y = trial.data.train.images[batch], trial.data.train.targets[batch]
    g_ip, g_vr, _ = plain_gradients(trial, x, y, gen_seed=seed)
    before = [p.detach().clone() for p in trial.enhancer.parameters()]
    train_step(trial, x, y, seeded_generator(x.device, seed))
    return [b - p.detach() for b, p in zip(before, trial.enhancer.parameters(), strict=True)], g_ip, g_vr


def cheap_trial(tiny: dict, **gate: object):  # noqa: ANN201
    trial = build_trial(TrialConfig.from_dict({**tiny, "strategy": "threshold", "lam": 0.7, **gate}))
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
    trial.opt_recognizer = torch.optim.SGD(trial.recognizer.parameters(), lr=1.0)
    return trial


@pytest.mark.parametrize("threshold", [-1.0, 1.0])  # the first decision: promote, then drop
def test_gate_every_reuses_the_last_decision(tiny: dict, threshold: float) -> None:
    trial = cheap_trial(tiny, gate_every=2, threshold=threshold)
    update, g_ip, g_vr = one_step(trial, 5, slice(0, 16))  # step 1 measures: the exact gate
    expected = get_strategy("threshold", lam=0.7, threshold=threshold).combine(g_ip, g_vr)
    for u, e in zip(update, expected, strict=True):
        torch.testing.assert_close(u, e, rtol=1e-4, atol=1e-6)
    w = float(trial.strategy.last_weight)
    assert w == (1.0 if threshold == -1.0 else 0.0)
    update, g_ip, g_vr = one_step(trial, 6, slice(16, 32))  # step 2 reuses w: one VJP of u_ip + λ·w·u_vr
    for u, a, b in zip(update, g_ip, g_vr, strict=True):
        torch.testing.assert_close(u, a + 0.7 * w * b, rtol=1e-4, atol=1e-6)
    assert math.isnan(float(trial.strategy.last_cos))  # not measured on this step


def test_gate_on_head_decides_on_the_last_layer(tiny: dict) -> None:
    trial = cheap_trial(tiny, gate_on="head", threshold=0.0)
    head = {id(p) for p in output_layer(trial.enhancer)}
    names = [n for n, p in trial.enhancer.named_parameters() if id(p) in head]
    assert names and all(n.startswith("tail.") for n in names)  # SRResNet's output conv
    update, g_ip, g_vr = one_step(trial, 5, slice(0, 16))
    last = [i for i, p in enumerate(trial.enhancer.parameters()) if id(p) in head]
    head_cos = safe_cos(sum((g_ip[i] * g_vr[i]).sum() for i in last), sum((g_ip[i] ** 2).sum() for i in last),
                        sum((g_vr[i] ** 2).sum() for i in last))
    w = float(head_cos >= 0)
    assert float(trial.strategy.last_weight) == w
    for u, a, b in zip(update, g_ip, g_vr, strict=True):
        torch.testing.assert_close(u, a + 0.7 * w * b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("settings", "message"), [
    ({"strategy": "pcgrad", "gate_every": 2}, "strategy 'pcgrad' has no gate to set gate_every"),
    ({"strategy": "joint", "ema": 0.9}, "has no gate to set ema"),
    ({"strategy": "gradprom", "gate_every": 2, "granularity": "tensor"}, "need granularity 'global'"),
    ({"strategy": "gradprom", "gate_on": "tail"}, "gate_on must be one of all, head"),
    ({"strategy": "threshold", "ema": 1.0}, r"ema must be in \[0, 1\), got 1.0"),
    ({"strategy": "gradprom", "gate_every": 0}, "gate_every must be ≥ 1, got 0"),
    ({"vjp": "vmap"}, "vjp must be one of two, batched"),
])
def test_bad_gate_settings_are_one_line(settings: dict, message: str) -> None:
    with pytest.raises(GradpromError, match=message):
        check_config(TrialConfig.from_dict(settings))


def test_two_auxiliaries_each_through_its_own_gate(tiny: dict) -> None:
    """Classification and segmentation auxiliaries at once: update = g_ip + λ·w₁·g_cls + λ_aux·w₂·g_seg, each
    w from its own cosine with g_ip (gates independent), and each recognizer follows its own loss."""
    cfg = TrialConfig.from_dict({**tiny, "strategy": "gradprom", "lam": 0.7, "aux_task": "segmentation",
                                 "lam_aux": 1.3})
    trial = build_trial(cfg)
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
    trial.opt_recognizer = torch.optim.SGD(trial.recognizer.parameters(), lr=1.0)
    trial.aux.opt = torch.optim.SGD(trial.aux.recognizer.parameters(), lr=1.0)
    x, y, y_seg = trial.data.train.images[:16], trial.data.train.targets[:16], trial.aux.data.train.targets[:16]

    enhancer, seg = copy.deepcopy(trial.enhancer), copy.deepcopy(trial.aux.recognizer)
    x_hat = enhancer(trial.degradation(x, seeded_generator(x.device, 5)))
    theta = list(enhancer.parameters())
    g_ip = torch.autograd.grad(F.l1_loss(x_hat, x), theta, retain_graph=True)
    g_cls = torch.autograd.grad(F.cross_entropy(copy.deepcopy(trial.recognizer)(x_hat), y), theta, retain_graph=True)
    seg_loss = F.cross_entropy(seg(x_hat), y_seg)
    g_seg = torch.autograd.grad(seg_loss, theta, retain_graph=True)
    g_psi = torch.autograd.grad(seg_loss, list(seg.parameters()))

    def cos(a, b):  # noqa: ANN001, ANN202
        return float(safe_cos(sum((u * v).sum() for u, v in zip(a, b, strict=True)), sum((u * u).sum() for u in a),
                              sum((v * v).sum() for v in b)))

    w_cls, w_seg = float(cos(g_ip, g_cls) >= 0), float(cos(g_ip, g_seg) >= 0)
    before = [p.detach().clone() for p in trial.enhancer.parameters()]
    before_seg = [p.detach().clone() for p in trial.aux.recognizer.parameters()]
    train_step(trial, x, y, seeded_generator(x.device, 5), y_seg)

    assert float(trial.strategy.last_cos) == pytest.approx(cos(g_ip, g_cls), abs=1e-5)
    assert float(trial.aux.strategy.last_cos) == pytest.approx(cos(g_ip, g_seg), abs=1e-5)
    assert (float(trial.strategy.last_weight), float(trial.aux.strategy.last_weight)) == (w_cls, w_seg)
    for b, p, a, c, s in zip(before, trial.enhancer.parameters(), g_ip, g_cls, g_seg, strict=True):
        torch.testing.assert_close(b - p.detach(), a + 0.7 * w_cls * c + 1.3 * w_seg * s, rtol=1e-4, atol=1e-6)
    for b, p, g in zip(before_seg, trial.aux.recognizer.parameters(), g_psi, strict=True):
        torch.testing.assert_close(b - p.detach(), g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("settings", "message"), [
    ({"aux_task": "classification"}, "aux_task must be another task"),
    ({"aux_task": "detection"}, "aux_task must be another task"),
    ({"aux_task": "segmentation", "strategy": "enhancer_only"}, "aux_task needs a strategy"),
    ({"aux_task": "segmentation", "lam_aux": 0.0}, r"lam_aux must be > 0, got 0.0"),
])
def test_bad_multi_auxiliary_settings(settings: dict, message: str) -> None:
    with pytest.raises(GradpromError, match=message):
        check_config(TrialConfig.from_dict(settings))


@pytest.mark.parametrize("gate", [{"gate_on": "head"}, {"gate_every": 2}])
def test_cheap_gates_with_two_auxiliaries(tiny: dict, gate: dict) -> None:
    """A cheap gate decides each auxiliary's weight from its own cosine (on the head, or reused between measured
    steps) and the step takes one VJP of u_ip + λ·w₁·u_cls + λ_aux·w₂·u_seg."""
    cfg = TrialConfig.from_dict({**tiny, "strategy": "threshold", "threshold": 0.0, "lam": 0.7,
                                 "aux_task": "segmentation", "lam_aux": 1.3, **gate})
    trial = build_trial(cfg)
    trial.opt_enhancer = torch.optim.SGD(trial.enhancer.parameters(), lr=1.0)
    head = {id(p) for p in output_layer(trial.enhancer)}
    for step, batch in enumerate((slice(0, 16), slice(16, 32))):
        x, y, y_seg = (d[batch] for d in (trial.data.train.images, trial.data.train.targets,
                                          trial.aux.data.train.targets))
        enhancer = copy.deepcopy(trial.enhancer)
        x_hat = enhancer(trial.degradation(x, seeded_generator(x.device, 5 + step)))
        theta = list(enhancer.parameters())
        g_ip, g_cls, g_seg = (torch.autograd.grad(loss, theta, retain_graph=True) for loss in (
            F.l1_loss(x_hat, x), F.cross_entropy(copy.deepcopy(trial.recognizer)(x_hat), y),
            F.cross_entropy(copy.deepcopy(trial.aux.recognizer)(x_hat), y_seg)))
        before = [p.detach().clone() for p in trial.enhancer.parameters()]
        weights = (float(trial.strategy.last_weight), float(trial.aux.strategy.last_weight))
        train_step(trial, x, y, seeded_generator(x.device, 5 + step), y_seg)
        if "gate_on" in gate or step == 0:  # measured: each gate's own cosine (over the head, or all of θ)
            keep = [i for i, p in enumerate(trial.enhancer.parameters()) if "gate_on" not in gate or id(p) in head]

            def cos(a, b, keep=keep):  # noqa: ANN001, ANN202
                return float(safe_cos(sum((a[i] * b[i]).sum() for i in keep), sum((a[i] ** 2).sum() for i in keep),
                                      sum((b[i] ** 2).sum() for i in keep)))

            weights = (float(cos(g_ip, g_cls) >= 0), float(cos(g_ip, g_seg) >= 0))
        else:  # not measured: the last decisions, no cosine
            assert math.isnan(float(trial.strategy.last_cos)) and math.isnan(float(trial.aux.strategy.last_cos))
        assert (float(trial.strategy.last_weight), float(trial.aux.strategy.last_weight)) == weights
        for b, p, a, c, s in zip(before, trial.enhancer.parameters(), g_ip, g_cls, g_seg, strict=True):
            torch.testing.assert_close(b - p.detach(), a + 0.7 * weights[0] * c + 1.3 * weights[1] * s,
                                       rtol=1e-4, atol=1e-6)
        with torch.no_grad():  # back to the starting point (an lr-1 step leaves it ill-conditioned); gates keep state
            for p, b in zip(trial.enhancer.parameters(), before, strict=True):
                p.copy_(b)
