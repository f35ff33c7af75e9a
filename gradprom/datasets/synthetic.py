"""The built-in `synthetic` dataset: organ-like greyscale images whose label lives in how fine detail is arranged.

Why this design: task-driven enhancement only matters when the degradation destroys what the
recognizer needs, and a benchmark is only worth something if no shortcut solves it. So every image,
whatever its class, holds the same fine structures: four round spots (radius 1.5-2.1 px) and three short
2 px wide curves, all of one per-image contrast and sign-balanced, on tissue grain of their scale, with a
per-image sharpness (scanners differ). What decides the class is their arrangement, as in real pathology
(clustered vs scattered calcifications, a branching vessel vs loose fibres):

- `normal`: the spots lie scattered (at least 11 px apart) and the three curves lie apart;
- `cluster`: three of the spots form a tight cluster (about 6 px apart), the fourth scattered;
- `branching`: the three curves meet at one junction (a Y), the spots scattered.

Counts, sizes, contrasts, signs and placement are drawn the same way for every class, so no global
statistic of an image (intensity, local contrast, high-pass energy: max, mean, spread) tells the class;
tests/test_synthetic.py holds threshold and logistic probes on such statistics to chance. The contrast
(0.30-0.45) is 2-3 sigma of the default noise per pixel, but the arrangement lives in a few pixels, so
noise of sigma ~0.15 hides it from a recognizer trained on clean images, and an enhancer that keeps fine
detail can win it back. No download, deterministic by seed, vectorised numpy.

Segmentation shares the images: background, organ, and `finding`: the pixels of every spot and curve, the fine
detail itself (as lesion or vessel segmentation marks every calcification or vessel, not only a suspicious
arrangement of them). About 5 % of the pixels; the clean-trained reference UNet finds them (finding IoU 0.90,
Dice 0.95 on clean test images, 48 px) and loses them under noise (IoU 0.40 at σ = 0.1, 0.18 at σ = 0.15), so
the segmentation task carries the signal a task-driven enhancer can win back. (Earlier versions marked only
the cluster's spots and the branching curves, which no small segmenter learnt: finding IoU near 0.)
Structure sizes are in pixels, not fractions of the image, so "fine" stays fine at every size; below
~40 px the layout gets crowded and the spacing rules are kept only as far as the room allows.
"""

from __future__ import annotations

import numpy as np
import torch

from gradprom.datasets.base import Split, TaskData, check_count, register_dataset

CLASS_NAMES = ["normal", "cluster", "branching"]
SEG_NAMES = ["background", "organ", "finding"]
N_SPOTS = 4  # per image, every class; a cluster is CLUSTER_SPOTS of them
CLUSTER_SPOTS = 3
N_CURVES = 3  # per image, every class; apart, or the three arms of one junction
SPOT_RADIUS = (1.5, 2.1)  # px
CLUSTER_RING = (3.3, 3.7)  # px from the cluster's centre to its spots: neighbours ~6 px apart
SPOT_GAP = 11.0  # px: scattered spots are at least this far apart (centre to centre)
CURVE_LENGTH = (6.0, 9.0)  # px, each curve or arm
CONTRAST = (0.30, 0.45)  # per image (x0.85-1.15 per structure), sign per structure: 2-3 sigma of 0.15 noise
GRAIN = (0.0, 0.05)  # per-image std of pixel-scale tissue grain, the structures' scale
FOCUS = (0.0, 0.9)  # per-image Gaussian blur (px) of the whole image: scanners differ in sharpness
LINE_WIDTH = 2  # px
ARM_START = 1.25  # px: arms start this far out from the junction (they still touch there)
PLACEMENT_TRIES = 48
PLACEMENT_MARGIN = 5.0  # px: the centres lie within 0.43 S - this of the image centre

# Object kinds placed in an image: their exclusion radius keeps unrelated objects from touching.
NONE, SPOT, CLUSTER, CURVE, TREE = range(5)


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


