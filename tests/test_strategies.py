"""The strategies against design.md's formulas, on hand-made vectors and inside a real training step."""

from __future__ import annotations

import math

import pytest
import torch

from gradprom.errors import GradpromError
from gradprom.strategies import Strategy, get_strategy, register_strategy, strategy_names

ALL = ["enhancer_only", "joint", "frozen", "gradprom", "threshold", "gradprom_soft", "pcgrad"]


def vec(*xs: float) -> list[torch.Tensor]:
    """One 'parameter' tensor per pair of values, so global and per-tensor gating differ."""
    t = torch.tensor(xs, dtype=torch.float64)
    return [t[i:i + 2].clone() for i in range(0, len(xs), 2)]


def flat(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.norm().item(), b.norm().item()
    return 0.0 if na == 0 or nb == 0 else (a @ b).item() / (na * nb)


def reference(name: str, a: torch.Tensor, b: torch.Tensor, lam: float, tau: float = 0.0,
              symmetric: bool = False) -> torch.Tensor:
    """design.md's table, written out independently on flat vectors."""
    c = cos(a, b)
    if name == "enhancer_only":
        return a
    if name in ("joint", "frozen"):
        return a + lam * b
    if name == "gradprom":
        return a + lam * b if c >= 0 else a
    if name == "threshold":
        return a + lam * b if c >= tau else a
    if name == "gradprom_soft":
        return a + lam * max(0.0, c) * b
    if name == "pcgrad":
        a2, b2 = a.clone(), b.clone()
        if c < 0:
            b2 = b - (b @ a) / (a @ a) * a
            if symmetric:
                a2 = a - (a @ b) / (b @ b) * b
        return a2 + lam * b2
    raise AssertionError(name)


CASES = {
    "conflict": (vec(1.0, 0.0, 0.5, 0.0), vec(-1.0, 1.0, -0.5, 0.2)),      # cos < 0
    "agree": (vec(1.0, 2.0, 0.0, 1.0), vec(0.5, 1.0, 1.0, 0.0)),           # cos > 0
    "orthogonal": (vec(1.0, 0.0, 0.0, 0.0), vec(0.0, 1.0, 0.0, 3.0)),      # cos = 0 exactly
    "zero_ip": (vec(0.0, 0.0, 0.0, 0.0), vec(1.0, -1.0, 2.0, 0.0)),        # ‖g_ip‖ = 0 → cos := 0
    "zero_vr": (vec(1.0, 2.0, 3.0, 4.0), vec(0.0, 0.0, 0.0, 0.0)),
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("lam", [0.3, 2.0])
def test_combine_matches_formula(name: str, case: str, lam: float) -> None:
    g_ip, g_vr = CASES[case]
    s = get_strategy(name, **({} if name == "enhancer_only" else {"lam": lam}))  # enhancer_only takes no λ
    got = flat(s.combine(g_ip, g_vr))
    want = reference(name, flat(g_ip), flat(g_vr), lam)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if name != "enhancer_only" or case != "zero_ip":
        assert s.last_cos.item() == pytest.approx(cos(flat(g_ip), flat(g_vr)), abs=1e-12)


def test_gate_decisions_on_the_edge_cases() -> None:
    g_ip, g_vr = CASES["orthogonal"]
    assert get_strategy("gradprom").combine(g_ip, g_vr)[1][1] == 3.0      # cos = 0 promotes (cos ≥ 0)
    g_ip, g_vr = CASES["conflict"]
    s = get_strategy("gradprom")
    s.combine(g_ip, g_vr)
    assert s.last_weight.item() == 0.0
    s = get_strategy("threshold", threshold=-0.9)
    s.combine(g_ip, g_vr)
    assert s.last_weight.item() == 1.0                                     # τ below the cosine promotes
    g_ip, g_vr = CASES["zero_ip"]
    s = get_strategy("threshold", threshold=0.1)
    s.combine(g_ip, g_vr)
    assert s.last_weight.item() == 0.0 and s.last_cos.item() == 0.0       # zero norm: cos 0 < τ


@pytest.mark.parametrize("tau", [-1.0, -0.5, 0.0, 0.3, 1.0])
def test_threshold_formula(tau: float) -> None:
    for g_ip, g_vr in CASES.values():
        got = flat(get_strategy("threshold", lam=0.7, threshold=tau).combine(g_ip, g_vr))
        torch.testing.assert_close(got, reference("threshold", flat(g_ip), flat(g_vr), 0.7, tau=tau))


def test_pcgrad_symmetric_projects_both() -> None:
    g_ip, g_vr = CASES["conflict"]
    got = flat(get_strategy("pcgrad", lam=1.5, symmetric=True).combine(g_ip, g_vr))
    torch.testing.assert_close(got, reference("pcgrad", flat(g_ip), flat(g_vr), 1.5, symmetric=True))
    # the projected auxiliary gradient is orthogonal to g_ip
    projected = flat(get_strategy("pcgrad", lam=1.0).combine(g_ip, g_vr)) - flat(g_ip)
    assert abs((projected @ flat(g_ip)).item()) < 1e-12


@pytest.mark.parametrize("name", ["gradprom", "threshold", "gradprom_soft", "pcgrad", "joint"])
def test_tensor_granularity_gates_each_tensor(name: str) -> None:
    g_ip, g_vr = vec(1.0, 0.0, 1.0, 0.0), vec(-1.0, 0.0, 2.0, 0.0)  # tensor 0 conflicts, tensor 1 agrees
    got = get_strategy(name, lam=1.0, granularity="tensor").combine(g_ip, g_vr)
    for a, b, g in zip(g_ip, g_vr, got, strict=True):
        torch.testing.assert_close(g, reference(name, a, b, 1.0))


def test_flags() -> None:
    assert sorted(strategy_names()) == sorted(ALL)
    trains = {n: get_strategy(n).trains_recognizer for n in ALL}
    assert trains == {"enhancer_only": False, "joint": True, "frozen": False, "gradprom": True,
                      "threshold": True, "gradprom_soft": True, "pcgrad": True}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "gradpro"}, "Did you mean 'gradprom'"),
    ({"name": "joint", "lam": 0.0}, "lam"),
    ({"name": "joint", "lam": -1.0}, "lam"),
    ({"name": "joint", "lam": math.nan}, "lam"),
    ({"name": "threshold", "threshold": 1.5}, "[-1, 1]"),
    ({"name": "gradprom", "threshold": 0.5}, "strategy 'gradprom' has no option 'threshold'"),
    ({"name": "joint", "granularity": "layer"}, "granularity"),
])
def test_bad_options(kwargs: dict, message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(GradpromError, match=message.replace("[", r"\[").replace("]", r"\]")):
        get_strategy(name, **kwargs)


def test_register_user_strategy() -> None:
    @register_strategy("half_for_test")
    class Half(Strategy):
        """Always half of λ·g_vr."""

        name = "half_for_test"

        def weights(self, cos: torch.Tensor) -> torch.Tensor:
            return torch.full_like(cos, 0.5)

    g_ip, g_vr = CASES["conflict"]
    got = flat(get_strategy("half_for_test", lam=2.0).combine(g_ip, g_vr))
    torch.testing.assert_close(got, flat(g_ip) + flat(g_vr))
    with pytest.raises(GradpromError, match="already registered"):
        register_strategy("half_for_test")(Half)
    with pytest.raises(GradpromError, match="Strategy subclass"):
        register_strategy("not_a_strategy")(dict)  # type: ignore[type-var]


def pair_with_cos(c: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One-tensor gradients (unit vectors in 2-D) whose cosine is exactly c."""
    return [torch.tensor([1.0, 0.0])], [torch.tensor([c, math.sqrt(max(0.0, 1 - c * c))])]


def test_ema_gate_on_a_scripted_cosine_sequence() -> None:
    """β = 0.5: the EMA starts at the first cosine, then ema ← β·ema + (1−β)·cos; the gate reads the EMA."""
    sequence = [0.5, -0.2, -0.2, -0.9, 0.3, 0.8]
    ema, expected_ema = None, []
    for c in sequence:
        ema = c if ema is None else 0.5 * ema + 0.5 * c
        expected_ema.append(ema)
    raw, smooth = get_strategy("gradprom"), get_strategy("gradprom", ema=0.5)
    raw_w, smooth_w = [], []
    for c in sequence:
        g_ip, g_vr = pair_with_cos(c)
        raw.combine(g_ip, g_vr)
        smooth.combine(g_ip, g_vr)
        raw_w.append(float(raw.last_weight))
        smooth_w.append(float(smooth.last_weight))
    assert raw_w == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert smooth_w == [1.0 if e >= 0 else 0.0 for e in expected_ema] == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert float(smooth._ema_cos) == pytest.approx(expected_ema[-1])
    assert float(smooth.last_cos) == pytest.approx(0.8)  # telemetry records the raw cosine


def test_ema_per_tensor_keeps_one_average_per_tensor() -> None:
    s = get_strategy("threshold", threshold=0.0, ema=0.9, granularity="tensor")
    a = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])]
    s.combine(a, [torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])])  # cos +1 and -1
    s.combine(a, [torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0])])  # then -1 and +1
    assert s._ema_cos.tolist() == pytest.approx([0.8, -0.8])
    assert float(s.last_weight) == 0.5  # first tensor still promoted, second not
