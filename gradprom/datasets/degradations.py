"""Image degradations applied on the fly, on the images' device, from a seeded generator.

Why on the fly: the clean image is the enhancement target, so one stored dataset serves every noise
level a search tries, and the corruption costs a kernel launch rather than a copy of the data.
Why a passed `torch.Generator`: a trial's noise is reproducible by seed and independent of
whatever else draws random numbers (model init, dropout, other workers).

Each degradation takes x float [B, C, H, W] in [0, 1] and returns the corrupted batch clamped to
[0, 1], of size H/scale x W/scale. Noise sigma is on the [0, 1] scale.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from gradprom.errors import GradpromError, unknown_name
from gradprom.keyvalue import parse_value, split_pair
from gradprom.registry import Meta, Registry


def _fmt(value: Any) -> str:
    """Shortest text that reads back to the same number (30.0 -> '30', 0.15 -> '0.15')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _number(kind: str, key: str, value: Any, *, positive: bool = False, allow_inf: bool = False) -> float:
    """Validate one numeric parameter (>= 0, or > 0 if `positive`) and return it as float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = not math.isnan(value) and (allow_inf or math.isfinite(value))
        ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        extra = " (or inf)" if allow_inf else ""
        raise GradpromError(f"degradation '{kind}': {key} must be a number {bound}{extra}, got {value!r}")
    return value


class Degradation:
    """Base class: subclasses set `name`, store params in `self.params` and implement `apply`."""

    name: str = "none"
    scale: int = 1

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = params

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Degrade a batch; the clamp keeps the result a valid image whatever the noise did."""
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"degradations take float [B, C, H, W] images, got {x.dtype} {tuple(x.shape)}")
        if generator is not None and generator.device.type != x.device.type:
            # torch's own error here is cryptic; say what to do instead.
            raise ValueError(
                f"generator is on {generator.device} but images are on {x.device}; "
                "create it with torch.Generator(device=images.device)"
            )
        return self.apply(x, generator).clamp(0.0, 1.0)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The corruption itself, unclamped (so composites clamp once, at the end)."""
        return x

    def describe(self) -> str:
        """Readable form for results tables, e.g. 'gaussian(sigma=0.15)'."""
        return f"{self.name}({', '.join(f'{k}={_fmt(v)}' for k, v in self.params.items())})"

    def spec(self) -> str:
        """The CLI form, e.g. 'gaussian:sigma=0.15'; `parse_degradation(d.spec())` rebuilds `d`."""
        args = ",".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.name}:{args}" if args else self.name

    def __repr__(self) -> str:
        return self.describe()


@dataclass(frozen=True, kw_only=True)
class DegradationMeta(Meta):
    """A degradation's entry: its help line (its parameters are its constructor's, given in the spec)."""


DEGRADATIONS: Registry[Degradation, DegradationMeta] = Registry("degradation", DegradationMeta)


def _gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    if sigma == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + sigma * noise


def _poisson_noise(x: torch.Tensor, peak: float, generator: torch.Generator | None) -> torch.Tensor:
    if math.isinf(peak):
        return x
    # Photon counts need a non-negative rate; pixels above 1 (after blur) are fine.
    return torch.poisson(x.clamp(min=0.0) * peak, generator=generator) / peak


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, kernel 2*ceil(3 sigma)+1 taps, reflect padding, one kernel per channel."""
    if sigma == 0:
        return x
    radius = math.ceil(3 * sigma)
    if radius >= min(x.shape[-2:]):
        raise GradpromError(
            f"degradation 'blur': sigma={_fmt(sigma)} is too large for {x.shape[-2]}x{x.shape[-1]} images"
        )
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@DEGRADATIONS.register("none", help="identity: the clean image (a no-degradation baseline)")
class Identity(Degradation):
    """No corruption; lets 'none' sit in a search space next to real degradations."""

    name = "none"

    def __init__(self) -> None:
        super().__init__()


@DEGRADATIONS.register("gaussian", help="additive Gaussian noise of std sigma on [0,1] images")
class GaussianNoise(Degradation):
    """Additive white Gaussian noise (read-out noise)."""

    name = "gaussian"

    def __init__(self, sigma: float = 0.15) -> None:
        self.sigma = _number(self.name, "sigma", sigma)
        super().__init__(sigma=self.sigma)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return _gaussian_noise(x, self.sigma, generator)


