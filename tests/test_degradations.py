"""Degradations: noise statistics, blur/downsample behaviour, seeding, specs and errors."""

from __future__ import annotations

import math
import re

import pytest
import torch

from gradprom.datasets import DEGRADATIONS, Degradation, degradation_names, get_degradation, parse_degradation
from gradprom.datasets.degradations import BLIND_TYPES, Blind
from gradprom.errors import GradpromError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grey(value: float = 0.5, shape: tuple[int, ...] = (8, 1, 64, 64)) -> torch.Tensor:
    return torch.full(shape, value)


def test_names() -> None:
    assert degradation_names() == [
        "blind", "blur", "composite", "downsample", "exposure", "gaussian", "none", "poisson"
    ]
    assert all(DEGRADATIONS.meta(name).help for name in degradation_names())


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.15])
def test_gaussian_residual_std_matches_sigma(sigma: float) -> None:
    x = grey()
    residual = get_degradation("gaussian", sigma=sigma)(x, gen()) - x
    assert residual.std().item() == pytest.approx(sigma, rel=0.03)
    assert abs(residual.mean().item()) < 0.005


@pytest.mark.parametrize("level", [0.1, 0.3, 0.5])
def test_poisson_mean_and_variance(level: float) -> None:
    peak = 30.0  # levels kept low enough that the clamp at 1 does not bite
    y = get_degradation("poisson", peak=peak)(grey(level, (16, 1, 64, 64)), gen(1))
    assert y.mean().item() == pytest.approx(level, abs=0.005)
    assert y.var().item() == pytest.approx(level / peak, rel=0.06)
    # Counts are integers: every value is a multiple of 1/peak (below the clamp).
    counts = y[y < 1] * peak
    assert torch.allclose(counts, counts.round(), atol=1e-4)


def test_poisson_noise_grows_as_peak_falls() -> None:
    x = grey(0.5)
    low = (get_degradation("poisson", peak=10)(x, gen()) - x).std()
    high = (get_degradation("poisson", peak=100)(x, gen()) - x).std()
    assert low > 2.5 * high


def test_blur_preserves_constants_and_mean_and_smooths() -> None:
    blur = get_degradation("blur", sigma=1.0)
    assert torch.allclose(blur(grey(0.3)), grey(0.3), atol=1e-6)
    x = torch.rand(4, 1, 32, 32, generator=gen())
    y = blur(x, gen())
    assert y.shape == x.shape
    assert y.mean().item() == pytest.approx(x.mean().item(), abs=2e-3)
    assert y.std() < 0.6 * x.std()


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_kernel_is_odd_normalised_and_sized_from_sigma(sigma: float) -> None:
    impulse = torch.zeros(1, 1, 31, 31)
    impulse[0, 0, 15, 15] = 1.0
    response = get_degradation("blur", sigma=sigma)(impulse)[0, 0]
    assert response.sum().item() == pytest.approx(1.0, abs=1e-5)
    support = (response > 0).nonzero()
    width = 2 * math.ceil(3 * sigma) + 1
    assert (support.max(0).values - support.min(0).values + 1).tolist() == [width, width]
    assert response.argmax().item() == 15 * 31 + 15  # centred


