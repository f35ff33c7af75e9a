"""PNG plots people would rather look at than tables: PSNR against the task metric, front drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradprom.analysis.pareto import OBJECTIVES, Objective, as_objectives, front_rows
from gradprom.metrics import task_metric_name


def plot_front(rows: list[dict[str, Any]], path: Path, objectives: Sequence[str | Objective] = OBJECTIVES,
               title: str = "") -> Path:
    """Scatter every finished trial (colour = strategy), stopped/failed ones hollow, the front as a line: the
    first two objectives on the axes, the front over all of them (so with three or more, front points need not
    look non-dominated in the picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({str(r.get("dataset")) for r in rows}) or [""]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.4 * len(datasets), 4.8), squeeze=False)
    strategies = sorted({str(r.get("strategy")) for r in rows})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    pairs = as_objectives(objectives)
    (x_key, x_dir), (y_key, y_dir) = pairs[:2]
    for ax, dataset in zip(axes[0], datasets, strict=True):
        mine = [r for r in rows if str(r.get("dataset")) == dataset and _finite(r, (x_key, y_key))]
        for strategy in strategies:
            done = [r for r in mine if r.get("strategy") == strategy and r.get("status") == "completed"]
            partial = [r for r in mine if r.get("strategy") == strategy and r.get("status") != "completed"]
            if done:
                ax.scatter([r[x_key] for r in done], [r[y_key] for r in done], color=colours[strategy],
                           label=strategy, s=36, zorder=3)
            if partial:
                ax.scatter([r[x_key] for r in partial], [r[y_key] for r in partial], facecolors="none",
                           edgecolors=colours[strategy], s=36, zorder=2,
                           label=f"{strategy} (not full budget)")
        front = sorted(front_rows(mine, pairs), key=lambda r: r[x_key])
        if front:
            step = "pre" if x_dir == "max" else "post"  # the front holds the next (max) or last (min) point
            ax.plot([r[x_key] for r in front], [r[y_key] for r in front], drawstyle=f"steps-{step}",
                    color="black", linewidth=1.2, label="Pareto front" + (f" (over {len(pairs)} objectives)"
                                                                          if len(pairs) > 2 else ""), zorder=4)
        task = str(next((r.get("task") for r in mine), ""))
        ax.set_xlabel(axis_label(x_key, x_dir, task))
        ax.set_ylabel(axis_label(y_key, y_dir, task))
        ax.set_title(f"{title or 'image quality vs task quality'} · {dataset}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def axis_label(name: str, direction: str, task: str) -> str:
    """An axis title with its unit and direction: 'PSNR (dB, higher is better)', 'accuracy of the fixed
    clean-trained reference (test)'."""
    split = " (test)" if name.startswith("test_") else " (eval)" if name.startswith("eval_") else ""
    bare = name.removeprefix("test_").removeprefix("eval_")
    task_word = {"classification": "accuracy", "segmentation": "foreground Dice"}.get(task, "task metric")
    words = {"psnr": "PSNR (dB)", "ssim": "SSIM", "task_metric": f"{task_word}, trial's recognizer",
             "acc": "accuracy, trial's recognizer", "miou": "mIoU, trial's recognizer",
             "dice": "foreground Dice, trial's recognizer",
             "acc_ref": "accuracy, fixed clean-trained reference", "miou_ref": "mIoU, fixed clean-trained reference",
             "dice_ref": "foreground Dice, fixed clean-trained reference"}
    better = "higher" if direction == "max" else "lower"
    return f"{words.get(bare, bare)}{split} · {better} is better"


def _save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG (folders made) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _finite(row: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return all(isinstance(row.get(k), (int, float)) and math.isfinite(row[k]) for k in keys)


def plot_telemetry(epochs: list[dict[str, Any]], trials: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """What the gate did in each chosen trial: the cosine at every measured step over training (top, with
    the trial's threshold τ) and the promoted fraction per epoch (bottom)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=False)
    for i, trial in enumerate(trials):
        colour = plt.get_cmap("tab10")(i % 10)
        mine = sorted((e for e in epochs if e.get("trial_id") == trial["trial_id"]), key=lambda e: e["epoch"])
        # a gate on the enhancer's last layer measured the head cosine (head_cos_steps), marked as such
        key = "head_cos_steps" if any(e.get("head_cos_steps") is not None for e in mine) else "cos_steps"
        steps = [c for e in mine for c in (json.loads(e[key]) if isinstance(e.get(key), str) else e.get(key) or [])]
        label = f"{trial['trial_id']} {trial.get('strategy')} λ={trial.get('lam', math.nan):.3g}" + \
            (" (head cos)" if key == "head_cos_steps" else "")
        points = [(k, c) for k, c in enumerate(steps, start=1) if c is not None and math.isfinite(c)]
        if points:
            top.plot(*zip(*points, strict=True), ".", markersize=3, color=colour, label=label)
        if trial.get("strategy") in ("threshold", "gradprom"):
            top.axhline(trial.get("threshold", 0.0) if trial.get("strategy") == "threshold" else 0.0, color=colour,
                        linestyle="--", linewidth=0.8)
        bottom.plot([e["epoch"] for e in mine], [e.get("promoted_frac") for e in mine], "o-", color=colour,
                    label=label)
    top.set_ylim(-1.05, 1.05)
    top.set_xlabel("training step")
    top.set_ylabel("cos(g_ip, g_vr)")
    top.set_title(title or "gate telemetry")
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_xlabel("epoch")
    bottom.set_ylabel("promoted fraction")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_sensitivity(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """PSNR, SSIM and the task metrics (own recognizer, fixed reference) of every completed trial against λ
    (log scale) and, for the threshold strategy, against τ: how sensitive each figure is to the knobs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") == "completed"]
    task = str(next((r.get("task") for r in done), "classification"))
    m = task_metric_name(task) if task in ("classification", "segmentation") else "acc"
    metrics = [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), (m, f"{m}, trial's recognizer"),
               (f"{m}_ref", f"{m}, fixed reference")]
    knobs = [("lam", "λ (log scale)")] + ([("threshold", "τ")] if any(r.get("strategy") == "threshold"
                                                                       for r in done) else [])
    fig, axes = plt.subplots(len(knobs), len(metrics), figsize=(3.6 * len(metrics), 3.0 * len(knobs)),
                             squeeze=False)
    strategies = sorted({str(r.get("strategy")) for r in done})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    for row_axes, (knob, knob_label) in zip(axes, knobs, strict=True):
        for ax, (metric, label) in zip(row_axes, metrics, strict=True):
            for strategy in strategies:
                mine = [r for r in done if r.get("strategy") == strategy and _finite(r, (knob, metric))
                        and (knob != "threshold" or strategy == "threshold")]
                if mine:
                    ax.scatter([r[knob] for r in mine], [r[metric] for r in mine], s=18, color=colours[strategy],
                               label=strategy)
            if knob == "lam":
                ax.set_xscale("log")
            ax.set_xlabel(knob_label)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "sensitivity to λ and τ (validation split)", fontsize=10)
    return _save(fig, path)


def plot_qualitative(panels: list[tuple[str, dict[str, Any]]], path: Path, class_names: list[str]) -> Path:
    """One block of rows per trial: degraded input, enhanced, clean, and Grad-CAM of the trial's recognizer on
    the enhanced image (the class it explains named), for a few test images (the paper's qualitative view)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(len(p["clean"]) for _, p in panels)
    columns = ("degraded input", "enhanced", "clean", "Grad-CAM on enhanced")
    fig, axes = plt.subplots(len(panels) * count, 4, figsize=(8, 2.1 * len(panels) * count), squeeze=False)
    for block, (label, p) in enumerate(panels):
        for i in range(count):
            row = axes[block * count + i]
            show = [p["input"][i], p["enhanced"][i], p["clean"][i]]
            for ax, image in zip(row[:3], show, strict=True):
                ax.imshow(_hwc(image), cmap="gray", vmin=0, vmax=1)
            row[3].imshow(_hwc(p["enhanced"][i]), cmap="gray", vmin=0, vmax=1)
            row[3].imshow(p["cam"][i].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            explained = int(p["explained"][i])
            row[3].set_title(f"explains {class_names[explained] if explained < len(class_names) else explained}",
                             fontsize=7)
            row[0].set_ylabel(f"{label}\nimage {i}", fontsize=7)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    for ax, name in zip(axes[0], columns, strict=True):
        ax.set_title(name + ("\n" + ax.get_title() if ax.get_title() else ""), fontsize=8)
    return _save(fig, path)


def _hwc(image: Any) -> Any:
    """A [C, H, W] tensor as an array matplotlib shows (greyscale H×W, colour H×W×3)."""
    array = image.detach().float().cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0).clip(0, 1)


def plot_cos_histograms(epochs: list[dict[str, Any]], trials: list[dict[str, Any]], path: Path,
                        limit: int = 4) -> Path | None:
    """Per trial (up to `limit`), the histogram of the gate's cosine in each epoch as a heat map (epoch × the ten
    bins over [−1, 1] of `cos_hist_*`, or `head_cos_hist_*` for a head gate); None when no trial measured one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = []
    for trial in trials:
        mine = sorted((e for e in epochs if e.get("trial_id") == trial["trial_id"]), key=lambda e: e["epoch"])
        prefix = "head_cos_hist_" if any(e.get("head_cos_hist_0") is not None for e in mine) else "cos_hist_"
        counts = np.array([[e.get(f"{prefix}{i}") or 0 for i in range(10)] for e in mine], dtype=float)
        if counts.size and counts.sum() > 0:
            panels.append((trial, counts, prefix))
        if len(panels) == limit:
            break
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    for ax, (trial, counts, prefix) in zip(axes[0], panels, strict=True):
        share = counts / counts.sum(1, keepdims=True).clip(min=1)
        image = ax.imshow(share.T, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          extent=(0.5, len(counts) + 0.5, -1, 1))
        ax.axhline(0.0, color="white", linewidth=0.8, linestyle="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel("head cosine" if prefix.startswith("head") else "cos(g_ip, g_vr)")
        ax.set_title(f"{trial['trial_id'][-5:]} {trial.get('strategy')} λ={trial.get('lam', math.nan):.3g}", fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), label="share of the epoch's measured steps")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # the colour bar sits outside the panels
    plt.close(fig)
    return path
