"""What the built-in `synthetic` benchmark measures: the fixed clean-trained reference recognizer on clean, degraded
and enhanced test images, per noise level, and whether a shortcut solves the classification without it.

Per sigma: the reference (the one `acc_ref` uses, trained on clean images only) scores the clean test images,
the degraded input (`gaussian:sigma=S` from a fixed seed) and the output of an `enhancer_only` trial (the
trial's `test_acc_ref`), all at the trial defaults unless overridden. Shortcut probes: simple classifiers fitted
on global statistics of clean training images (intensity, local contrast |x - 3x3 mean|, high-pass, band-pass
and gradient magnitude: max, mean, std, 99th percentile, mean of the top 20 pixels), scored on clean
validation images: the best two-threshold rule per statistic and a logistic regression on all of them. Chance
is 1/3; a benchmark without a shortcut keeps them near it.

With `--task segmentation` the same per sigma for the reference segmenter: the foreground Dice (the task metric)
and the `finding` class's IoU and Dice on clean, degraded and enhanced test images (no probes: the masks mark
the fine structures of every image, whatever its class).

Prints one JSON object per line: the probes, one per sigma, then the summary (`"benchmark": ...`); `--record`
also adds the summary as a row to benchmarks/README.md (or `--readme PATH`).
Run: `python benchmarks/reference_levels.py [--quick] [--task segmentation] [--sigmas 0.05,0.1] [--pretrain-epochs N]
[--record]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402

SIGMAS = (0.05, 0.1, 0.15, 0.2, 0.3)
QUICK = {"image_size": 32, "n_train": 96, "n_val": 32, "n_test": 96, "pretrain_epochs": 3, "epochs": 1,
         "enhancer_blocks": 1, "enhancer_channels": 8, "batch_size": 16}


def image_statistics(x: np.ndarray) -> dict[str, np.ndarray]:
    """Global per-image statistics of images [n, H, W]: what a shortcut could read the class off."""
    x = x.astype(np.float64)
    maps = {
        "intensity": x,
        "local_contrast": np.abs(x - ndimage.uniform_filter(x, size=(1, 3, 3), mode="reflect")),
        "highpass": np.abs(x - ndimage.gaussian_filter(x, sigma=(0, 1.5, 1.5), mode="reflect")),
        "bandpass": np.abs(ndimage.gaussian_filter(x, sigma=(0, 1, 1)) - ndimage.gaussian_filter(x, sigma=(0, 3, 3))),
        "gradient": np.hypot(*np.gradient(x, axis=(1, 2))),
    }
    out: dict[str, np.ndarray] = {}
    for name, m in maps.items():
        flat = np.sort(m.reshape(len(x), -1), axis=1)
        out |= {f"{name}_max": flat[:, -1], f"{name}_mean": flat.mean(1), f"{name}_std": flat.std(1),
                f"{name}_p99": np.quantile(flat, 0.99, axis=1), f"{name}_top20": flat[:, -20:].mean(1)}
    out["intensity_min"] = x.reshape(len(x), -1).min(1)
    out["highpass_energy"] = (maps["highpass"] ** 2).reshape(len(x), -1).mean(1)
    return out


def threshold_probe(train: np.ndarray, y_train: np.ndarray, val: np.ndarray, y_val: np.ndarray,
                    grid: int = 40) -> float:
    """Validation accuracy of the best rule "class by which of three intervals a statistic falls in" (two
    thresholds among `grid` training quantiles, each interval its majority class), fitted on the training set."""
    classes = int(max(y_train.max(), y_val.max())) + 1
    cuts = np.unique(np.quantile(train, np.linspace(0, 1, grid + 1)[1:-1]))
    bins = len(cuts) + 1
    counts = np.zeros((bins, classes))
    np.add.at(counts, (np.searchsorted(cuts, train), y_train), 1)
    below = np.vstack([np.zeros(classes), np.cumsum(counts, 0)])  # below[k]: counts of the bins < k
    best, rule = -1.0, (0, 0, [0, 0, 0])
    for i in range(bins + 1):
        for j in range(i, bins + 1):
            parts = (below[i], below[j] - below[i], below[bins] - below[j])
            score = sum(p.max() for p in parts)
            if score > best:
                best, rule = score, (i, j, [int(p.argmax()) for p in parts])
    i, j, label = rule
    b = np.searchsorted(cuts, val)
    return float((np.where(b < i, label[0], np.where(b < j, label[1], label[2])) == y_val).mean())


def logistic_probe(train: np.ndarray, y_train: np.ndarray, val: np.ndarray, y_val: np.ndarray,
                   l2: float = 1e-2, steps: int = 3000, lr: float = 0.5) -> float:
    """Validation accuracy of a multinomial logistic regression on standardised features [n, d] (gradient descent)."""
    classes = int(max(y_train.max(), y_val.max())) + 1
    mu, sd = train.mean(0), train.std(0) + 1e-12
    a = np.hstack([(train - mu) / sd, np.ones((len(train), 1))])
    b = np.hstack([(val - mu) / sd, np.ones((len(val), 1))])
    w, onehot = np.zeros((a.shape[1], classes)), np.eye(classes)[y_train]
    for _ in range(steps):
        z = a @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= lr * (a.T @ (p - onehot) / len(a) + l2 * w)
    return float(((b @ w).argmax(1) == y_val).mean())


def shortcut_probes(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, float]:
    """Every probe's validation accuracy: `threshold_<statistic>` for each statistic, and `logistic_all`."""
    train, val = image_statistics(x_train), image_statistics(x_val)
    scores = {f"threshold_{k}": threshold_probe(train[k], y_train, val[k], y_val) for k in train}
    stack = lambda s: np.stack([s[k] for k in train], 1)  # noqa: E731
    scores["logistic_all"] = logistic_probe(stack(train), y_train, stack(val), y_val)
    return scores


