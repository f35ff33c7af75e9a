"""The enhancer's image loss L_IP: supervised against the clean image, or self-supervised from the observation alone.

Real scans come without a clean twin, so L_IP may be self-supervised; each loss is one registry entry, chosen by
the trial setting `loss_ip` and searchable like any other. A loss gets the step's observation `y` (the degraded
input), the step's enhanced image `x_hat = f(y)` (with its graph), the enhancer `f` for a forward of its own,
the clean image (None when the trial never reads one) and the step's generator; it returns the loss and the
enhanced image it was measured through (`x_hat`, or its own forward's output), so every gradient strategy takes
g_ip = ∇θ L_IP through that image exactly as it does for the supervised loss.

Noise assumptions (README, "No clean target"): Neighbor2Neighbor and Noise2Self need noise that is independent
from pixel to pixel with zero mean (Gaussian, Poisson); R2R needs Gaussian noise of known σ. Where a scan's
noise is correlated (reconstruction kernels, demosaicing, ultrasound speckle), neighbouring pixels share it and
the losses learn to keep it: subsample or pixel-shuffle the scans first, or keep a supervised loss on phantoms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gradprom.errors import GradpromError
from gradprom.registry import Meta, Registry
from gradprom.settings import Setting

#: (f, y, x_hat, clean or None, generator) → (L_IP, the enhanced image it went through)
ImageLoss = Callable[[Callable[[Tensor], Tensor], Tensor, Tensor, "Tensor | None", torch.Generator],
                     tuple[Tensor, Tensor]]


@dataclass(frozen=True, kw_only=True)
class ImageLossMeta(Meta):
    """An image loss's entry: whether it needs the clean image (`supervised`), and what it assumes of the noise."""

    supervised: bool
    noise: str = ""


IMAGE_LOSSES: Registry[tuple[Tensor, Tensor], ImageLossMeta] = Registry("image loss", ImageLossMeta)


def _clean(clean: Tensor | None, name: str) -> Tensor:
    if clean is None:
        raise GradpromError(f"loss_ip={name} compares with the clean image, which this trial does not read "
                            "(clean_targets=false); use a self-supervised loss: neighbor2neighbor, noise2self, r2r")
    return clean


@IMAGE_LOSSES.register("l1", supervised=True, help="mean |f(y) − x| against the clean image x")
def l1(f: Callable[[Tensor], Tensor], y: Tensor, x_hat: Tensor, clean: Tensor | None,
       gen: torch.Generator) -> tuple[Tensor, Tensor]:
    return F.l1_loss(x_hat, _clean(clean, "l1")), x_hat


@IMAGE_LOSSES.register("mse", supervised=True, help="mean (f(y) − x)² against the clean image x")
def mse(f: Callable[[Tensor], Tensor], y: Tensor, x_hat: Tensor, clean: Tensor | None,
        gen: torch.Generator) -> tuple[Tensor, Tensor]:
    return F.mse_loss(x_hat, _clean(clean, "mse")), x_hat


#: the eight ordered pairs of 4-neighbours in a 2×2 cell (positions 0 1 / 2 3), as Neighbor2Neighbor draws them
NEIGHBOUR_PAIRS = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 3], [1, 0], [2, 0], [3, 1], [3, 2]])


def neighbour_subsamplers(shape: torch.Size, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per image and 2×2 cell, the positions (0…3) of two neighbouring pixels, one of the eight ordered pairs drawn
    uniformly: ([B, H/2, W/2], [B, H/2, W/2])."""
    b, _, h, w = shape
    pick = torch.randint(0, len(NEIGHBOUR_PAIRS), (b, h // 2, w // 2), generator=gen, device=gen.device)
    pairs = NEIGHBOUR_PAIRS.to(pick.device)[pick]
    return pairs[..., 0], pairs[..., 1]


def subsample(x: Tensor, position: Tensor) -> Tensor:
    """The sub-image holding, in each 2×2 cell, the pixel at `position` (0…3): [B, C, H/2, W/2]."""
    cells = F.pixel_unshuffle(x, 2)  # [B, C·4, H/2, W/2]: channel c·4 + k is cell position k of channel c
    b, c4, h2, w2 = cells.shape
    cells = cells.view(b, c4 // 4, 4, h2, w2)
    index = position[:, None, None].expand(b, c4 // 4, 1, h2, w2)
    return cells.gather(2, index).squeeze(2)


@IMAGE_LOSSES.register("neighbor2neighbor", supervised=False, noise="pixel-independent, zero-mean",
                       help="Neighbor2Neighbor (Huang et al. 2021): f(g1 y) ≈ g2 y, with the consistency term "
                            "weighted by n2n_gamma; no noise level needed",
                       settings=(Setting("n2n_gamma", 1.0, "neighbor2neighbor: weight γ of the consistency term",
                                         low=0),))
def neighbor2neighbor(f: Callable[[Tensor], Tensor], y: Tensor, x_hat: Tensor, clean: Tensor | None,
                      gen: torch.Generator, n2n_gamma: float = 1.0) -> tuple[Tensor, Tensor]:
    """‖f(g1 y) − g2 y‖² + γ‖f(g1 y) − g2 y − (g1 f̄(y) − g2 f̄(y))‖², f̄(y) = x_hat without its gradient."""
    if y.shape[-1] % 2 or y.shape[-2] % 2:
        raise GradpromError(f"neighbor2neighbor halves the image: its sides must be even, got {tuple(y.shape[-2:])}")
    first, second = neighbour_subsamplers(y.shape, gen)
    out = f(subsample(y, first)).float()
    diff = out - subsample(y, second)
    still = x_hat.detach()
    regulariser = diff - (subsample(still, first) - subsample(still, second))
    return diff.pow(2).mean() + n2n_gamma * regulariser.pow(2).mean(), out


def donut_mean(y: Tensor) -> Tensor:
    """Each pixel replaced by the mean of its 8 neighbours (reflect padding): what Noise2Self feeds in for a masked
    pixel, so the prediction there cannot see the pixel's own noise."""
    kernel = torch.ones(3, 3, device=y.device, dtype=y.dtype) / 8
    kernel[1, 1] = 0
    c = y.shape[1]
    return F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), kernel.expand(c, 1, 3, 3), groups=c)


