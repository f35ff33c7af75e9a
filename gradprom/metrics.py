"""Image- and task-quality metrics, in pure torch on the tensors' device, batched.

PSNR and SSIM reproduce `skimage.metrics` (the reference the tests hold them to) so numbers are
comparable with published work, but run on the GPU batch instead of per image on the host.
Images are [B, C, H, W]; every image metric returns one value per image, [B], so callers can
average over a split themselves (a mean of batch means would weight a short last batch wrongly).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

PSNR_MAX_DB = 100.0
SSIM_WIN = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_float(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Check shapes and promote half precision: these sums need at least float32."""
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"expected images as [B, C, H, W], got shape {tuple(x.shape)}")
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    return x.to(dtype), y.to(dtype)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, [B] (argument order does not matter).

    Identical images would give +inf, which poisons any mean over a split, so the result is
    capped at PSNR_MAX_DB = 100 dB (an MSE of 1e-10·data_range²; far above anything a
    trained model reaches). Below the cap it equals `skimage.metrics.peak_signal_noise_ratio`.
    """
    x, y = _as_float(x, y)
    mse = (x - y).square().flatten(1).mean(dim=1)
    floor = data_range**2 * 10 ** (-PSNR_MAX_DB / 10)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(floor))


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity per image, [B], equal to skimage's defaults.

    skimage (win_size=7, uniform window, K1=0.01, K2=0.03, sample covariance) filters with a
    reflect-padded uniform filter and then crops 3 px from every side before the mean, so only
    windows fully inside the image count: that is a 'valid' 7×7 average pool. Channels are
    scored separately and averaged, as skimage does with channel_axis.
    """
    x, y = _as_float(x, y)
    b, c, h, w = x.shape
    if h < SSIM_WIN or w < SSIM_WIN:
        raise ValueError(f"ssim needs images of at least {SSIM_WIN}x{SSIM_WIN} px, got {h}x{w}")
    # One pooling call for all five moment maps.
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    mu_x, mu_y, m_xx, m_yy, m_xy = F.avg_pool2d(maps, SSIM_WIN, stride=1).split(c, dim=1)
    n = SSIM_WIN * SSIM_WIN
    cov_norm = n / (n - 1)  # sample covariance, as skimage's use_sample_covariance=True
    var_x = cov_norm * (m_xx - mu_x * mu_x)
    var_y = cov_norm * (m_yy - mu_y * mu_y)
    cov_xy = cov_norm * (m_xy - mu_x * mu_y)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1)


