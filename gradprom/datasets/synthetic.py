"""The built-in `synthetic` dataset: organ-like greyscale images whose label lives in fine detail.

Why this design: task-driven enhancement only matters when the degradation destroys what the
recognizer needs. Here the class (normal / lesions / vessels) is decided by 1-2 px structures of
low contrast (0.15-0.25, about one noise sigma), while everything coarse (organ size, position,
brightness, background) is random and uninformative. Gaussian noise of sigma ~0.15 therefore hurts
recognition, and a denoiser that keeps fine detail can win it back. No download, deterministic by
seed, and fast (the whole batch is generated with vectorised numpy).

Structure sizes are in pixels, not fractions of the image, so "fine" stays fine at every size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from gradprom.datasets.base import Split, TaskData, check_count, register_dataset

CLASS_NAMES = ["normal", "lesions", "vessels"]
SEG_NAMES = ["background", "organ", "fine structure"]
MAX_LESIONS = 5
MAX_VESSELS = 3
CONTRAST = (0.15, 0.25)  # |intensity change| of lesions and vessels: 1-1.7x a sigma=0.15 noise
GRAIN = 0.03  # std of pixel-scale tissue grain, so "any fine detail" is not the label

# Maps organ (unit-ellipse) coordinates u, v [k, ...] to pixel x, y for k chosen images.
ToPixels = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _smooth_field(rng: np.random.Generator, n: int, size: int, sigma_px: float) -> np.ndarray:
    """Smooth random texture: Gaussian-filtered white noise, unit std per image, float32 [n, size, size].

    White noise has i.i.d. complex Gaussian Fourier coefficients, so we draw those directly and pay
    for one inverse FFT only (periodic boundaries are invisible in a texture).
    """
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    lowpass = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fy**2 + fx**2)).astype(np.float32)
    spectrum = rng.standard_normal((n, size, size // 2 + 1, 2), dtype=np.float32).view(np.complex64)
    field = np.fft.irfft2(spectrum[..., 0] * lowpass, s=(size, size))
    field -= field.mean(axis=(1, 2), keepdims=True)
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-8
    return np.clip(field, -2.5, 2.5)  # bounded, so intensities stay roughly within [0.1, 0.9]


def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """One uniform float32 value per image, shaped (n, 1, 1) to broadcast over [n, H, W]."""
    return rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)


def _lesions(
    rng: np.random.Generator, size: int, to_pixels: ToPixels, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """2-5 round spots of radius 1-2 px, each bright or dark, well inside the organ.

    Returns (intensity change, mask), both [n, size, size].
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shape = (n, MAX_LESIONS)
    count = rng.integers(2, MAX_LESIONS + 1, (n, 1, 1))
    rad, ang = 0.7 * np.sqrt(rng.uniform(0, 1, shape)), rng.uniform(0, 2 * np.pi, shape)
    cx, cy = to_pixels(rad * np.cos(ang), rad * np.sin(ang))
    radius = rng.uniform(1.0, 2.0, shape)
    amp = rng.uniform(*CONTRAST, shape) * rng.choice([-1.0, 1.0], shape)
    delta = np.zeros((n, size, size))
    mask = np.zeros((n, size, size), bool)
    for j in range(MAX_LESIONS):
        dist = np.hypot(xx - cx[:, j, None, None], yy - cy[:, j, None, None])
        disc = np.clip(radius[:, j, None, None] + 0.5 - dist, 0.0, 1.0) * (j < count)  # anti-aliased
        spot = amp[:, j, None, None] * disc
        delta = np.where(np.abs(spot) > np.abs(delta), spot, delta)  # overlaps don't stack contrast
        mask |= disc >= 0.5
    return delta, mask