def grid_mask(shape: torch.Size, grid: int, phase: int | Tensor, device: torch.device) -> Tensor:
    """The pixels (row % grid, column % grid) == divmod(phase, grid): a J-invariant set, [1, 1, H, W] of 0/1.
    `phase` may be a device tensor, so drawing it costs the step no host sync."""
    h, w = shape[-2:]
    rows = torch.arange(h, device=device) % grid == torch.div(phase, grid, rounding_mode="floor")
    cols = torch.arange(w, device=device) % grid == phase % grid
    return (rows[:, None] & cols[None, :]).float()[None, None]


@IMAGE_LOSSES.register("noise2self", supervised=False, noise="pixel-independent, zero-mean",
                       help="Noise2Self (Batson & Royer 2019): predict a grid of masked pixels from their neighbours",
                       settings=(Setting("n2s_grid", 4, "noise2self: spacing of the masked grid (1/grid² masked)",
                                         low=2, high=8),))
def noise2self(f: Callable[[Tensor], Tensor], y: Tensor, x_hat: Tensor, clean: Tensor | None,
               gen: torch.Generator, n2s_grid: int = 4) -> tuple[Tensor, Tensor]:
    """(f(y with the masked grid replaced by its neighbours' mean) − y)², averaged over the masked pixels."""
    phase = torch.randint(0, n2s_grid * n2s_grid, (), generator=gen, device=gen.device)  # stays on the device
    mask = grid_mask(y.shape, n2s_grid, phase, y.device)
    out = f(y * (1 - mask) + donut_mean(y) * mask).float()
    masked = mask.expand_as(out)
    return ((out - y) ** 2 * masked).sum() / masked.sum(), out


@IMAGE_LOSSES.register("r2r", supervised=False, noise="Gaussian of known σ",
                       help="Recorrupted-to-recorrupted (Pang et al. 2021): f(y + αz) ≈ y − z/α, z ~ N(0, σ²)",
                       settings=(Setting("r2r_alpha", 0.5, "r2r: the recorruption's α", above=0, high=10),
                                 Setting("r2r_sigma", 0.0, "r2r: the noise σ on [0, 1] images; 0: the "
                                         "degradation's own (gaussian:sigma=…)", low=0, high=1)))
def r2r(f: Callable[[Tensor], Tensor], y: Tensor, x_hat: Tensor, clean: Tensor | None,
        gen: torch.Generator, r2r_alpha: float = 0.5, r2r_sigma: float = 0.0) -> tuple[Tensor, Tensor]:
    """(f(y + α·z) − (y − z/α))², z ~ N(0, σ²I): an unbiased stand-in for the supervised MSE up to a constant."""
    if r2r_sigma <= 0:
        raise GradpromError("r2r needs the noise σ: set r2r_sigma, or use a gaussian:sigma=… degradation")
    z = torch.randn(y.shape, generator=gen, device=y.device, dtype=y.dtype) * r2r_sigma
    out = f(y + r2r_alpha * z).float()
    return F.mse_loss(out, y - z / r2r_alpha), out


def image_loss_names() -> list[str]:
    return IMAGE_LOSSES.names()


def supervised(kind: str, x_hat: Tensor, clean: Tensor) -> Tensor:
    """A supervised loss (`l1`, `mse`) of an enhanced image against its clean one, as the step takes it (for
    benchmarks that time a plain step beside gradprom's)."""
    if not IMAGE_LOSSES.meta(kind).supervised:
        raise GradpromError(f"loss_ip {kind} is self-supervised: it takes the enhancer, not a clean image")
    return IMAGE_LOSSES.get(kind)(None, x_hat, x_hat, clean, None)[0]