@DEGRADATIONS.register(
    "poisson", help="Poisson (shot) noise; peak = photons at intensity 1 (lower = noisier)"
)
class PoissonNoise(Degradation):
    """Signal-dependent shot noise, as in low-dose CT/X-ray: variance = x / peak."""

    name = "poisson"

    def __init__(self, peak: float = 30.0) -> None:
        self.peak = _number(self.name, "peak", peak, positive=True, allow_inf=True)
        super().__init__(peak=self.peak)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return _poisson_noise(x, self.peak, generator)


@DEGRADATIONS.register("blur", help="Gaussian blur of std sigma pixels (reflect padding)")
class Blur(Degradation):
    """Deterministic optical blur; the generator is accepted for a uniform call signature."""

    name = "blur"

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = _number(self.name, "sigma", sigma)
        super().__init__(sigma=self.sigma)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return _blur(x, self.sigma)


@DEGRADATIONS.register("composite", help="blur -> Poisson -> Gaussian, a realistic acquisition chain")
class Composite(Degradation):
    """Blur, then shot noise, then read-out noise, clamped once at the end (blind-restoration setting)."""

    name = "composite"

    def __init__(self, blur: float = 1.0, peak: float = 30.0, sigma: float = 0.05) -> None:
        self.blur = _number(self.name, "blur", blur)
        self.peak = _number(self.name, "peak", peak, positive=True, allow_inf=True)
        self.sigma = _number(self.name, "sigma", sigma)
        super().__init__(blur=self.blur, peak=self.peak, sigma=self.sigma)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = _blur(x, self.blur)
        x = _poisson_noise(x, self.peak, generator)
        return _gaussian_noise(x, self.sigma, generator)


@DEGRADATIONS.register("downsample", help="area-average downsampling by scale 2 or 4, plus optional noise")
class Downsample(Degradation):
    """Low-resolution input for super-resolution enhancers; output is H/scale x W/scale."""

    name = "downsample"

    def __init__(self, scale: int = 2, sigma: float = 0.0) -> None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or scale not in (2, 4):
            raise GradpromError(f"degradation 'downsample': scale must be 2 or 4, got {scale!r}")
        self.scale = int(scale)
        self.sigma = _number(self.name, "sigma", sigma)
        super().__init__(scale=self.scale, sigma=self.sigma)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.scale or w % self.scale:
            raise GradpromError(
                f"degradation 'downsample': {h}x{w} images are not divisible by scale {self.scale}"
            )
        return _gaussian_noise(F.avg_pool2d(x, self.scale), self.sigma, generator)