def _blur(images: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Each image [n, S, S] blurred by its own Gaussian of std `sigma_px` [n] (in Fourier space, periodic)."""
    size = images.shape[-1]
    f2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2
    transfer = np.exp(-2.0 * np.pi**2 * sigma_px[:, None, None] ** 2 * f2)
    return np.fft.irfft2(np.fft.rfft2(images) * transfer, s=(size, size))


def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """One uniform float32 value per image, shaped (n, 1, 1) to broadcast over [n, H, W]."""
    return rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)


def _layout(labels: np.ndarray) -> np.ndarray:
    """The kinds of objects each image holds, largest first (they are placed in this order): int [n, 8]."""
    rows = {
        0: [CURVE, CURVE, CURVE] + [SPOT] * N_SPOTS,
        1: [CURVE, CURVE, CURVE, CLUSTER] + [SPOT] * (N_SPOTS - CLUSTER_SPOTS) + [NONE] * (CLUSTER_SPOTS - 1),
        2: [TREE, NONE, NONE] + [SPOT] * N_SPOTS,
    }
    return np.array([rows[int(k)] for k in range(3)])[labels]


def _place(rng: np.random.Generator, kinds: np.ndarray, reach: np.ndarray, size: int) -> np.ndarray:
    """Centres [n, k, 2] (x, y in px) for objects of exclusion radii `reach` [n, k], inside a central disc.

    Objects are placed one after another, each at the first of PLACEMENT_TRIES random candidates that keeps
    every placed object at least the sum of the two radii away (or, if none does, at the candidate that
    comes closest), so unrelated structures never touch and scattered spots never form a chance cluster.
    """
    n, k = kinds.shape
    # One disc for every kind's centre, so no kind lies more centrally (on the organ) than another.
    radius = np.full(reach.shape, 0.43 * size - PLACEMENT_MARGIN)
    rad = np.sqrt(rng.uniform(0, 1, (n, k, PLACEMENT_TRIES))) * np.maximum(radius, 1.0)[..., None]
    ang = rng.uniform(0, 2 * np.pi, (n, k, PLACEMENT_TRIES))
    cand = size / 2 - 0.5 + np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1)  # [n, k, tries, 2]
    centres = np.zeros((n, k, 2))
    order = -np.arange(PLACEMENT_TRIES)  # prefer the first fitting candidate: placement stays uniform
    for j in range(k):
        slack = np.full((n, PLACEMENT_TRIES), np.inf)
        for i in range(j):
            dist = np.linalg.norm(cand[:, j] - centres[:, i, None], axis=-1)
            gap = np.where((kinds[:, i] != NONE)[:, None], dist - reach[:, i, None] - reach[:, j, None], np.inf)
            slack = np.minimum(slack, gap)
        score = np.where(slack >= 0, 1e6 + order, np.minimum(slack, 1e5))
        centres[:, j] = cand[:, j][np.arange(n), score.argmax(1)]
    return centres


def _discs(size: int, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray,
           amp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased discs, m per image ([n, m] parameters).

    Returns (intensity change [n, S, S], mask [n, m, S, S] of each disc's pixels)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - cx[..., None, None].astype(np.float32), yy - cy[..., None, None].astype(np.float32))
    cover = np.clip(radius[..., None, None] + 0.5 - dist, 0.0, 1.0).astype(np.float32)
    delta = np.einsum("nm,nmyx->nyx", amp.astype(np.float32), cover)  # the discs never overlap, by placement
    return delta, cover >= 0.5


def _curves(rng: np.random.Generator, size: int, start: np.ndarray, angle: np.ndarray, length: np.ndarray,
            amp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-pixel-wide gently bent curves (quadratic Beziers) from `start` [n, m, 2] along `angle` [n, m].

    Returns (intensity change [n, S, S], mask [n, m, S, S] of each curve's pixels)."""
    n, m = angle.shape
    d = np.stack([np.cos(angle), np.sin(angle)], -1)
    normal = np.stack([-d[..., 1], d[..., 0]], -1)
    end = start + d * length[..., None]
    ctrl = (start + end) / 2 + normal * (rng.uniform(-0.2, 0.2, (n, m)) * length)[..., None]
    t = np.linspace(0.0, 1.0, 4 * int(CURVE_LENGTH[1] + 1))[:, None]  # <= 0.25 px steps
    pts = ((1 - t) ** 2 * start[..., None, :] + 2 * (1 - t) * t * ctrl[..., None, :] + t**2 * end[..., None, :])
    # A LINE_WIDTH-px square stamp at every point: 1 px wide curves are pixels rounded from the points.
    step = np.arange(LINE_WIDTH) - (LINE_WIDTH - 1) / 2
    ix = np.clip(np.rint(pts[..., 0, None, None] + step[:, None]), 0, size - 1).astype(np.int64)
    iy = np.clip(np.rint(pts[..., 1, None, None] + step[None, :]), 0, size - 1).astype(np.int64)
    flat = (np.arange(n * m).reshape(n, m, 1, 1, 1) * size + iy) * size + ix  # [n, m, points, w, w]
    lines = np.zeros(n * m * size * size, bool)
    lines[flat.ravel()] = True
    lines = lines.reshape(n, m, size, size)
    delta = np.where(lines, amp[..., None, None], 0.0)
    pick = np.abs(delta).argmax(1)[:, None]  # a junction pixel keeps its strongest arm's contrast
    return np.take_along_axis(delta, pick, 1)[:, 0], lines


def _active(values: np.ndarray, on: np.ndarray, m: int) -> np.ndarray:
    """The `m` entries of each image whose `on` is set (every image has exactly m), in order: [n, m]."""
    n = len(values)
    idx = np.argsort(~on.reshape(n, -1), axis=1, kind="stable")[:, :m]
    return np.take_along_axis(np.asarray(values).reshape(n, -1), idx, 1)


def _structures(rng: np.random.Generator, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The fine structures of every image: (intensity change [n, S, S], finding mask [n, S, S])."""
    n = len(labels)
    kinds = _layout(labels)
    k = kinds.shape[1]
    contrast = rng.uniform(*CONTRAST, (n, 1))
    lengths = rng.uniform(*CURVE_LENGTH, (n, k, N_CURVES))
    reach = np.select(
        [kinds == SPOT, kinds == CLUSTER, kinds == CURVE, kinds == TREE],
        [SPOT_GAP / 2, CLUSTER_RING[1] + SPOT_GAP / 2 + 1.0, lengths[..., 0] / 2 + 1.5, lengths.max(-1) + 1.5],
        0.0,
    )
    centres = _place(rng, kinds, reach, size)
    sign = lambda *shape: rng.choice([-1.0, 1.0], shape)  # noqa: E731
    jitter = lambda *shape: rng.uniform(0.85, 1.15, shape)  # noqa: E731

    # Spots: one per SPOT object, CLUSTER_SPOTS on a jittered ring per CLUSTER object.
    ring = rng.uniform(*CLUSTER_RING, (n, k, CLUSTER_SPOTS))
    turn = rng.uniform(0, 2 * np.pi, (n, k, 1)) + 2 * np.pi / CLUSTER_SPOTS * np.arange(CLUSTER_SPOTS)
    turn = turn + rng.uniform(-0.25, 0.25, turn.shape)
    in_cluster = (kinds == CLUSTER)[..., None]
    sx = centres[..., 0, None] + np.where(in_cluster, ring * np.cos(turn), 0.0)
    sy = centres[..., 1, None] + np.where(in_cluster, ring * np.sin(turn), 0.0)
    spot_on = np.where(in_cluster, True, (kinds == SPOT)[..., None] & (np.arange(CLUSTER_SPOTS) == 0))
    spot_x, spot_y, spot_in = (_active(p, spot_on, N_SPOTS) for p in (sx, sy, np.broadcast_to(in_cluster, sx.shape)))
    shape = (n, N_SPOTS)
    spots, spot_masks = _discs(size, spot_x, spot_y, rng.uniform(*SPOT_RADIUS, shape),
                               contrast * jitter(*shape) * sign(*shape))

    # Curves: a CURVE object is one curve through its centre; a TREE is three arms from its centre.
    is_tree = (kinds == TREE)[..., None]
    arm = rng.uniform(0, 2 * np.pi, (n, k, 1)) + 2 * np.pi / N_CURVES * np.arange(N_CURVES)
    angle = np.where(is_tree, arm + rng.uniform(-0.35, 0.35, arm.shape), arm[..., :1])
    # Arms start ARM_START px out from the junction, so a tree has as many curve pixels as loose curves.
    offset = np.where(is_tree, ARM_START, -lengths / 2)[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    start = centres[:, :, None, :] + offset
    curve_on = np.where(is_tree, True, (kinds == CURVE)[..., None] & (np.arange(N_CURVES) == 0))
    arm_sign = sign(n, 1, 1)  # all curves of an image share their sign, a tree's arms as loose curves
    curve_amp = contrast[..., None] * jitter(n, k, N_CURVES) * arm_sign
    curve_x, curve_y, curve_angle, curve_length, curve_amp, curve_tree = (
        _active(p, curve_on, N_CURVES) for p in (start[..., 0], start[..., 1], angle, lengths, curve_amp,
                                                 np.broadcast_to(is_tree, angle.shape)))
    lines, line_masks = _curves(rng, size, np.stack([curve_x, curve_y], -1), curve_angle, curve_length, curve_amp)

    delta = np.where(np.abs(lines) > np.abs(spots), lines, spots)
    finding = spot_masks.any(1) | line_masks.any(1)
    return delta, finding


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
    grain = _u(rng, *GRAIN, n) * _smooth_field(rng, n, s, 0.6)
    delta, finding = _structures(rng, labels, s)
    image = _blur(background + (organ - background) * alpha + grain + delta, rng.uniform(*FOCUS, n))

    masks = np.where(finding, 2, np.where(alpha >= 0.5, 1, 0)).astype(np.int64)
    return np.clip(image, 0.0, 1.0).astype(np.float32), labels, masks


@register_dataset(
    "synthetic",
    tasks=("classification", "segmentation"),
    dihedral_invariant=True,  # a finding is an arrangement of spots and curves, whichever way the image is turned
    help="procedural organ images; class/mask decided by how 1-2 px spots and curves are arranged (no download)",
)
def synthetic(
    task: str, image_size: int, seed: int, n_train: int = 512, n_val: int = 256, n_test: int = 1024
) -> TaskData:
    """Build the synthetic dataset; each split has its own seeded stream, so counts don't leak across. The test
    split is large because it is cheap (generated, scored once per trial) and it is what results rank by: an
    accuracy near 0.8 over 1024 images has a binomial standard error of 0.012 (0.035 over 128).

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
