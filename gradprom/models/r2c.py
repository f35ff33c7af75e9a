"""The restore-to-classify GAN's networks (R2C-GAN, Ahishali et al.): a generator that restores *and* classifies,
and a patch discriminator, each with operational (Self-ONN) or plain convolutional layers.

Generator (one class for both directions, poor → good and good → poor), on images in [-1, 1]:
strided conv 3×3 s2 → instance norm → one residual block → transposed conv 3×3 s2 back to full size → tanh.
The class head reads the bottleneck (after the residual block): global max pool → linear → class logits, so
the recognizer lives inside the restoring network and both train from one loss; nothing gates its gradient.

- `layers="operational"` (the paper's OpGenerator): op-convs of `q` powers; the residual block is
  tanh → reflect pad → op-conv → IN → tanh → reflect pad → op-conv → IN, output tanh(x + h): every op-conv
  reads a tanh or the [-1, 1] image, since powers grow fast outside [-1, 1].
- `layers="conv"` (the release's compact convolutional generator, CycleGAN-style blocks): the same topology
  with plain convolutions and ReLU: conv → IN → ReLU; block reflect pad → conv → IN → ReLU → reflect pad →
  conv → IN, output x + h. Small; the full 9-block CycleGAN ResNet is not built here.

Discriminator: conv 4×4 s2 → LeakyReLU 0.2 → conv 4×4 s`stride` → IN → LeakyReLU 0.2 → conv 4×4 s1 → a
1-channel patch map (LSGAN scores each patch). The paper uses stride 4 at layer 2 on 256 px images; the
default here is 2, so 32–64 px images still give a patch map of several patches (S/4 per side).

Channels: `channels` (the paper's 128 in the generator, 64/128 in the discriminator, are far too big for CPU
runs; the pipeline's default is 32). These models are internal to the `r2c_gan` pipeline, not registered.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradprom.errors import GradpromError
from gradprom.models.selfonn import OpConv2d, OpConvTranspose2d

LAYERS = ("operational", "conv")


def _conv(layers: str, q: int, c_in: int, c_out: int, k: int, stride: int = 1, padding: int | str = 0,
          bias: bool = True) -> nn.Module:
    """An op-conv of `q` powers, or a plain Conv2d for `layers="conv"`."""
    if layers == "conv":
        return nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=bias)
    return OpConv2d(c_in, c_out, k, stride=stride, padding=padding, q=q, bias=bias)


def _check(layers: str, channels: int, q: int) -> None:
    if layers not in LAYERS:
        raise GradpromError(f"r2c_gan: gan_layers must be one of {', '.join(LAYERS)}, got '{layers}'")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise GradpromError(f"r2c_gan: gan_channels must be an integer >= 1, got {channels!r}")


class ResidualBlock(nn.Module):
    """Two reflect-padded 3×3 convs with instance norm; tanh-bounded (operational) or ReLU (conv) as above."""

    def __init__(self, channels: int, layers: str, q: int) -> None:
        super().__init__()
        self.operational = layers == "operational"
        self.act = nn.Tanh() if self.operational else nn.ReLU()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), _conv(layers, q, channels, channels, 3, bias=False),
            nn.InstanceNorm2d(channels, affine=True), self.act,
            nn.ReflectionPad2d(1), _conv(layers, q, channels, channels, 3, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.operational:
            return (x + self.body(x.tanh())).tanh()
        return x + self.body(x)


class Generator(nn.Module):
    """Restores (or degrades) an image and classifies it from the bottleneck: `(image, logits) = G(x)`."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 32, q: int = 3,
                 layers: str = "operational") -> None:
        super().__init__()
        _check(layers, channels, q)
        self.down = nn.Sequential(_conv(layers, q, in_channels, channels, 3, stride=2, padding=1, bias=False),
                                  nn.InstanceNorm2d(channels, affine=True),
                                  *(() if layers == "operational" else (nn.ReLU(),)))
        self.block = ResidualBlock(channels, layers, q)
        self.head = nn.Linear(channels, num_classes)
        up = nn.ConvTranspose2d(channels, in_channels, 3, stride=2, padding=1, output_padding=1) \
            if layers == "conv" else OpConvTranspose2d(channels, in_channels, 3, stride=2, padding=1,
                                                       output_padding=1, q=q)
        self.up = nn.Sequential(up, nn.Tanh())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise GradpromError(f"r2c_gan generator: image sides must be even (one stride-2 layer), got "
                                f"{tuple(x.shape[-2:])}")
        h = self.block(self.down(x))
        logits = self.head(h.amax(dim=(2, 3)))  # global max pool over the bottleneck
        return self.up(h), logits


class Discriminator(nn.Module):
    """A patch discriminator: one real/fake score per patch, [B, 1, S/(2·stride), S/(2·stride)]."""

    def __init__(self, in_channels: int, channels: int = 32, q: int = 3, layers: str = "operational",
                 stride: int = 2) -> None:
        super().__init__()
        _check(layers, channels, q)
        self.factor = 2 * stride  # the image side must be a multiple of this
        self.net = nn.Sequential(
            _conv(layers, q, in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            _conv(layers, q, channels, 2 * channels, 4, stride=stride, padding=1, bias=False),
            nn.InstanceNorm2d(2 * channels, affine=True), nn.LeakyReLU(0.2),
            nn.ZeroPad2d((1, 2, 1, 2)), _conv(layers, q, 2 * channels, 1, 4),  # 'same' for an even kernel
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
