"""Degradations: noise statistics, blur/downsample behaviour, seeding, specs and errors."""

from __future__ import annotations

import math

import pytest
import torch

from gradprom.datasets import DEGRADATIONS, Degradation, degradation_names, get_degradation, parse_degradation
from gradprom.errors import GradpromError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grey(value: float = 0.5, shape: tuple[int, ...] = (8, 1, 64, 64)) -> torch.Tensor:
    return torch.full(shape, value)


def test_names() -> None:
    assert degradation_names() == ["blur", "composite", "downsample", "gaussian", "none", "poisson"]
    assert all("help" in DEGRADATIONS.meta(name) for name in degradation_names())


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


@pytest.mark.parametrize("spec", ["gaussian", "poisson", "composite", "downsample:sigma=0.1"])
def test_seeded_generator_gives_deterministic_results(spec: str) -> None:
    deg = parse_degradation(spec)
    x = torch.rand(2, 1, 16, 16, generator=gen())
    assert torch.equal(deg(x, gen(7)), deg(x, gen(7)))
    assert not torch.equal(deg(x, gen(7)), deg(x, gen(8)))
    g = gen(7)
    assert not torch.equal(deg(x, g), deg(x, g))  # the generator's state advances


@pytest.mark.parametrize("name", ["gaussian", "poisson", "composite", "downsample", "blur", "none"])
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


@pytest.mark.parametrize(
    "spec",
    [
        "gaussian:sigma=0.123456789",
        "poisson:peak=7.5",
        "blur:sigma=2",
        "composite:blur=0.5,peak=inf,sigma=0.02",
        "downsample:scale=4,sigma=0.05",
        "none",
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
        ("gaussian:sgima=0.1", "no parameter 'sgima'; valid parameters: sigma"),
        ("gausian", "unknown degradation 'gausian'. Did you mean 'gaussian'"),
        ("gaussian:sigma=-0.1", "sigma must be a number >= 0"),
        ("gaussian:sigma=nan", "sigma must be a number >= 0"),
        ("gaussian:sigma=inf", "sigma must be a number >= 0"),
        ("poisson:peak=0", "peak must be a number > 0"),
        ("downsample:scale=3", "scale must be 2 or 4"),
        ("downsample:scale=2.5", "scale must be 2 or 4"),
        ("none:sigma=0.1", "no parameter 'sigma'; valid parameters: none"),
        ("gaussian sigma=0.1", "bad degradation spec"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(GradpromError, match=message) as info:
        parse_degradation(spec)
    assert "\n" not in str(info.value)


def test_get_degradation_validates_keyword_values() -> None:
    with pytest.raises(GradpromError, match="blur must be a number >= 0"):
        get_degradation("composite", blur=-1)
    with pytest.raises(GradpromError, match="sigma must be a number >= 0, got 'x'"):
        get_degradation("blur", sigma="x")
    with pytest.raises(GradpromError, match="scale must be 2 or 4"):
        get_degradation("downsample", scale=True)
