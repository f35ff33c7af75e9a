"""Enhancement models: the network whose parameters θ the gradient strategies steer.

Enhancers are residual around a fixed up-sampler (identity at scale 1) and start out as that
up-sampler, because trials are short: an enhancer that first has to learn the identity wastes
most of its budget, and the comparison between strategies would be about that, not about them.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradprom.errors import GradpromError

SCALES = (1, 2, 4)


def check_int(
    model: str,
    key: str,
    value: object,
    *,
    lo: int = 1,
    hi: int | None = None,
    choices: Collection[int] | None = None,
) -> int:
    """Validate one integer model option; shared by the model modules so messages read the same."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if choices is not None:
        if not ok or value not in choices:
            valid = ", ".join(str(c) for c in choices)
            raise GradpromError(f"{model}: {key} must be one of {valid}, got {value!r}")
    elif not ok or value < lo or (hi is not None and value > hi):
        want = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise GradpromError(f"{model}: {key} must be an integer {want}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def pixel_shuffle_upsampler(channels: int, scale: int) -> nn.Sequential:
    """×scale (1, 2 or 4) by ×2 pixel-shuffle stages, each conv → shuffle → PReLU (SRResNet's upsampler)."""
    ups: list[nn.Module] = []
    for _ in range({1: 0, 2: 1, 4: 2}[scale]):
        ups += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(channels)]
    return nn.Sequential(*ups)


def near_identity_tail(channels: int, out_channels: int, init_scale: float) -> nn.Conv2d:
    """The output conv, its weights scaled down and bias zero: the residual starts near 0, the model near its
    fixed base path (identity or bicubic upsampling)."""
    tail = nn.Conv2d(channels, out_channels, 3, padding=1)
    with torch.no_grad():
        tail.weight.mul_(init_scale)
        tail.bias.zero_()
    return tail


class ResidualBlock(nn.Module):
    """conv–PReLU–conv plus skip, without BatchNorm: BN couples the images of a batch (so
    per-loss gradients would mix samples) and EDSR showed it hurts restoration quality."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class SRResNet(nn.Module):
    """SRResNet/EDSR-style enhancer: output = upsample(input) + learned residual.

    One model covers denoising/restoration (scale 1) and super-resolution (scale 2, 4). The
    tail conv gets a tiny (not zero) init, so the untrained model is within a few 1e-3 of
    the identity/bicubic up-sampler yet every parameter already receives a gradient on step one
    (a zero tail would leave the whole body with zero gradient, and zero cosines, at first).
    """

    TAIL_INIT_SCALE = 1e-2

    def __init__(self, in_channels: int = 1, blocks: int = 8, channels: int = 32, scale: int = 1) -> None:
        super().__init__()
        self.in_channels = check_int("srresnet", "in_channels", in_channels)
        check_int("srresnet", "blocks", blocks)
        check_int("srresnet", "channels", channels)
        self.scale = check_int("srresnet", "scale", scale, choices=SCALES)
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.PReLU(channels))
        self.body = nn.Sequential(
            *(ResidualBlock(channels) for _ in range(blocks)),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.upsample = pixel_shuffle_upsampler(channels, scale)
        self.tail = near_identity_tail(channels, in_channels, self.TAIL_INIT_SCALE)

    def base(self, x: Tensor) -> Tensor:
        """The fixed path the network learns a residual to: identity, or bicubic up-sampling."""
        if self.scale == 1:
            return x
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        # No clamp: clamping would zero the gradient wherever the output leaves [0, 1].
        feat = self.head(x)
        feat = feat + self.body(feat)
        return self.base(x) + self.tail(self.upsample(feat))


def srresnet(in_channels: int = 1, blocks: int = 8, channels: int = 32, scale: int = 1) -> SRResNet:
    """SRResNet enhancer (no BatchNorm, global residual, starts near the identity/bicubic)."""
    return SRResNet(in_channels=in_channels, blocks=blocks, channels=channels, scale=scale)
