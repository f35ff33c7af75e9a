"""Evaluating a task-driven trial: image quality, and the task metric by the trial's and the reference recognizers."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradprom.metrics import (
    accuracy_of,
    bootstrap_interval,
    dice_from_confusion,
    dice_of,
    miou_from_confusion,
    miou_of,
    per_class_scores,
    per_image_confusions,
    psnr,
    ssim,
)
from gradprom.trainables import distributed as ddp
from gradprom.trainables.build import EVAL_BATCH, Trial, forward, seeded_generator
from gradprom.trainables.image_loss import IMAGE_LOSSES
from gradprom.trainables.reference import cache_key, recalibrate_batchnorm, recognizer_spec


@dataclass(frozen=True)
class Head:
    """One task scored on the enhanced images: its labels and class count, and its models by key suffix."""

    prefix: str
    task: str
    class_names: list[str]
    targets: Tensor
    models: dict[str, nn.Module]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def heads_of(t: Trial, split: str, reference_only: bool = False) -> list[Head]:
    """The tasks scored on `split`: the trial's task (and the second auxiliary's), by the trial's own recognizer
    and the clean-trained reference (or, with `reference_only`, by the reference alone)."""
    heads = [Head("", t.data.task, t.data.class_names, getattr(t.data, split).targets,
                  {"_ref": t.reference} if reference_only else {"": t.recognizer, "_ref": t.reference})]
    if t.aux:  # the second auxiliary, by its own recognizer and its clean-trained reference
        heads.append(Head("aux_", t.aux.data.task, t.aux.data.class_names, getattr(t.aux.data, split).targets,
                          {"_ref": t.aux.reference} if reference_only else
                          {"": t.aux.recognizer, "_ref": t.aux.reference}))
    return heads


@torch.no_grad()
def evaluate(t: Trial, inputs: Tensor, split: str) -> dict[str, float]:
    """PSNR/SSIM of the enhanced images, and the task metric by the trial's and the reference recognizer
    (and, with a second auxiliary, its task metric as `aux_*`), all from one pass of the enhancer."""
    t.enhancer.eval()
    recognizers = [(t.strategy, t.recognizer)] + ([(t.aux.strategy, t.aux.recognizer)] if t.aux else [])
    trained = [r for s, r in recognizers if s.trains_recognizer]
    if trained:  # the same images on every replica, so the buffers stay identical
        enhanced = [enhance(t, x) for x in t.calibration_inputs.split(EVAL_BATCH)]
        for recognizer in trained:
            recalibrate_batchnorm(recognizer, enhanced)
    for _, recognizer in recognizers:
        recognizer.eval()
    found = score(t, getattr(t.data, split).images, inputs, heads_of(t, split), intervals=split == "test")
    if not IMAGE_LOSSES.meta(t.cfg.loss_ip).supervised:
        found["loss_image"] = image_loss_on(t, inputs)
    return found


@torch.no_grad()
def image_loss_on(t: Trial, inputs: Tensor) -> float:
    """The trial's self-supervised image loss on a split's inputs (its own draws from a fixed stream, so every
    epoch and trial measure alike): a no-reference image objective, for data without clean images (`loss_image`,
    minimised; R2R's is an unbiased stand-in for the supervised error up to a constant, Neighbor2Neighbor's and
    Noise2Self's track it under their noise assumptions)."""
    assert t.image_loss is not None
    gen = seeded_generator(t.device, t.cfg.seed, 707)
    total = 0.0
    for x_in in inputs.split(EVAL_BATCH):
        loss, _ = t.image_loss(functools.partial(forward, t), x_in, forward(t, x_in), None, gen)
        total += float(loss) * len(x_in)
    return total / len(inputs)


#: `reference_baselines` per process: the trials of a search share dataset, degradation and seed, and Ray reuses
#: trial processes, so each (reference, degradation, split) is scored once per process, not once per trial
_LEVELS: dict[tuple, dict[str, float]] = {}


@torch.no_grad()
def reference_baselines(t: Trial, inputs: Tensor, split: str) -> dict[str, float]:
    """`*_ref_clean` and `*_ref_input`: the fixed reference on the clean images and on the degraded input
    (upsampled bilinearly to the target size under downsampling), the levels an enhancer's `*_ref` lies between.
    Constants of (dataset, degradation, seed): computed once per process for each (see `levels_key`)."""
    key = levels_key(t, split)
    if key not in _LEVELS:
        _LEVELS[key] = score(t, getattr(t.data, split).images, inputs, heads_of(t, split, reference_only=True),
                             views=("_clean", "_input"), intervals=split == "test")
    return dict(_LEVELS[key])


def levels_key(t: Trial, split: str) -> tuple:
    """What the levels depend on: each reference's weights (its cache key: data, size, seed, model and
    pretraining), the degradation (the degraded inputs come from the seed's fixed stream), the split, the fast
    path, the worker layout and the device."""
    refs = [(t.cfg, t.data)] + ([(t.cfg.aux_config(), t.aux.data)] if t.aux else [])
    keys = tuple(cache_key(cfg, *recognizer_spec(cfg, data, reference=True), data.fingerprint) for cfg, data in refs)
    return split, t.cfg.degradation, keys, tuple(sorted(t.fast.describe().items())), ddp.world(), str(t.device)


@torch.no_grad()
def evaluate_elsewhere(t: Trial) -> dict[str, float]:
    """`eval_*`: the final enhancer on another dataset's test split (`eval_dataset`), scored by that dataset's
    clean-trained reference recognizer and, when both datasets name the same classes, by the trial's own one;
    with that reference's levels on the clean and the degraded images (`eval_*_ref_clean`, `eval_*_ref_input`)."""
    assert t.eval_data is not None and t.eval_reference is not None and t.eval_inputs is not None
    models = {"_ref": t.eval_reference}
    if t.eval_data.class_names == t.data.class_names:
        models[""] = t.recognizer
    t.enhancer.eval()
    t.recognizer.eval()
    heads = [Head("", t.data.task, t.eval_data.class_names, t.eval_data.test.targets, models)]
    found = score(t, t.eval_data.test.images, t.eval_inputs, heads, intervals=True)
    heads = [replace(heads[0], models={"_ref": t.eval_reference})]
    found.update(score(t, t.eval_data.test.images, t.eval_inputs, heads, views=("_clean", "_input"), intervals=True))
    return {f"eval_{k}": v for k, v in found.items()}


def enhance(t: Trial, x_in: Tensor) -> Tensor:
    """The enhanced images for evaluation: through the fast path, returned in fp32 and clamped to [0, 1]."""
    return forward(t, x_in).clamp(0, 1)


def score(t: Trial, images: Tensor, inputs: Tensor, heads: list[Head], views: tuple[str, ...] = ("",),
          intervals: bool = False) -> dict[str, float]:
    """Each head's task figures per model (`prefix + metric + suffix + view`) on each view of the images: ""
    the enhanced images enhancer(inputs) (with their PSNR/SSIM against the clean `images`), "_clean" the clean
    images, "_input" the degraded input (resized to the target size). Scans without a clean twin (NaN images) count
    in neither PSNR/SSIM nor the "_clean" view: NaN where no image has one. Classification: `acc`; segmentation:
    `dice` (foreground), `miou` and each class's IoU and Dice. With `intervals`, each task metric also gets its
    bootstrap 95 % interval over the images (`..._ci_low`, `..._ci_high`). Sharded over workers and summed, so
    every worker returns the same figures."""
    rank, world_size = ddp.world()
    sums = {name: torch.zeros((), dtype=torch.float64, device=t.device) for name in ("psnr", "ssim", "psnr_in",
                                                                                     "twins")}
    # per image, what its task figures are sums of: (correct, 1), or its flattened confusion matrix
    per_image = {(h.prefix, suffix + view): torch.zeros(len(images), 2 if h.task == "classification" else
                                                        h.num_classes ** 2, dtype=torch.int64, device=t.device)
                 for h in heads for suffix in h.models for view in views}
    for start in range(rank * EVAL_BATCH, len(images), EVAL_BATCH * world_size):
        x, x_in = images[start:start + EVAL_BATCH], inputs[start:start + EVAL_BATCH]
        baseline = x_in if x_in.shape == x.shape else F.interpolate(x_in, size=x.shape[-2:], mode="bilinear")
        twin = ~x.flatten(1).isnan().any(1)  # the images that have a clean one
        x = x.nan_to_num(0.0)
        seen = {"_clean": x, "_input": baseline.clamp(0, 1)}
        if "" in views:
            seen[""] = x_hat = enhance(t, x_in)
            sums["psnr"] += psnr(x_hat, x).double().mul(twin).sum()
            sums["ssim"] += ssim(x_hat, x).double().mul(twin).sum()
            sums["psnr_in"] += psnr(seen["_input"], x).double().mul(twin).sum()
        sums["twins"] += twin.sum()
        for h in heads:
            y = h.targets[start:start + EVAL_BATCH]
            for suffix, model in h.models.items():
                for view in views:
                    with t.fast.autocast():
                        logits = model(t.fast.layout(seen[view]) if view else seen[view]).float()
                    rows = per_image[h.prefix, suffix + view][start:start + len(x)]
                    if h.task == "classification":
                        rows[:, 0] = logits.argmax(1) == y
                        rows[:, 1] = 1
                    else:
                        rows += per_image_confusions(logits.argmax(1), y, h.num_classes)
                    if view == "_clean":
                        rows *= twin[:, None]
    ddp.sum_(sums)
    ddp.sum_(per_image)
    twins = sums["twins"].item()
    out = {name: sums[key].item() / twins if twins else math.nan
           for name, key in (("psnr", "psnr"), ("ssim", "ssim"), ("psnr_input", "psnr_in"))} if "" in views else {}
    for h in heads:
        k, scores = h.num_classes, task_scores(h.task, h.num_classes)
        for suffix in h.models:
            for view in views:
                rows, end = per_image[h.prefix, suffix + view], suffix + view
                total = rows.sum(0)
                for metric, (of, of_batch) in scores.items():
                    out[h.prefix + metric + end] = of(total)
                    if intervals:
                        low, high = bootstrap_interval(rows, of_batch, seed=t.cfg.seed + BOOTSTRAP_SEED)
                        out[h.prefix + metric + end + "_ci_low"], out[h.prefix + metric + end + "_ci_high"] = low, high
                if h.task == "segmentation":  # e.g. dice_ref_clean_finding: the reference on clean images
                    for name, (iou, dice) in per_class_scores(total.view(k, k), h.class_names).items():
                        out[f"{h.prefix}iou{end}_{name}"], out[f"{h.prefix}dice{end}_{name}"] = iou, dice
    return out


#: the bootstrap's stream: the trial's seed plus this, so every metric of a trial is resampled alike
BOOTSTRAP_SEED = 505


def task_scores(task: str, k: int) -> dict[str, tuple[Callable[[Tensor], float], Callable[[Tensor], Tensor]]]:
    """The task metrics a split's summed per-image counts turn into, each as (of the split's sums, of a batch of
    resampled sums for the bootstrap): `acc` from (correct, total); `dice` and `miou` from a flattened [k, k]
    confusion matrix."""
    if task == "classification":
        return {"acc": (lambda c: float(c[0] / c[1]), accuracy_of)}
    return {"dice": (lambda c: dice_from_confusion(c.view(k, k)), functools.partial(dice_of, k=k)),
            "miou": (lambda c: miou_from_confusion(c.view(k, k)), functools.partial(miou_of, k=k))}