def probe_synthetic(image_size: int, n_train: int, n_val: int, seed: int = 1) -> dict[str, float]:
    """The probes on clean `synthetic` classification images."""
    from gradprom.datasets import get_dataset

    data = get_dataset("synthetic", image_size=image_size, seed=seed, n_train=n_train, n_val=n_val, n_test=1)
    return shortcut_probes(data.train.images[:, 0].numpy(), data.train.targets.numpy(),
                           data.val.images[:, 0].numpy(), data.val.targets.numpy())


def segmentation_levels(cfg: dict, sigma: float) -> dict[str, float]:
    """The reference segmenter's foreground Dice and `finding` IoU/Dice on clean, degraded and enhanced test images,
    as an `enhancer_only` trial reports them (its `test_*_ref`, `test_*_ref_clean` and `test_*_ref_input`)."""
    from gradprom.trainables.pipeline import train_trial

    tic = time.perf_counter()
    t = train_trial({**cfg, "task": "segmentation", "degradation": f"gaussian:sigma={sigma}",
                     "strategy": "enhancer_only"})
    views = {"clean": "_clean", "input": "_input", "enhanced": ""}
    return {**{view: t[f"test_dice_ref{end}"] for view, end in views.items()},
            **{f"finding_iou_{view}": t[f"test_iou_ref{end}_finding"] for view, end in views.items()},
            **{f"finding_dice_{view}": t[f"test_dice_ref{end}_finding"] for view, end in views.items()},
            "psnr_input": t["test_psnr_input"], "psnr": t["test_psnr"], "trial_s": time.perf_counter() - tic}