def test_blur_is_depthwise() -> None:
    x = torch.zeros(1, 3, 16, 16)
    x[0, 1, 8, 8] = 1.0
    y = get_degradation("blur", sigma=1.0)(x)
    assert y[0, 0].abs().sum() == 0 and y[0, 2].abs().sum() == 0
    assert y[0, 1].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_blur_too_large_for_image() -> None:
    with pytest.raises(GradpromError, match="too large for 8x8 images"):
        get_degradation("blur", sigma=3.0)(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("scale", [2, 4])
def test_downsample_shape_and_block_means(scale: int) -> None:
    x = torch.rand(2, 3, 32, 32, generator=gen())
    deg = get_degradation("downsample", scale=scale)
    y = deg(x, gen())
    assert deg.scale == scale
    assert y.shape == (2, 3, 32 // scale, 32 // scale)
    assert y[0, 1, 0, 0].item() == pytest.approx(x[0, 1, :scale, :scale].mean().item(), abs=1e-6)
    assert y.mean().item() == pytest.approx(x.mean().item(), abs=1e-6)


def test_downsample_with_noise() -> None:
    x = grey(0.5, (8, 1, 64, 64))
    y = get_degradation("downsample", scale=2, sigma=0.1)(x, gen())
    assert y.shape == (8, 1, 32, 32)
    assert (y - 0.5).std().item() == pytest.approx(0.1, rel=0.05)


def test_downsample_needs_divisible_size() -> None:
    with pytest.raises(GradpromError, match="not divisible by scale 4"):
        get_degradation("downsample", scale=4)(torch.rand(1, 1, 18, 18))


def test_composite_chains_blur_poisson_gaussian() -> None:
    x = torch.rand(4, 1, 32, 32, generator=gen())
    blur_only = get_degradation("composite", blur=1.0, peak=math.inf, sigma=0.0)(x, gen())
    assert torch.allclose(blur_only, get_degradation("blur", sigma=1.0)(x), atol=1e-6)
    flat = grey(0.5)
    full = get_degradation("composite", blur=1.0, peak=30, sigma=0.05)(flat, gen()) - flat
    # Independent noises add in variance: 0.5 / 30 + 0.05^2.
    assert full.var().item() == pytest.approx(0.5 / 30 + 0.05**2, rel=0.08)


def test_none_is_identity() -> None:
    x = torch.rand(2, 1, 16, 16, generator=gen())
    assert torch.equal(get_degradation("none")(x, gen()), x)


@pytest.mark.parametrize(
    "spec", ["gaussian", "poisson", "composite", "downsample:sigma=0.1", "exposure:jitter=0.5", "blind"]
)
def test_seeded_generator_gives_deterministic_results(spec: str) -> None:
    deg = parse_degradation(spec)
    x = torch.rand(2, 1, 16, 16, generator=gen())
    assert torch.equal(deg(x, gen(7)), deg(x, gen(7)))
    assert not torch.equal(deg(x, gen(7)), deg(x, gen(8)))
    g = gen(7)
    assert not torch.equal(deg(x, g), deg(x, g))  # the generator's state advances


@pytest.mark.parametrize(
    "name", ["gaussian", "poisson", "composite", "downsample", "blur", "none", "exposure", "blind"]
)
def test_outputs_clamped_and_dtype_kept(name: str) -> None:
    x = torch.rand(2, 1, 16, 16, generator=gen())
    y = get_degradation(name)(x, gen())
    assert y.dtype == x.dtype
    assert y.min() >= 0.0 and y.max() <= 1.0
    if name in ("gaussian", "poisson"):
        assert (y == 0).any() or (y == 1).any()  # heavy noise actually hit the clamp


def test_rejects_non_batched_input() -> None:
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        get_degradation("gaussian")(torch.rand(16, 16), gen())


def test_rejects_generator_on_another_device() -> None:
    x = torch.rand(1, 1, 8, 8, device="meta")
    with pytest.raises(ValueError, match="create it with torch.Generator"):
        get_degradation("gaussian")(x, gen())


def test_describe_strings() -> None:
    assert get_degradation("gaussian").describe() == "gaussian(sigma=0.15)"
    assert get_degradation("poisson").describe() == "poisson(peak=30)"
    assert get_degradation("blur").describe() == "blur(sigma=1)"
    assert get_degradation("composite").describe() == "composite(blur=1, peak=30, sigma=0.05)"
    assert get_degradation("downsample", scale=4).describe() == "downsample(scale=4, sigma=0)"
    assert get_degradation("none").describe() == "none()"
    assert get_degradation("exposure").describe() == "exposure(gamma=1.8, gain=1, jitter=0)"
    assert get_degradation("blind").describe() == (
        "blind(severity=1, max_ops=2, gaussian=1, poisson=1, blur=1, exposure=1)"
    )
    assert repr(get_degradation("gaussian", sigma=0.1)) == "gaussian(sigma=0.1)"


def test_parse_examples() -> None:
    g = parse_degradation("gaussian:sigma=0.15")
    assert isinstance(g, Degradation) and g.name == "gaussian" and g.params == {"sigma": 0.15}
    c = parse_degradation("composite:blur=1.0,peak=30,sigma=0.05")
    assert c.params == {"blur": 1.0, "peak": 30.0, "sigma": 0.05}
    d = parse_degradation("downsample:scale=2,sigma=0.0")
    assert d.scale == 2 and d.params == {"scale": 2, "sigma": 0.0}
    assert parse_degradation("gaussian").params == {"sigma": 0.15}  # bare name = defaults
    assert parse_degradation(" poisson : peak = 1e2 ").params == {"peak": 100.0}
    assert parse_degradation("none").scale == 1
    e = parse_degradation("exposure:gamma=0.6,gain=1.2")
    assert e.params == {"gamma": 0.6, "gain": 1.2, "jitter": 0.0}
    b = parse_degradation("blind:severity=0.5,poisson=0,exposure=0")
    assert b.params == {"severity": 0.5, "max_ops": 2, "gaussian": 1.0, "poisson": 0.0, "blur": 1.0, "exposure": 0.0}
    assert isinstance(b.params["max_ops"], int) and b.scale == 1


@pytest.mark.parametrize(
    "spec",
    [
        "gaussian:sigma=0.123456789",
        "poisson:peak=7.5",
        "blur:sigma=2",
        "composite:blur=0.5,peak=inf,sigma=0.02",
        "downsample:scale=4,sigma=0.05",
        "none",
        "exposure",
        "exposure:gamma=0.45,gain=1.25,jitter=0.3",
        "blind",
        "blind:severity=0.75,max_ops=3,gaussian=0,poisson=2,blur=0.5,exposure=1",
    ],
)
def test_spec_and_describe_round_trip(spec: str) -> None:
    deg = parse_degradation(spec)
    assert parse_degradation(deg.spec()).params == deg.params
    assert parse_degradation(deg.describe()).describe() == deg.describe()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "bad degradation spec"),
        ("gaussian:sigma", "'sigma' is not key=value"),
        ("gaussian:=0.1", "is not key=value"),
        ("gaussian:sigma=abc", "sigma=abc is not a number"),
        ("gaussian:sigma=0.1,sigma=0.2", "'sigma' is given twice"),
        ("gaussian:sgima=0.1", "no option 'sgima'. Did you mean 'sigma'? Its options: sigma (default"),
        ("gausian", "unknown degradation 'gausian'. Did you mean 'gaussian'"),
        ("gaussian:sigma=-0.1", "sigma must be a number >= 0"),
        ("gaussian:sigma=nan", "sigma must be a number >= 0"),
        ("gaussian:sigma=inf", "sigma must be a number >= 0"),
        ("poisson:peak=0", "peak must be a number > 0"),
        ("downsample:scale=3", "scale must be 2 or 4"),
        ("downsample:scale=2.5", "scale must be 2 or 4"),
        ("none:sigma=0.1", "no option 'sigma'. Its options: none"),
        ("gaussian sigma=0.1", "bad degradation spec"),
        ("exposure:gamma=0", "gamma must be a number > 0"),
        ("exposure:gamma=-1.5", "gamma must be a number > 0"),
        ("exposure:gain=0", "gain must be a number > 0"),
        ("exposure:jitter=-0.1", "jitter must be a number >= 0"),
        ("blind:severity=-1", "severity must be a number >= 0"),
        ("blind:severity=inf", "severity must be a number >= 0"),
        ("blind:blur=-1", "blur must be a number >= 0"),
        ("blind:max_ops=0", "max_ops must be a whole number >= 1"),
        ("blind:max_ops=1.5", "max_ops must be a whole number >= 1"),
        ("blind:gaussian=0,poisson=0,blur=0,exposure=0", "at least one of gaussian, poisson, blur, exposure"),
        ("blind:speckle=1", "no option 'speckle'. Its options: severity (default 1.0), max_ops (default 2), gaussian"),
        ("blind:types=noise", "types=noise is not a number"),  # types are chosen by weight parameters
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(GradpromError, match=re.escape(message)) as info:
        parse_degradation(spec)
    assert "\n" not in str(info.value)


def test_get_degradation_validates_keyword_values() -> None:
    with pytest.raises(GradpromError, match="blur must be a number >= 0"):
        get_degradation("composite", blur=-1)
    with pytest.raises(GradpromError, match="sigma must be a number >= 0, got 'x'"):
        get_degradation("blur", sigma="x")
    with pytest.raises(GradpromError, match="scale must be 2 or 4"):
        get_degradation("downsample", scale=True)
    with pytest.raises(GradpromError, match="max_ops must be a whole number >= 1, got True"):
        get_degradation("blind", max_ops=True)


def test_exposure_matches_hand_computation() -> None:
    x = torch.tensor([0.0, 0.25, 0.5, 0.8]).view(1, 1, 2, 2)
    deg = get_degradation("exposure", gamma=2, gain=1.5)
    # 1.5 * x^2 = 0, 0.09375, 0.375, 0.96 (all below 1, so the clamp is not involved).
    assert torch.allclose(deg(x, gen()).flatten(), torch.tensor([0.0, 0.09375, 0.375, 0.96]), atol=1e-6)
    # apply() is unclamped (composites clamp once); __call__ clamps 1.5 * 1^2 back to 1.
    assert deg.apply(torch.ones(1, 1, 2, 2), None).max().item() == pytest.approx(1.5)
    assert deg(torch.ones(1, 1, 2, 2)).max().item() == 1.0


def test_exposure_gamma_above_one_darkens_below_one_brightens() -> None:
    x = grey(0.5, (1, 1, 4, 4))
    under = get_degradation("exposure")(x).mean().item()  # default gamma 1.8 = under-exposure
    over = get_degradation("exposure", gamma=0.5)(x).mean().item()
    assert under == pytest.approx(0.5**1.8, abs=1e-6) and under < 0.4
    assert over == pytest.approx(0.5**0.5, abs=1e-6) and over > 0.6
    assert torch.equal(get_degradation("exposure", gamma=1)(x), x)
    for level in (0.0, 1.0):  # black and white are fixed points of x ** gamma
        assert torch.equal(get_degradation("exposure", gamma=2.5)(grey(level, (1, 1, 4, 4))), grey(level, (1, 1, 4, 4)))


def test_exposure_gain_scales() -> None:
    x = torch.rand(2, 1, 16, 16, generator=gen()) * 0.5
    assert torch.allclose(get_degradation("exposure", gamma=1, gain=2)(x), 2 * x, atol=1e-6)
    curve = get_degradation("exposure", gamma=1.8)(x)
    assert torch.allclose(get_degradation("exposure", gamma=1.8, gain=0.5)(x), 0.5 * curve, atol=1e-6)


def test_exposure_without_jitter_ignores_the_generator() -> None:
    x = torch.rand(2, 1, 16, 16, generator=gen())
    deg = get_degradation("exposure", gamma=0.7)
    assert torch.equal(deg(x, gen(1)), deg(x, gen(2))) and torch.equal(deg(x, gen(1)), deg(x))


def test_exposure_jitter_draws_one_log_uniform_gamma_per_image() -> None:
    x = grey(0.5, (64, 1, 8, 8))
    deg = get_degradation("exposure", gamma=1.8, jitter=0.5)
    y = deg(x, gen(3))
    assert torch.equal(y, deg(x, gen(3))) and not torch.equal(y, deg(x, gen(4)))
    assert torch.equal(y, y[:, :, :1, :1].expand_as(y))  # one gamma per image, not per pixel
    gamma = torch.log(y[:, 0, 0, 0]) / math.log(0.5)  # invert 0.5 ** gamma
    assert gamma.min() >= 1.8 / 1.5 - 1e-4 and gamma.max() <= 1.8 * 1.5 + 1e-4
    assert gamma.std() > 0.2  # a varied batch, not one shared gamma
    u = torch.log(gamma / 1.8) / math.log(1.5)  # log-uniform => u uniform in [-1, 1]
    assert abs(u.mean().item()) < 0.25 and (u < -0.5).sum() > 5 and (u > 0.5).sum() > 5


def hf_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared neighbour difference: falls under blur, rises with noise."""
    return (x.diff(dim=-1) ** 2).mean(dim=(1, 2, 3)) + (x.diff(dim=-2) ** 2).mean(dim=(1, 2, 3))


def smooth_batch(b: int = 32, size: int = 48) -> torch.Tensor:
    """A mid-grey pattern of period 8 px: enough detail for blur to remove, far from the clamp."""
    r = torch.arange(size, dtype=torch.float32)
    pattern = 0.5 + 0.2 * torch.sin(2 * math.pi * r / 8).view(-1, 1) * torch.cos(2 * math.pi * r / 8).view(1, -1)
    return pattern.expand(b, 1, size, size).clone()


def test_blind_types_vary_per_image_within_a_batch() -> None:
    x = smooth_batch()
    deg = get_degradation("blind", max_ops=1)
    y = deg(x, gen(5))
    ratio = hf_energy(y) / hf_energy(x)
    assert (ratio < 0.8).sum() >= 3  # some images blurred
    assert (ratio > 1.5).sum() >= 3  # some images noisy
    # The plan that apply() drew first from the same seed says which is which.
    plan = deg.plan(32, gen(5))
    kind = [BLIND_TYPES[t] for t in plan.types[:, 0].tolist()]
    assert set(kind) == set(BLIND_TYPES)
    for i, (k, s) in enumerate(zip(kind, plan.severity[:, 0].tolist(), strict=True)):
        if k == "blur" and s > 0.25:
            assert ratio[i] < 0.8, (i, k, s)
        if k in ("gaussian", "poisson") and s > 0.25:
            assert ratio[i] > 1.5, (i, k, s)


@pytest.mark.parametrize("kind", BLIND_TYPES)
def test_blind_severity_maps(kind: str) -> None:
    """Each type alone, checked per image against its documented severity map."""
    weights = {t: float(t == kind) for t in BLIND_TYPES}
    deg = get_degradation("blind", severity=1.0, max_ops=1, **weights)
    x = grey(0.5, (16, 1, 48, 48)) if kind in ("gaussian", "poisson") else torch.rand(16, 1, 48, 48, generator=gen())
    y = deg.apply(x, gen(2))  # unclamped, so noise statistics are not cut at 0 and 1
    plan = deg.plan(16, gen(2))
    assert (plan.types[:, 0] == BLIND_TYPES.index(kind)).all()
    s = plan.severity[:, 0]
    assert s.min() >= 0 and s.max() <= 1 and s.std() > 0.1
    if kind == "gaussian":
        assert torch.allclose((y - x).std(dim=(1, 2, 3)), 0.2 * s, rtol=0.06, atol=2e-3)
    elif kind == "poisson":  # peak 10 / s^2 => std at 0.5 is sqrt(0.5 / 10) * s
        assert torch.allclose((y - x).std(dim=(1, 2, 3)), math.sqrt(0.05) * s, rtol=0.08, atol=2e-3)
    elif kind == "blur":
        for i in range(16):
            expected = get_degradation("blur", sigma=2 * s[i].item()).apply(x[i : i + 1], None)
            assert torch.allclose(y[i : i + 1], expected, atol=5e-3)
    else:
        gamma = 2.5 ** (plan.direction[:, 0] * s)
        assert torch.allclose(y, x ** gamma.view(-1, 1, 1, 1), atol=1e-6)
        assert (plan.direction == 1).any() and (plan.direction == -1).any()  # under- and over-exposure


@pytest.mark.parametrize("spec", ["blind", "blind:max_ops=4", *(f"blind:max_ops=1,{t}=100" for t in BLIND_TYPES)])
def test_blind_depends_on_the_passed_generator_only(spec: str) -> None:
    """Reseeding torch's global RNG in between must not change a seeded result (every draw uses `generator`)."""
    deg = parse_degradation(spec)
    x = torch.rand(32, 1, 48, 48, generator=gen())
    torch.manual_seed(1)
    first = deg(x, gen(7))
    torch.manual_seed(2)
    assert torch.equal(first, deg(x, gen(7)))
    assert not torch.equal(first, deg(x, gen(8)))


def test_blind_plan_draws_distinct_ops_in_random_order() -> None:
    deg = get_degradation("blind", max_ops=3, gaussian=1, poisson=1, blur=1, exposure=0)
    plan = deg.plan(200, gen())
    assert plan.types.shape == (200, 3)
    counts = (plan.types >= 0).sum(1)
    assert set(counts.tolist()) == {1, 2, 3}
    assert ((plan.types >= 0).int().diff(dim=1) <= 0).all()  # unused slots only at the end
    assert not (plan.types == BLIND_TYPES.index("exposure")).any()  # weight 0 = never drawn
    for row in plan.types.tolist():
        used = [t for t in row if t >= 0]
        assert len(used) == len(set(used))  # no type twice in one image
    assert len({tuple(r) for r in plan.types[counts == 3].tolist()}) > 1  # order varies
    assert get_degradation("blind", max_ops=4, gaussian=0, blur=0).slots == 2  # capped by enabled types


def test_blind_weights_set_type_frequencies() -> None:
    deg = get_degradation("blind", max_ops=1, gaussian=3, poisson=1, blur=0, exposure=0)
    types = deg.plan(4000, gen()).types[:, 0]
    assert (types == 0).float().mean().item() == pytest.approx(0.75, abs=0.03)
    assert set(types.tolist()) == {0, 1}


def test_blind_severity_zero_leaves_images_unchanged() -> None:
    x = torch.rand(16, 1, 24, 24, generator=gen())
    y = get_degradation("blind", severity=0, max_ops=4)(x, gen(1))
    assert torch.allclose(y, x, atol=1e-6)
    small = get_degradation("blind", severity=0.01, max_ops=4)(x, gen(1))
    assert (small - x).abs().max() < 0.05 and not torch.equal(small, x)


def test_blind_range_dtype_and_repeat_calls() -> None:
    x = torch.rand(32, 1, 48, 48, generator=gen(), dtype=torch.float64)
    deg = get_degradation("blind", severity=2.0, max_ops=3)
    g = gen(9)
    first, second = deg(x, g), deg(x, g)
    for y in (first, second):
        assert y.dtype == torch.float64 and y.shape == x.shape
        assert y.min() >= 0.0 and y.max() <= 1.0 and torch.isfinite(y).all()
    assert not torch.equal(first, second)  # the generator advanced: a new mix each batch


def test_blind_blur_too_large_for_image() -> None:
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(GradpromError, match="severity=2 allows blur sigma up to 4, too large for 8x8 images"):
        get_degradation("blind", severity=2)(x, gen())
    assert get_degradation("blind", severity=2, blur=0)(x, gen()).shape == x.shape  # no blur, no limit


def test_blind_is_a_degradation() -> None:
    assert isinstance(parse_degradation("blind"), Blind) and parse_degradation("blind").scale == 1
