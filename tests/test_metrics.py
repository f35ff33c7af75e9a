"""Metrics against scikit-image (the reference) and hand-computed task scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from gradprom.metrics import (
    PSNR_MAX_DB,
    accuracy_counts,
    accuracy_of,
    bootstrap_interval,
    confusion_matrix,
    dice_from_confusion,
    dice_of,
    miou_from_confusion,
    miou_of,
    per_class_scores,
    per_image_confusions,
    psnr,
    ssim,
)


def clean_images(kind: str, channels: int, rng: np.random.Generator) -> np.ndarray:
    """[B, C, H, W] float64 in [0, 1]: uniform noise or structured (natural photo, gradients)."""
    b, h, w = 3, 48, 40
    if kind == "random":
        return rng.random((b, channels, h, w))
    photo = skdata.astronaut() if channels == 3 else skdata.camera()[..., None]
    photo = resize(photo / 255.0, (h, w), anti_aliasing=True).transpose(2, 0, 1)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    ramp = np.broadcast_to(0.5 + 0.5 * np.sin(6 * xx + 3 * yy), (channels, h, w))
    disk = np.broadcast_to(((yy - 0.4) ** 2 + (xx - 0.4) ** 2 < 0.05).astype(float), (channels, h, w))
    return np.stack([photo, ramp, disk])


def degrade(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(clean + sigma * rng.standard_normal(clean.shape), 0, 1)


CASES = [
    (kind, channels, sigma) for kind in ("random", "structured") for channels in (1, 3) for sigma in (0.01, 0.05, 0.2)
]


def sk_psnr(clean: np.ndarray, noisy: np.ndarray, data_range: float) -> np.ndarray:
    return np.array([peak_signal_noise_ratio(c, n, data_range=data_range) for c, n in zip(clean, noisy, strict=True)])


def sk_ssim(clean: np.ndarray, noisy: np.ndarray, data_range: float) -> np.ndarray:
    return np.array(
        [structural_similarity(c, n, data_range=data_range, channel_axis=0) for c, n in zip(clean, noisy, strict=True)]
    )


@pytest.mark.parametrize(("kind", "channels", "sigma"), CASES)
def test_psnr_matches_skimage(kind: str, channels: int, sigma: float) -> None:
    rng = np.random.default_rng(0)
    clean = clean_images(kind, channels, rng)
    noisy = degrade(clean, sigma, rng)
    ref = sk_psnr(clean, noisy, 1.0)
    got = psnr(torch.from_numpy(noisy), torch.from_numpy(clean))
    assert got.shape == (clean.shape[0],) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-4)
    got32 = psnr(torch.from_numpy(noisy).float(), torch.from_numpy(clean).float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.double().numpy(), ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize(("kind", "channels", "sigma"), CASES)
def test_ssim_matches_skimage(kind: str, channels: int, sigma: float) -> None:
    rng = np.random.default_rng(1)
    clean = clean_images(kind, channels, rng)
    noisy = degrade(clean, sigma, rng)
    ref = sk_ssim(clean, noisy, 1.0)
    got = ssim(torch.from_numpy(noisy), torch.from_numpy(clean))
    assert got.shape == (clean.shape[0],) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-6)
    got32 = ssim(torch.from_numpy(noisy).float(), torch.from_numpy(clean).float())
    np.testing.assert_allclose(got32.double().numpy(), ref, rtol=0, atol=1e-4)


def test_data_range_other_than_one() -> None:
    rng = np.random.default_rng(2)
    clean = clean_images("structured", 1, rng) * 255
    noisy = np.clip(clean + 10 * rng.standard_normal(clean.shape), 0, 255)
    x, y = torch.from_numpy(noisy), torch.from_numpy(clean)
    np.testing.assert_allclose(psnr(x, y, 255.0).numpy(), sk_psnr(clean, noisy, 255.0), atol=1e-4)
    np.testing.assert_allclose(ssim(x, y, 255.0).numpy(), sk_ssim(clean, noisy, 255.0), atol=1e-6)


def test_ssim_non_square_and_minimum_size() -> None:
    rng = np.random.default_rng(3)
    clean = rng.random((2, 1, 7, 30))
    noisy = degrade(clean, 0.1, rng)
    np.testing.assert_allclose(
        ssim(torch.from_numpy(noisy), torch.from_numpy(clean)).numpy(), sk_ssim(clean, noisy, 1.0), atol=1e-6
    )
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(1, 1, 6, 30), torch.rand(1, 1, 6, 30))


def test_identical_images_are_capped_not_infinite() -> None:
    x = torch.rand(2, 1, 16, 16)
    p = psnr(x, x.clone())
    assert torch.equal(p, torch.full((2,), PSNR_MAX_DB))
    assert torch.allclose(ssim(x, x.clone()), torch.ones(2, dtype=x.dtype))
    # Mixed batch: the capped image must not change the other image's value.
    y = x.clone()
    y[1] += 0.1
    p = psnr(x, y)
    assert p[0] == PSNR_MAX_DB and abs(p[1].item() - 20.0) < 1e-3


def test_per_image_values_are_independent_of_the_batch() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(psnr(x, y)[2:3], psnr(x[2:3], y[2:3]))
    torch.testing.assert_close(ssim(x, y)[2:3], ssim(x[2:3], y[2:3]))


def test_shape_checks() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        ssim(torch.rand(8, 8), torch.rand(8, 8))


def test_ssim_is_differentiable() -> None:
    """Usable as a loss term: gradients flow to the enhanced image."""
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    ssim(x, torch.rand(2, 1, 16, 16)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --- task metrics ---------------------------------------------------------------------------


def test_accuracy_counts() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 2])
    assert accuracy_counts(logits, targets) == (2, 4)
    assert accuracy_counts(logits[:0], targets[:0]) == (0, 0)
    # Accumulating batch by batch gives the split's exact totals.
    parts = [accuracy_counts(logits[i : i + 3], targets[i : i + 3]) for i in (0, 3)]
    assert tuple(map(sum, zip(*parts, strict=True))) == (2, 4)


def test_accuracy_counts_per_pixel() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 0, :] = 1.0  # top row predicts class 1, bottom row class 0
    targets = torch.tensor([[[1, 0], [0, 0]]])
    assert accuracy_counts(logits, targets) == (3, 4)
    with pytest.raises(ValueError, match="do not match"):
        accuracy_counts(logits, targets[0])


def test_confusion_matrix_rows_are_targets() -> None:
    target = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(pred, target, 3)
    expected = torch.tensor([[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    assert cm.dtype == torch.int64
    assert torch.equal(cm, expected)
    # Batches accumulate by summation, and images of any shape are flattened.
    a = confusion_matrix(pred[:3].reshape(1, 3), target[:3].reshape(1, 3), 3)
    b = confusion_matrix(pred[3:].reshape(3, 1), target[3:].reshape(3, 1), 3)
    assert torch.equal(a + b, expected)


def test_confusion_matrix_ignore_label_and_bad_prediction() -> None:
    target = torch.tensor([0, 255, 1, -1])
    pred = torch.tensor([0, 1, 1, 0])
    assert torch.equal(confusion_matrix(pred, target, 2), torch.tensor([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="0..1"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 2)


def test_miou_skips_class_absent_from_both() -> None:
    # Classes 0..3; class 3 never occurs in target or prediction.
    target = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(pred, target, 4)
    # IoU0 = 1/(2+2-1) = 1/3; IoU1 = 2/(3+3-2) = 1/2; IoU2 = 1/1; class 3 left out.
    assert math.isclose(miou_from_confusion(cm), (1 / 3 + 1 / 2 + 1) / 3)


def test_miou_counts_class_only_predicted_as_zero() -> None:
    # Class 2 is predicted once but never in the target: union 1, IoU 0 (a false alarm counts).
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 2, 1, 1])
    cm = confusion_matrix(pred, target, 3)
    assert math.isclose(miou_from_confusion(cm), (1 / 2 + 1 + 0) / 3)


def test_miou_perfect_and_empty() -> None:
    t = torch.tensor([0, 1, 2, 2])
    assert miou_from_confusion(confusion_matrix(t, t, 5)) == 1.0
    assert math.isnan(miou_from_confusion(torch.zeros(3, 3, dtype=torch.int64)))


def test_foreground_dice_leaves_the_background_out() -> None:
    # rows target, columns prediction; classes background, organ, finding
    cm = torch.tensor([[90, 5, 5], [2, 40, 0], [4, 0, 6]])
    organ, finding = 2 * 40 / (42 + 45), 2 * 6 / (10 + 11)  # 2·TP / (row + column) by hand
    assert dice_from_confusion(cm) == pytest.approx((organ + finding) / 2)
    scores = per_class_scores(cm, ["Background", "organ", "finding"])
    assert scores["finding"] == pytest.approx((6 / 15, finding))  # IoU = TP / (row + column − TP)
    assert scores["background"] == pytest.approx((90 / (100 + 96 - 90), 2 * 90 / 196))
    assert math.isnan(dice_from_confusion(torch.tensor([[5, 0], [0, 0]])))  # no foreground anywhere
    absent = per_class_scores(torch.tensor([[5, 0], [0, 0]]), ["background", "lesion"])
    assert all(math.isnan(v) for v in absent["lesion"])


def test_bootstrap_interval_matches_the_binomial_interval_on_a_large_sample() -> None:
    """An accuracy of 0.8 over 4000 images: the percentile bootstrap agrees with the normal-approximation
    binomial interval p ± 1.96·sqrt(p(1−p)/n) (0.7876…0.8124) to within a few thousandths."""
    n, p = 4000, 0.8
    rows = torch.zeros(n, 2, dtype=torch.int64)
    rows[: int(n * p), 0] = 1
    rows[:, 1] = 1
    low, high = bootstrap_interval(rows, accuracy_of, seed=3)
    half = 1.959964 * math.sqrt(p * (1 - p) / n)
    assert low == pytest.approx(p - half, abs=0.003) and high == pytest.approx(p + half, abs=0.003)
    assert bootstrap_interval(rows, accuracy_of, seed=3) == (low, high)  # seeded
    small = bootstrap_interval(rows[::40], accuracy_of, seed=3)
    assert small[1] - small[0] > 3 * (high - low)  # 100 images: an interval √40 ≈ 6× wider
    assert all(math.isnan(v) for v in bootstrap_interval(rows[:0], accuracy_of, seed=3))


def test_batched_dice_and_miou_match_the_single_matrix_ones() -> None:
    """What the bootstrap evaluates per resample equals the split's own figure for each matrix, NaN included."""
    gen = torch.Generator().manual_seed(4)
    mats = torch.randint(0, 20, (6, 3, 3), generator=gen)
    mats[0, 1:, :] = 0
    mats[0, :, 1:] = 0  # only background: no foreground Dice
    got_dice, got_miou = dice_of(mats.reshape(6, 9), 3), miou_of(mats.reshape(6, 9), 3)
    for i in range(6):
        want = dice_from_confusion(mats[i])
        assert (math.isnan(want) and math.isnan(got_dice[i])) or got_dice[i] == pytest.approx(want, rel=1e-12)
        assert got_miou[i] == pytest.approx(miou_from_confusion(mats[i]), rel=1e-12)


def test_per_image_confusions_are_each_images_confusion_matrix() -> None:
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 3, (5, 6, 6), generator=gen), torch.randint(0, 3, (5, 6, 6), generator=gen)
    target[0, 0, 0] = 255  # an ignore label is skipped, as confusion_matrix skips it
    rows = per_image_confusions(pred, target, 3)
    for i in range(5):
        assert torch.equal(rows[i], confusion_matrix(pred[i], target[i], 3).reshape(-1))
    assert rows[0].sum() == 35 and rows[1].sum() == 36