def accuracy_counts(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    """(correct, total) of argmax predictions, so a split is accumulated exactly batch by batch.

    `logits` is [B, K, ...] with class scores on dim 1 and `targets` the matching [B, ...]
    labels (so per-pixel accuracy works too).
    """
    if logits.dim() != targets.dim() + 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    correct = (logits.argmax(dim=1) == targets).sum()
    return int(correct.item()), targets.numel()


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """[K, K] int64 counts, rows = target class, columns = predicted class; sum them over batches.

    Target labels outside 0..K-1 (e.g. an ignore label such as 255) are skipped; a prediction
    outside that range is a bug and raises.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    pred, target = pred[keep], target[keep]
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions must lie in 0..{num_classes - 1}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_image_confusions(pred: Tensor, target: Tensor, k: int) -> Tensor:
    """Each image's flattened [k, k] confusion matrix (rows target; labels outside 0…k−1 skipped), [B, k·k]:
    `confusion_matrix` per image, in one bincount (what a bootstrap over images resamples)."""
    b = pred.shape[0]
    pred, target = pred.reshape(b, -1).long(), target.reshape(b, -1).long()
    keep = (target >= 0) & (target < k)
    cell = torch.arange(b, device=pred.device)[:, None] * k * k + target.clamp(0, k - 1) * k + pred
    return torch.bincount(cell[keep], minlength=b * k * k).view(b, k * k)


def miou_from_confusion(cm: Tensor) -> float:
    """Mean IoU over the classes that occur in the target or the prediction (union > 0).

    A class absent from both has IoU 0/0; counting it as 0 or 1 would make the score depend on
    which classes a split happens to contain, so it is left out. Accumulate `cm` over the whole
    split first (per-image mIoU averaged is a different, noisier number). NaN if `cm` is empty.
    """
    cm = cm.double()
    inter = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - inter
    present = union > 0
    if not bool(present.any()):
        return math.nan
    return float((inter[present] / union[present]).mean().item())


def dice_from_confusion(cm: Tensor) -> float:
    """The foreground Dice: mean Dice 2·TP / (2·TP + FP + FN) over the non-background classes (1…K−1; class 0 is
    the background, as in every segmentation dataset here) that occur in the target or the prediction. The
    convention of medical segmentation papers: the easy, large background does not dilute it. NaN if none occurs.
    """
    cm = cm.double()
    tp = cm.diagonal()[1:]
    den = (cm.sum(dim=0) + cm.sum(dim=1))[1:]
    present = den > 0
    if not bool(present.any()):
        return math.nan
    return float((2 * tp[present] / den[present]).mean().item())


def per_class_scores(cm: Tensor, names: list[str]) -> dict[str, tuple[float, float]]:
    """(IoU, Dice) of each class, by its name as a column name takes it (lower case, `_` for anything else; NaN
    for a class in neither target nor prediction), so a score dominated by easy classes is never read without
    the hard one beside it."""
    cm = cm.double()
    tp = cm.diagonal()
    both = cm.sum(dim=0) + cm.sum(dim=1)
    out = {}
    for k, name in enumerate(names):
        key = "".join(ch if ch.isalnum() else "_" for ch in name.lower())
        out[key] = (float(tp[k] / (both[k] - tp[k])), float(2 * tp[k] / both[k])) if both[k] > 0 else \
            (math.nan, math.nan)
    return out


def accuracy_of(counts: Tensor) -> Tensor:
    """Accuracy from summed (correct, total) counts [..., 2]."""
    return counts[..., 0] / counts[..., 1]


def dice_of(counts: Tensor, k: int) -> Tensor:
    """`dice_from_confusion` of each of a batch of flattened [k, k] confusion matrices [..., k·k]."""
    cm = counts.double().reshape(*counts.shape[:-1], k, k)
    tp, den = cm.diagonal(dim1=-2, dim2=-1)[..., 1:], (cm.sum(-2) + cm.sum(-1))[..., 1:]
    present = den > 0
    return torch.where(present, 2 * tp / den.clamp_min(1), 0.0).sum(-1) / present.sum(-1)  # 0/0: NaN


def miou_of(counts: Tensor, k: int) -> Tensor:
    """`miou_from_confusion` of each of a batch of flattened [k, k] confusion matrices [..., k·k]."""
    cm = counts.double().reshape(*counts.shape[:-1], k, k)
    inter = cm.diagonal(dim1=-2, dim2=-1)
    union = cm.sum(-2) + cm.sum(-1) - inter
    present = union > 0
    return torch.where(present, inter / union.clamp_min(1), 0.0).sum(-1) / present.sum(-1)


#: resamples of a bootstrap interval, and its level (two-sided)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95


def bootstrap_interval(per_image: Tensor, metric: Callable[[Tensor], Tensor], seed: int,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """The percentile bootstrap 95 % interval of a split's metric over its images: `per_image` [N, D] holds each
    image's counts (a row of a flattened confusion matrix, or (correct, 1)), summed over a resample of the images
    (drawn with replacement, from the seeded stream `seed`) and turned into the metric by `metric`, which maps
    every resample's sums [R, D] at once to [R] values (`accuracy_of`, `dice_of`, `miou_of`). Deterministic given
    the seed; (NaN, NaN) for an empty split."""
    n = per_image.shape[0]
    if n == 0:
        return math.nan, math.nan
    gen = torch.Generator().manual_seed(seed)
    counts = per_image.double().cpu()
    picks = torch.randint(0, n, (resamples, n), generator=gen)
    weights = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(1, picks, torch.ones(resamples, n,
                                                                                              dtype=torch.float64))
    sums = weights @ counts  # [resamples, D]: each resample's summed counts
    values = metric(sums).double()
    values = values[~values.isnan()]
    if not len(values):
        return math.nan, math.nan
    tail = (1 - BOOTSTRAP_LEVEL) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return float(low), float(high)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den elementwise, 0 where den is 0 (a class never predicted has precision 0, not NaN)."""
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def classification_metrics(cm: Tensor) -> dict[str, float]:
    """Accuracy, sensitivity (recall), specificity, precision, F1 and F2 from a [K, K] confusion matrix
    (rows target, columns prediction, as `confusion_matrix` gives; accumulate it over the whole split first).

    Two classes: class 1 is the positive one (COVID-19 in the R2C-GAN paper), TP = cm[1, 1] and so on.
    K > 2 classes: each score is computed one-vs-rest per class and macro-averaged (the unweighted mean over
    the K classes, absent ones included); accuracy is always trace / total, never averaged. Any ratio whose
    denominator is 0 counts as 0 (say, precision of a class never predicted), so the scores are never NaN;
    an empty matrix gives 0 everywhere.
    """
    cm = cm.double()
    k = cm.shape[0] if cm.dim() == 2 else 0
    if k < 2 or cm.shape[1] != k:
        raise ValueError(f"expected a square [K, K] confusion matrix with K >= 2, got {tuple(cm.shape)}")
    total = cm.sum()
    tp = cm.diagonal()
    fn = cm.sum(dim=1) - tp
    fp = cm.sum(dim=0) - tp
    tn = total - tp - fn - fp
    if k == 2:  # the positive class only
        tp, fn, fp, tn = tp[1:], fn[1:], fp[1:], tn[1:]
    sens = _safe_div(tp, tp + fn)
    prec = _safe_div(tp, tp + fp)
    scores = {
        "acc": _safe_div(tp.new_tensor(float(cm.trace())), total),
        "sensitivity": sens,
        "specificity": _safe_div(tn, tn + fp),
        "precision": prec,
        "f1": _safe_div(2 * prec * sens, prec + sens),
        "f2": _safe_div(5 * prec * sens, 4 * prec + sens),  # F-beta with beta = 2: recall weighs 4x
    }
    return {name: float(value.mean().item()) for name, value in scores.items()}


def task_metric_name(task: str) -> str:
    """The task metric's column name: `acc` for classification; `dice` (the foreground Dice, `dice_from_confusion`)
    for segmentation, which searches, fronts and protocols rank by (mIoU is reported beside it)."""
    return {"classification": "acc", "segmentation": "dice"}[task]