def _vessels(
    rng: np.random.Generator, size: int, to_pixels: ToPixels, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """1-3 one-pixel-wide curves (quadratic Beziers across the organ), each bright or dark."""
    shape = (n, MAX_VESSELS)
    count = rng.integers(1, MAX_VESSELS + 1, (n, 1))
    start = rng.uniform(0, 2 * np.pi, shape)
    end = start + np.pi + rng.uniform(-0.9, 0.9, shape)
    r0, r2 = rng.uniform(0.55, 0.75, shape), rng.uniform(0.55, 0.75, shape)
    ctrl_r, ctrl_a = 0.5 * np.sqrt(rng.uniform(0, 1, shape)), rng.uniform(0, 2 * np.pi, shape)
    amp = rng.uniform(*CONTRAST, shape) * rng.choice([-1.0, 1.0], shape)
    # Points every <= 0.5 px along each curve, in organ coordinates, then rounded to pixels.
    t = np.linspace(0.0, 1.0, 4 * size)
    w0, w1, w2 = (1 - t) ** 2, 2 * (1 - t) * t, t**2
    u = w0 * (r0 * np.cos(start))[..., None] + w1 * (ctrl_r * np.cos(ctrl_a))[..., None]
    v = w0 * (r0 * np.sin(start))[..., None] + w1 * (ctrl_r * np.sin(ctrl_a))[..., None]
    px, py = to_pixels(u + w2 * (r2 * np.cos(end))[..., None], v + w2 * (r2 * np.sin(end))[..., None])
    ix = np.clip(np.rint(px), 0, size - 1).astype(np.int64)
    iy = np.clip(np.rint(py), 0, size - 1).astype(np.int64)
    flat = np.arange(n)[:, None, None] * size * size + iy * size + ix  # [n, curve, point]
    delta = np.zeros((n, size * size))
    mask = np.zeros((n, size * size), bool)
    for j in range(MAX_VESSELS):
        line = np.zeros(n * size * size, bool)
        line[flat[:, j][(j < count)[:, 0]].ravel()] = True
        line = line.reshape(n, size * size)
        delta = np.where(line, amp[:, j, None], delta)  # crossings keep one curve's contrast
        mask |= line
    return delta.reshape(n, size, size), mask.reshape(n, size, size)


def generate(n: int, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw `n` images: (images float32 [n, S, S] in [0, 1], labels int64 [n], masks int64 [n, S, S])."""
    s = image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)

    # Classes are balanced (to within one image) and shuffled.
    labels = rng.permutation(np.arange(n) % 3).astype(np.int64)

    # Organ: a rotated ellipse with a low-order wobble of its outline and a soft edge.
    cx, cy = s / 2 + _u(rng, -0.1, 0.1, n) * s, s / 2 + _u(rng, -0.1, 0.1, n) * s
    a, b = _u(rng, 0.26, 0.38, n) * s, _u(rng, 0.22, 0.32, n) * s
    theta = _u(rng, 0.0, np.pi, n)
    cos, sin = np.cos(theta), np.sin(theta)
    u = ((xx - cx) * cos + (yy - cy) * sin) / a
    v = (-(xx - cx) * sin + (yy - cy) * cos) / b
    phi = np.arctan2(v, u)
    outline = 1.0 + sum(_u(rng, -0.06, 0.06, n) * np.cos(k * phi + _u(rng, 0, 7, n)) for k in (2, 3))
    edge_px = _u(rng, 1.0, 2.5, n)
    alpha = 1.0 / (1.0 + np.exp((np.hypot(u, v) - outline) * np.minimum(a, b) / edge_px))

    # Intensities: shared slow shading, background and organ textures, and grain everywhere.
    shading = 0.05 * _smooth_field(rng, n, s, 6.0)
    bg_level = _u(rng, 0.25, 0.35, n)
    background = bg_level + shading + 0.02 * _smooth_field(rng, n, s, 2.0)
    organ = bg_level + _u(rng, 0.12, 0.25, n) + shading + 0.025 * _smooth_field(rng, n, s, 1.0)
    image = background + (organ - background) * alpha + GRAIN * _smooth_field(rng, n, s, 0.6)
    fine = np.zeros((n, s, s), bool)

    def to_pixels_of(idx: np.ndarray) -> ToPixels:
        """Inverse of the (u, v) map above, for the images `idx`."""

        def to_pixels(uu: np.ndarray, vv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ka, kb, kc, ks, x0, y0 = (
                p[idx].reshape(-1, *[1] * (uu.ndim - 1)) for p in (a, b, cos, sin, cx, cy)
            )
            return x0 + ka * uu * kc - kb * vv * ks, y0 + ka * uu * ks + kb * vv * kc

        return to_pixels

    for label, draw in ((1, _lesions), (2, _vessels)):
        idx = np.flatnonzero(labels == label)
        delta, mask = draw(rng, s, to_pixels_of(idx), len(idx))
        image[idx] += delta
        fine[idx] |= mask

    masks = np.where(fine, 2, np.where(alpha >= 0.5, 1, 0)).astype(np.int64)
    return np.clip(image, 0.0, 1.0).astype(np.float32), labels, masks


@register_dataset(
    "synthetic",
    tasks=("classification", "segmentation"),
    help="procedural organ images; class/mask decided by 1-2 px lesions or vessels (no download)",
)
def synthetic(
    task: str, image_size: int, seed: int, n_train: int = 512, n_val: int = 128, n_test: int = 128
) -> TaskData:
    """Build the synthetic dataset; each split has its own seeded stream, so counts don't leak across.

    Both tasks share generation: for one seed, the segmentation images equal the classification ones.
    """
    named = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    counts = [check_count("synthetic", k, v) for k, v in named.items()]
    streams = np.random.SeedSequence(seed).spawn(3)
    splits = []
    for count, stream in zip(counts, streams, strict=True):
        images, labels, masks = generate(count, image_size, np.random.default_rng(stream))
        targets = labels if task == "classification" else masks
        splits.append(Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(targets)))
    return TaskData(
        name="synthetic",
        task=task,
        num_classes=3,
        channels=1,
        image_size=image_size,
        class_names=list(CLASS_NAMES if task == "classification" else SEG_NAMES),
        train=splits[0],
        val=splits[1],
        test=splits[2],
    )
