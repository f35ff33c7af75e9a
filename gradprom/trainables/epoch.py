"""One epoch of a task-driven trial: its steps, the non-finite checks, and what the gate saw."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.trainables import distributed as ddp
from gradprom.trainables.build import Trial, seeded_generator
from gradprom.trainables.step import train_step

#: with nan_policy "fail", the steps' finite-loss/gradient flags are read on the host every this many steps
#: (and at the end of an epoch), so the step itself never waits for the device
NAN_CHECK_STEPS = 16


def raise_if_bad(flags: list[Tensor], first_step: int, epoch: int) -> None:
    """Read the (non-finite loss, non-finite gradient) flags of consecutive steps from `first_step` on, and
    raise for the first bad one, naming its epoch and step."""
    if not flags:
        return
    bad = torch.stack(flags).cpu()
    hits = bad.any(dim=1).nonzero()
    if len(hits):
        i = int(hits[0])
        what = "loss" if bad[i, 0] else "gradient"
        raise NonFiniteLossError(f"non-finite {what} at epoch {epoch} step {first_step + i}")


def train_epoch(t: Trial, epoch: int) -> dict[str, float]:
    """One pass over this worker's shard of the training split; returns training-side metrics."""
    cfg, rank, world_size = t.cfg, *ddp.world()
    per_worker = max(1, cfg.batch_size // world_size)
    order = torch.randperm(len(t.data.train), generator=seeded_generator(torch.device("cpu"), cfg.seed, epoch))
    shard = order[rank::world_size].to(t.device)
    steps = (len(t.data.train) // world_size) // per_worker  # the same on every rank, or all-reduces hang
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if steps == 0:
        raise GradpromError(f"batch_size {cfg.batch_size} is larger than the training split; lower --batch-size")
    gen = seeded_generator(t.device, cfg.seed, epoch, rank)
    t.enhancer.train()
    if t.strategy.trains_recognizer:
        t.recognizer.train()

    losses_ip, losses_vr, cosines, weights, aux_cosines, aux_weights = [], [], [], [], [], []
    flags: list[Tensor] = []  # unread (loss, gradient) non-finite flags, from step `unread_from` on
    unread_from = 1
    skipped = 0
    start = time.perf_counter()
    for step in range(1, steps + 1):
        idx = shard[(step - 1) * per_worker:step * per_worker]
        y_aux = t.aux.data.train.targets[idx] if t.aux else None
        out = train_step(t, t.data.train.images[idx], t.data.train.targets[idx], gen, y_aux)
        if out is None:
            skipped += 1
            continue
        flags.append(out.bad)
        if len(flags) == NAN_CHECK_STEPS:
            raise_if_bad(flags, unread_from, epoch)
            flags, unread_from = [], step + 1
        losses_ip.append(out.loss_ip)
        losses_vr.append(out.loss_vr)
        cosines.append(out.cos[0])
        weights.append(out.weight[0])
        if t.aux:
            aux_cosines.append(out.cos[1])
            aux_weights.append(out.weight[1])
    raise_if_bad(flags, unread_from, epoch)  # the epoch's last unread steps
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)  # the step time is the device's, not the host's queueing
    elapsed = time.perf_counter() - start
    if skipped == steps:
        raise NonFiniteLossError(f"non-finite loss or gradient in every step of epoch {epoch} ({steps} skipped by "
                                 "--nan-policy skip-step); lower the learning rates or λ")
    ddp.average_buffers_(t.recognizer)
    if t.aux:
        ddp.average_buffers_(t.aux.recognizer)

    measured = t.strategy.uses_aux_gradient
    return {
        "loss_ip": torch.stack(losses_ip).mean().item(),
        "loss_vr": torch.stack(losses_vr).mean().item() if measured else math.nan,
        **gate_telemetry(torch.stack(cosines).float().cpu() if measured else torch.zeros(0), t.strategy.cos_name),
        "promoted_frac": torch.stack(weights).float().mean().item(),
        **({"aux_cos_mean": math.nan, f"aux_{t.aux.strategy.cos_name}_mean":
            torch.stack(aux_cosines).float().nanmean().item(),
            "aux_promoted_frac": torch.stack(aux_weights).float().mean().item()} if t.aux else {}),
        "steps": steps,
        "nan_skips": skipped,
        "time_train_s": elapsed,
        "step_ms": 1000 * elapsed / steps,
        "images_per_s": steps * per_worker * world_size / elapsed,
        "world_size": world_size,
    }


COS_BINS = 10  # histogram of the cosine over [-1, 1]: cos_hist_0 counts [-1, -0.8), …, cos_hist_9 [0.8, 1]


def gate_telemetry(cosines: Tensor, name: str = "cos") -> dict[str, Any]:
    """What the gate saw in one epoch: the cosine's mean, quantiles and histogram, and every step's cosine
    (`cos_steps`, NaN on steps a cheap gate did not measure), as flat epochs.parquet columns. A gate on the
    enhancer's last layer records its cosine as `head_cos_*` (`name`), and `cos_mean` is then NaN: the full
    gradients' cosine was never measured."""
    seen = cosines[~torch.isnan(cosines)]
    stats: dict[str, Any] = {"cos_mean": math.nan, f"{name}_mean": seen.mean().item() if len(seen) else math.nan,
                             f"{name}_steps": [round(c, 6) for c in cosines.tolist()]}
    for q in (0.1, 0.5, 0.9):
        stats[f"{name}_q{int(q * 100)}"] = torch.quantile(seen, q).item() if len(seen) else math.nan
    counts = torch.histc(seen, bins=COS_BINS, min=-1.0, max=1.0) if len(seen) else torch.zeros(COS_BINS)
    stats.update({f"{name}_hist_{i}": int(c) for i, c in enumerate(counts.tolist())})
    return stats