def reference_levels(cfg: dict, sigma: float) -> dict[str, float]:
    """The reference on clean test images, on the degraded input and on an `enhancer_only` trial's output."""
    import torch

    from gradprom.datasets import parse_degradation
    from gradprom.trainables.build import build_data
    from gradprom.trainables.config import TrialConfig
    from gradprom.trainables.pipeline import train_trial
    from gradprom.trainables.reference import pretrained_recognizer

    cfg = {**cfg, "degradation": f"gaussian:sigma={sigma}", "strategy": "enhancer_only"}
    config = TrialConfig.from_dict(cfg)
    torch.set_num_threads(max(config.threads, 1))
    data = build_data(config)
    reference = pretrained_recognizer(config, data, torch.device("cpu"), reference=True)  # cached: trained once
    x, y = data.test.images, data.test.targets

    @torch.no_grad()
    def accuracy(images: torch.Tensor) -> float:
        return float((torch.cat([reference(b) for b in images.split(64)]).argmax(1) == y).float().mean())

    degraded = parse_degradation(config.degradation)(x, torch.Generator().manual_seed(config.seed + 202))
    tic = time.perf_counter()
    trial = train_trial(cfg)
    return {"clean": accuracy(x), "input": accuracy(degraded), "enhanced": trial["test_acc_ref"],
            "psnr_input": trial["test_psnr_input"], "psnr": trial["test_psnr"], "trial_s": time.perf_counter() - tic}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 px, 96 images, 3+1 epochs, sigma 0.15 (< 1 min)")
    parser.add_argument("--sigmas", default=None, help=f"comma-separated noise levels (default {SIGMAS})")
    parser.add_argument("--task", default="classification", choices=("classification", "segmentation"),
                        help="the reference classifier (with the shortcut probes) or the reference segmenter")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="the reference's epochs (trial default)")
    parser.add_argument("--probe-images", type=int, default=None,
                        help="training images of the probes (validation: half as many; default 1024, quick 192)")
    args = parse(parser)
    sigmas = [float(s) for s in args.sigmas.split(",")] if args.sigmas else ([0.15] if args.quick else list(SIGMAS))
    size = QUICK["image_size"] if args.quick else 48
    n_probe = args.probe_images or (192 if args.quick else 1024)

    tic = time.perf_counter()
    segmentation = args.task == "segmentation"
    probes = {} if segmentation else probe_synthetic(size, n_probe, max(n_probe // 2, 3))
    if not segmentation:
        emit({"probes": probes, "image_size": size, "n_train": n_probe, "n_val": max(n_probe // 2, 3)})
    with tempfile.TemporaryDirectory(prefix="gradprom-ref-levels-") as cache:
        cfg = {"dataset": "synthetic", "device": "cpu", "threads": 1, "cache_dir": cache,
               **(QUICK if args.quick else {})}
        if args.pretrain_epochs is not None:
            cfg["pretrain_epochs"] = args.pretrain_epochs
        rows = []
        for sigma in sigmas:
            row = {"sigma": sigma, **(segmentation_levels if segmentation else reference_levels)(cfg, sigma)}
            emit(row)
            rows.append(row)
    fmt = lambda v: round(v, 3)  # noqa: E731
    result = {
        "sigma": [r["sigma"] for r in rows],
        "clean": fmt(rows[0]["clean"]),
        "input": [fmt(r["input"]) for r in rows],
        "enhanced": [fmt(r["enhanced"]) for r in rows],
    }
    if segmentation:
        result |= {"finding_iou_clean": fmt(rows[0]["finding_iou_clean"]),
                   "finding_iou_input": [fmt(r["finding_iou_input"]) for r in rows],
                   "finding_iou_enhanced": [fmt(r["finding_iou_enhanced"]) for r in rows]}
    else:
        result |= {"probe_best_threshold": fmt(max(v for k, v in probes.items() if k.startswith("threshold_"))),
                   "probe_logistic": fmt(probes["logistic_all"])}
    result["wall_s"] = round(time.perf_counter() - tic, 1)
    from gradprom.trainables.config import TrialConfig

    defaults = TrialConfig()
    epochs = cfg.get("pretrain_epochs", defaults.pretrain_epochs)
    note = ("quick: 32 px, 96 train images, " if args.quick else "48 px, 512 train images, ") + \
        f"reference {epochs} epochs, enhancer_only {cfg.get('epochs', defaults.epochs)} epochs, cpu"
    name = "reference_levels" + ("_segmentation" if segmentation else "") + ("_quick" if args.quick else "")
    record(name, result, args, note=note)


if __name__ == "__main__":
    main()