def _exposure(x: torch.Tensor, gamma: float | torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """gain * x ** gamma; negatives (from earlier noise in a chain) go to 0 first, as x ** 1.8 of them is NaN."""
    return gain * x.clamp(min=0.0) ** gamma


@DEGRADATIONS.register(
    "exposure", help="under/over-exposure gain * x ** gamma (gamma > 1 darkens, < 1 brightens); jitter varies it"
)
class Exposure(Degradation):
    """Wrong exposure/tone curve (dark or washed-out scans); with `jitter`, each image gets its own gamma."""

    name = "exposure"

    def __init__(self, gamma: float = 1.8, gain: float = 1.0, jitter: float = 0.0) -> None:
        self.gamma = _number(self.name, "gamma", gamma, positive=True)
        self.gain = _number(self.name, "gain", gain, positive=True)
        self.jitter = _number(self.name, "jitter", jitter)
        super().__init__(gamma=self.gamma, gain=self.gain, jitter=self.jitter)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.jitter == 0:
            return _exposure(x, self.gamma, self.gain)
        # Log-uniform in [gamma / (1 + jitter), gamma * (1 + jitter)]: darker and brighter equally likely.
        u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        gamma = self.gamma * (1 + self.jitter) ** u
        return _exposure(x, gamma.view(-1, 1, 1, 1), self.gain)


BLIND_TYPES: tuple[str, ...] = ("gaussian", "poisson", "blur", "exposure")
"""The per-image types `blind` draws from, in the order of its weight parameters and of `BlindPlan.types`."""

# What severity s means for each type (s = 1 is the default upper end); `Blind`'s docstring explains the choices.
_BLIND_SIGMA = 0.2  # Gaussian std = 0.2 s
_BLIND_PEAK = 10.0  # Poisson peak = 10 / s^2
_BLIND_BLUR = 2.0  # blur std = 2 s pixels
_BLIND_GAMMA = 2.5  # gamma = 2.5 ** (+-s)


class BlindPlan(NamedTuple):
    """One batch's draws: which op runs in each slot of each image and how hard (exposed so tests can check)."""

    types: torch.Tensor  # [B, slots] long index into BLIND_TYPES, -1 = slot unused
    severity: torch.Tensor  # [B, slots] uniform in [0, severity]
    direction: torch.Tensor  # [B, slots] +1 = under-exposure (gamma > 1), -1 = over-exposure; only for exposure


def _blind_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Per-image Gaussian blur in one grouped conv: image b gets std sigma[b] (0 = exact identity)."""
    n, c = x.shape[:2]
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    # sigma -> 1e-6 turns sigma 0 into a unit impulse rather than 0/0.
    kernel = torch.exp(-(taps**2) / (2 * sigma.clamp(min=1e-6).view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n*c, K]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = x.reshape(1, n * c, *x.shape[-2:])
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
    x = F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return x.view(n, c, *x.shape[-2:])


@DEGRADATIONS.register(
    "blind",
    help="per-image random mix of gaussian/poisson/blur/exposure at random severity in [0, severity] "
    "(1-max_ops ops per image, random order); weights gaussian=,poisson=,blur=,exposure= (0 = off)",
)
class Blind(Degradation):
    """Blind-restoration training mix: every image gets its own random corruption types and strengths.

    Why: a restorer trained on one fixed degradation overfits to it; the "blind" setting of the
    restoration papers trains on a mix so the enhancer must infer what happened to each image.
    Per image, 1..max_ops distinct types are drawn (without replacement, with probability
    proportional to the weights `gaussian`, `poisson`, `blur`, `exposure`; 0 leaves a type out) and
    applied in the drawn order, each at its own severity s uniform in [0, severity]:
    gaussian std 0.2 s; Poisson peak 10 / s^2 (so shot-noise std at a given intensity also grows
    linearly in s; s = 0 is noise-free); blur std 2 s pixels; exposure gamma 2.5 ** s or 2.5 ** -s
    (under or over, equally likely, so gamma is log-uniform in [1/2.5, 2.5] at severity 1).
    The ops run vectorised over the images sharing a type in each slot, not image by image.
    """

    name = "blind"

    def __init__(
        self,
        severity: float = 1.0,
        max_ops: int = 2,
        gaussian: float = 1.0,
        poisson: float = 1.0,
        blur: float = 1.0,
        exposure: float = 1.0,
    ) -> None:
        self.severity = _number(self.name, "severity", severity)
        ok = isinstance(max_ops, numbers.Real) and not isinstance(max_ops, bool) and math.isfinite(max_ops)
        if not (ok and max_ops >= 1 and float(max_ops).is_integer()):
            raise GradpromError(f"degradation 'blind': max_ops must be a whole number >= 1, got {max_ops!r}")
        self.max_ops = int(max_ops)
        given = dict(zip(BLIND_TYPES, (gaussian, poisson, blur, exposure), strict=True))
        self.weights = {key: _number(self.name, key, value) for key, value in given.items()}
        if not any(self.weights.values()):
            raise GradpromError(
                f"degradation 'blind': at least one of {', '.join(BLIND_TYPES)} must be > 0 (they are type weights)"
            )
        super().__init__(severity=self.severity, max_ops=self.max_ops, **self.weights)

    @property
    def slots(self) -> int:
        """Ops per image at most: max_ops, capped by how many types are enabled (types are not repeated)."""
        return min(self.max_ops, sum(w > 0 for w in self.weights.values()))

    def plan(self, batch: int, generator: torch.Generator | None, device: torch.device | str = "cpu") -> BlindPlan:
        """Draw every image's types, order and severities (fixed-shape draws, so the seed fixes them)."""
        slots = self.slots
        weights = torch.tensor(list(self.weights.values()), device=device, dtype=torch.float32)
        types = torch.multinomial(weights.expand(batch, -1), slots, replacement=False, generator=generator)
        count = torch.randint(1, slots + 1, (batch, 1), generator=generator, device=device)
        types = types.masked_fill(torch.arange(slots, device=device) >= count, -1)
        severity = torch.rand((batch, slots), generator=generator, device=device) * self.severity
        direction = torch.where(torch.rand((batch, slots), generator=generator, device=device) < 0.5, 1.0, -1.0)
        return BlindPlan(types, severity, direction)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        radius = math.ceil(3 * _BLIND_BLUR * self.severity)  # fixed, so an image's kernel ignores its batch-mates
        if self.weights["blur"] > 0 and radius >= min(x.shape[-2:]):
            raise GradpromError(
                f"degradation 'blind': severity={_fmt(self.severity)} allows blur sigma up to "
                f"{_fmt(_BLIND_BLUR * self.severity)}, too large for {x.shape[-2]}x{x.shape[-1]} images"
            )
        plan = self.plan(x.shape[0], generator, x.device)
        for slot in range(plan.types.shape[1]):
            for t, kind in enumerate(BLIND_TYPES):
                idx = (plan.types[:, slot] == t).nonzero().squeeze(1)
                if idx.numel() == 0:
                    continue
                s = plan.severity[idx, slot].to(x.dtype).view(-1, 1, 1, 1)
                part = x[idx]
                if kind == "gaussian":
                    noise = torch.randn(part.shape, generator=generator, device=x.device, dtype=x.dtype)
                    part = part + _BLIND_SIGMA * s * noise
                elif kind == "poisson":
                    peak = _BLIND_PEAK / s.clamp(min=1e-4) ** 2
                    noisy = torch.poisson(part.clamp(min=0.0) * peak, generator=generator) / peak
                    part = torch.where(s > 0, noisy, part)
                elif kind == "blur":
                    part = _blind_blur(part, _BLIND_BLUR * s.view(-1), radius) if radius else part
                else:
                    direction = plan.direction[idx, slot].to(x.dtype).view(-1, 1, 1, 1)
                    part = _exposure(part, _BLIND_GAMMA ** (direction * s))
                x = x.index_copy(0, idx, part)
        return x


def get_degradation(name: str, **params: Any) -> Degradation:
    """Build degradation `name`; unknown names or parameters and bad values give a one-line error."""
    return DEGRADATIONS.create(name, **params)


def degradation_names() -> list[str]:
    """Registered degradation names, sorted."""
    return DEGRADATIONS.names()


_SPEC = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?::(.*)|\((.*)\))?\s*$")
_EXAMPLE = "expected e.g. 'gaussian:sigma=0.15' or 'composite:blur=1.0,peak=30,sigma=0.05'"


def parse_degradation(spec: str) -> Degradation:
    """Turn a CLI spec ('name', 'name:k=v,k=v' or describe()'s 'name(k=v, k=v)') into a Degradation."""
    match = _SPEC.match(spec or "")
    if not match:
        raise GradpromError(f"bad degradation spec {spec!r}; {_EXAMPLE}")
    name, args = match.group(1), match.group(2) if match.group(2) is not None else match.group(3)
    if name not in DEGRADATIONS:
        raise unknown_name("degradation", name, degradation_names())
    params: dict[str, int | float] = {}
    items = args.split(",") if args and args.strip() else []  # 'gaussian', 'gaussian:', 'none()' = defaults
    for item in items:
        key, raw = split_pair(item, f"bad degradation spec {spec!r}: '{item.strip()}' is not key=value; {_EXAMPLE}",
                              empty_value=False)
        if key in params:
            raise GradpromError(f"bad degradation spec {spec!r}: '{key}' is given twice")
        value = parse_value(raw)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GradpromError(f"bad degradation spec {spec!r}: {key}={raw} is not a number")
        params[key] = value
    return get_degradation(name, **params)
