"""One trial: train enhancer + recognizer with a gradient strategy, evaluate, report, checkpoint.

No Ray here: `train_trial(config, report)` runs in a plain loop (benchmarks, debugging, GPU machines
without Ray) and Ray only glues it in (`gradprom.trainables.ray_trial`). Under torch.distributed
(Ray Train's worker group) it shards the data and averages gradients itself.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradprom import SCHEMA_VERSION
from gradprom.datasets import Degradation, TaskData, dataset_info, get_dataset, parse_degradation
from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.metrics import accuracy_counts, confusion_matrix, miou_from_confusion, psnr, ssim, task_metric_name
from gradprom.models import MODELS, create_model
from gradprom.strategies import Strategy
from gradprom.trainables import distributed as ddp
from gradprom.trainables.checkpoint import load_checkpoint, save_checkpoint
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.fastpath import FastPath
from gradprom.trainables.provenance import provenance
from gradprom.trainables.reference import (
    CALIBRATION_IMAGES,
    pretrained_recognizer,
    recalibrate_batchnorm,
    recognizer_spec,
    task_loss,
)

#: report(metrics, checkpoint_dir or None): called once per epoch on every worker
Reporter = Callable[[dict[str, Any], "str | None"], None]
#: in the last result of a trial that failed for good (its reason), sent by the Ray glue instead of raising
FAILED_KEY = "failed"

EVAL_BATCH = 64
#: with nan_policy "fail", the steps' finite-loss/gradient flags are read on the host every this many steps
#: (and at the end of an epoch), so the step itself never waits for the device
NAN_CHECK_STEPS = 16


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GradpromError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def seeded_generator(device: torch.device, *parts: int) -> torch.Generator:
    """A generator on `device` seeded from integers, so each (seed, epoch, rank) stream is reproducible."""
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class Trial:
    """Everything a trial trains and evaluates with, built once."""

    cfg: TrialConfig
    device: torch.device
    data: TaskData
    degradation: Degradation
    enhancer: nn.Module
    recognizer: nn.Module
    reference: nn.Module
    strategy: Strategy
    opt_enhancer: torch.optim.Optimizer
    opt_recognizer: torch.optim.Optimizer | None
    val_inputs: Tensor
    test_inputs: Tensor
    calibration_inputs: Tensor  # degraded training images, for the recognizer's BatchNorm statistics
    eval_data: TaskData | None = None  # cross-dataset evaluation (`eval_dataset`), its reference recognizer
    eval_reference: nn.Module | None = None  # and its fixed degraded test inputs
    eval_inputs: Tensor | None = None
    steps_done: int = 0  # training steps so far (the cheap gates measure every gate_every-th)
    aux: Auxiliary | None = None  # a second auxiliary task (multi-auxiliary training)
    fast: FastPath = FastPath()  # precision, memory format and compile of the forward passes


def dataset_options(cfg: TrialConfig, counts: tuple[int, int, int] | None = None,
                    cache: bool = True) -> dict[str, Any]:
    """The options `get_dataset` gets: split sizes when set (0 keeps the dataset's default), the dataset's
    own options (`data_options`) and, for datasets read from disk, the data root, `skip_bad` and (with
    `cache`) the preprocessing cache folder."""
    n_train, n_val, n_test = counts or (cfg.n_train, cfg.n_val, cfg.n_test)
    options: dict[str, Any] = {k: v for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)) if v}
    options.update(cfg.dataset_options())
    accepted = dataset_info(cfg.dataset)["options"]
    managed = {"data_root": cfg.data_root, "skip_bad": cfg.skip_bad, "cache_dir": cfg.cache_dir if cache else ""}
    options.update({k: v for k, v in managed.items() if k in accepted})
    return options


@functools.lru_cache(maxsize=4)
def _cached_data(dataset: str, task: str, image_size: int, seed: int, options: tuple) -> TaskData:
    return get_dataset(dataset, task=task, image_size=image_size, seed=seed, **dict(options))


def build_data(cfg: TrialConfig) -> TaskData:
    """The trial's dataset; memoised per process, since Ray reuses trial actors across trials."""
    return _cached_data(cfg.dataset, cfg.task, cfg.image_size, cfg.seed, tuple(sorted(dataset_options(cfg).items())))


def read_samples(cfg: TrialConfig) -> tuple[TaskData, TaskData | None]:
    """One sample per split of the trial's dataset (and of its `eval_dataset`, else None), read as a trial
    reads them: what `preflight` runs through the pipeline, and what every cluster node is checked with."""
    def one_per_split(one: TrialConfig) -> TaskData:
        return get_dataset(one.dataset, task=one.task, image_size=one.image_size, seed=one.seed,
                           **dataset_options(one, counts=(1, 1, 1), cache=False))

    eval_cfg = cfg.eval_config()
    return one_per_split(cfg), (one_per_split(eval_cfg) if eval_cfg is not None else None)


@torch.no_grad()
def preflight(cfg: TrialConfig) -> TrialConfig:
    """Run one image through this config's exact pipeline (data, degradation, enhancer, recognizers).

    Catches what names alone cannot (image size vs downsampling scale, blur radius or UNet depth, a
    model registered for another role) as one line, before Ray starts or a trial is launched.
    """
    cfg.check_names()
    for field, role in (("enhancer", "enhancer"), ("recognizer", "recognizer")):
        name = getattr(cfg, field)
        if name and MODELS.meta(name).get("role") != role:
            raise GradpromError(f"{field} '{name}' is not a {role}; {role}s: {', '.join(MODELS.names(role=role))}")
    data, other = read_samples(cfg)
    if other is not None and other.channels != data.channels:
        raise GradpromError(f"eval dataset '{other.name}' has {other.channels}-channel images but '{data.name}' "
                            f"has {data.channels}; the enhancer cannot take them, pick a dataset with "
                            f"{data.channels} channel(s)")
    degradation = parse_degradation(cfg.degradation)
    x = degradation(data.train.images, torch.Generator().manual_seed(0))
    enhancer = create_model(cfg.enhancer, in_channels=data.channels, blocks=cfg.enhancer_blocks,
                            channels=cfg.enhancer_channels, scale=degradation.scale).eval()
    x_hat = enhancer(x)
    if x_hat.shape != data.train.images.shape:
        raise GradpromError(f"the enhancer returns {tuple(x_hat.shape[-2:])} images for {cfg.image_size}px targets "
                            f"under '{cfg.degradation}'; check the degradation's scale")
    for reference in (False, True):
        name, kwargs = recognizer_spec(cfg, data, reference=reference)
        create_model(name, **kwargs).eval()(x_hat)
    return cfg


def make_recognizers(cfg: TrialConfig, data: TaskData, device: torch.device,
                     strategy: Strategy) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer | None]:
    """(recognizer, fixed clean-trained reference, the recognizer's optimiser or None) for cfg.task."""
    reference = pretrained_recognizer(cfg, data, device, reference=True)
    reference.requires_grad_(False)
    if strategy.needs_pretrained_recognizer or cfg.recognizer_init == "pretrained":
        recognizer = pretrained_recognizer(cfg, data, device)
    else:
        torch.manual_seed(cfg.seed + 1)
        name, kwargs = recognizer_spec(cfg, data)
        recognizer = create_model(name, **kwargs).to(device)
    if not strategy.trains_recognizer:
        recognizer.requires_grad_(False).eval()
    ddp.broadcast_module_(recognizer)
    opt = torch.optim.Adam(recognizer.parameters(), lr=cfg.lr_recognizer) if strategy.trains_recognizer else None
    return recognizer, reference, opt


@dataclass
class Auxiliary:
    """A second recognition task on the same images (`aux_task`), with its own recognizer, λ and gate."""

    data: TaskData  # the same images, this task's targets
    recognizer: nn.Module
    reference: nn.Module
    strategy: Strategy
    opt: torch.optim.Optimizer | None


def build_auxiliary(cfg: TrialConfig, data: TaskData, device: torch.device) -> Auxiliary | None:
    """The second auxiliary of a multi-auxiliary trial (None without `aux_task`); its dataset must be the
    trial's images with the other task's targets."""
    aux_cfg = cfg.aux_config()
    if aux_cfg is None:
        return None
    aux_data = build_data(aux_cfg).to(device)
    for split in ("train", "val", "test"):
        if not torch.equal(getattr(aux_data, split).images, getattr(data, split).images):
            raise GradpromError(f"dataset '{cfg.dataset}' does not give its {cfg.task} and {cfg.aux_task} tasks "
                                f"the same images ({split} split differs); aux_task needs one image set, both labels")
    strategy = aux_cfg.build_strategy()
    recognizer, reference, opt = make_recognizers(aux_cfg, aux_data, device, strategy)
    return Auxiliary(aux_data, recognizer, reference, strategy, opt)


def build_trial(cfg: TrialConfig) -> Trial:
    """Data, degradation, models, strategy and optimisers for `cfg` (deterministic by cfg.seed)."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    strategy = cfg.build_strategy()
    degradation = parse_degradation(cfg.degradation)
    data = build_data(cfg).to(device)
    recognizer, reference, opt_r = make_recognizers(cfg, data, device, strategy)
    aux = build_auxiliary(cfg, data, device)

    torch.manual_seed(cfg.seed)
    enhancer = create_model(cfg.enhancer, in_channels=data.channels, blocks=cfg.enhancer_blocks,
                            channels=cfg.enhancer_channels, scale=degradation.scale).to(device)
    ddp.broadcast_module_(enhancer)
    opt_e = torch.optim.Adam(enhancer.parameters(), lr=cfg.lr)

    # Validation and test degradations are drawn once from fixed streams: every epoch and every trial
    # of a search scores the very same degraded images.
    val_inputs = degrade_fixed(degradation, data.val.images, seeded_generator(device, cfg.seed, 101))
    test_inputs = degrade_fixed(degradation, data.test.images, seeded_generator(device, cfg.seed, 202))
    calibration = degrade_fixed(degradation, data.train.images[:CALIBRATION_IMAGES],
                                seeded_generator(device, cfg.seed, 303))
    fast = FastPath.resolve(cfg.precision, cfg.memory_format, cfg.compile, device)
    for model in (enhancer, recognizer, *((aux.recognizer,) if aux else ())):
        fast.prepare(model)
    for model in (reference, *((aux.reference,) if aux else ())):
        fast.prepare(model, compile=False)
    trial = Trial(cfg, device, data, degradation, enhancer, recognizer, reference, strategy, opt_e, opt_r,
                  val_inputs, test_inputs, calibration, aux=aux, fast=fast)
    eval_cfg = cfg.eval_config()
    if eval_cfg is not None:
        trial.eval_data = build_data(eval_cfg).to(device)
        trial.eval_reference = pretrained_recognizer(eval_cfg, trial.eval_data, device, reference=True)
        trial.eval_reference.requires_grad_(False)
        trial.fast.prepare(trial.eval_reference, compile=False)
        trial.eval_inputs = degrade_fixed(degradation, trial.eval_data.test.images,
                                          seeded_generator(device, cfg.seed, 404))
    return trial


def degrade_fixed(degradation: Degradation, images: Tensor, gen: torch.Generator) -> Tensor:
    return torch.cat([degradation(images[i:i + EVAL_BATCH], gen) for i in range(0, len(images), EVAL_BATCH)])


def ip_loss(kind: str, x_hat: Tensor, x: Tensor) -> Tensor:
    return F.l1_loss(x_hat, x) if kind == "l1" else F.mse_loss(x_hat, x)


def output_layer(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of a model's last layer (its last module holding parameters of its own, e.g. SRResNet's
    tail conv): what `gate_on="head"` measures the cosine over. A model may name them via `gate_parameters()`."""
    if hasattr(model, "gate_parameters"):
        return list(model.gate_parameters())
    for module in reversed(list(model.modules())):
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            return own
    raise GradpromError(f"{type(model).__name__} has no trainable parameters to gate on")


def vjps(x_hat: Tensor, params: list[Tensor], cotangents: list[Tensor], batched: bool,
         retain_graph: bool = False) -> list[list[Tensor]]:
    """J^T·u through the enhancer for each cotangent u: one batched call (vmap over the cotangents) or one
    call per cotangent. Both give the same gradients; which is faster depends on the device (benchmarks)."""
    if batched and len(cotangents) > 1:
        stacked = torch.autograd.grad(x_hat, params, torch.stack(cotangents), is_grads_batched=True,
                                      retain_graph=retain_graph)
        return [[g[i] for g in stacked] for i in range(len(cotangents))]
    return [list(torch.autograd.grad(x_hat, params, u, retain_graph=retain_graph or i < len(cotangents) - 1))
            for i, u in enumerate(cotangents)]


def train_step(t: Trial, x: Tensor, y: Tensor, gen: torch.Generator,
               y_aux: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor] | None:
    """One step, top to bottom. Returns (loss_ip, loss_vr, bad) as device tensors, `bad` flagging a non-finite
    loss and a non-finite gradient: `train_epoch` reads them every few steps, so the step never waits for the
    device, except under `nan_policy` skip-step, which must know before updating (it returns None when skipped).

    Both losses reach the enhancer's parameters θ only through the enhanced image x̂, so we take
    ∂L/∂x̂ for each loss (one backward through the recognizer, which also yields ∇φ L_VR) and then
    two vector-Jacobian products through the enhancer: g_ip = ∇θ L_IP and g_vr = ∇θ L_VR. A cheap gate
    (gate_every, gate_on="head") decides the weight w without them and takes one VJP of u_ip + λ·w·u_vr.
    A second auxiliary (`aux`, labels `y_aux`) adds its own L_AUX, gradient g_aux and gated term.
    Forward passes run under the fast path's autocast; losses, gradients, cosines and updates are fp32.
    """
    s, aux = t.strategy, t.aux
    gates = [s, aux.strategy] if aux else [s]
    batched = t.cfg.vjp == "batched"  # the VJPs through the enhancer in one vmapped call (see `vjps`)
    theta = [p for p in t.enhancer.parameters() if p.requires_grad]
    phi = [p for p in t.recognizer.parameters() if p.requires_grad] if s.trains_recognizer else []
    psi = [p for p in aux.recognizer.parameters() if p.requires_grad] if aux and aux.strategy.trains_recognizer else []

    x_in = t.fast.layout(t.degradation(x, gen))        # degraded on the fly, on the device
    with t.fast.autocast():
        x_hat = t.enhancer(x_in).float()               # enhanced image (fp32 from here on)
        logits = t.recognizer(x_hat) if s.uses_aux_gradient else None
        logits_aux = aux.recognizer(x_hat) if aux else None
    zero = torch.zeros((), device=x.device)
    loss_ip = ip_loss(t.cfg.loss_ip, x_hat, x)         # image-quality loss L_IP
    loss_vr = task_loss(logits.float(), y) if logits is not None else zero  # recognition loss L_VR, through x̂
    loss_aux = task_loss(logits_aux.float(), y_aux) if logits_aux is not None else zero  # L_AUX
    loss_bad = (~torch.isfinite(loss_ip + loss_vr + loss_aux)).float().reshape(1)  # averaged below: any replica

    measure = not getattr(s, "cheap", False) or t.steps_done % s.gate_every == 0
    t.steps_done += 1
    g_phi: list[Tensor] = []
    g_aux: list[Tensor] = []
    g_psi: list[Tensor] = []
    if not s.uses_aux_gradient:                        # enhancer_only: ∇θ L_IP is the update
        g_ip, g_vr = list(torch.autograd.grad(loss_ip, theta)), []
    elif s.fixed_weight is not None:                   # joint, frozen: no gate, so plain joint training, one
        w = s.lam * s.fixed_weight                     # backward of L_IP + λ·w·L_VR (∇φ rescaled by 1/λw)
        w_aux = aux.strategy.lam * s.fixed_weight if aux else 0.0
        for gate in gates:
            gate.last_cos, gate.last_weight = torch.full((), math.nan, device=x.device), \
                torch.full((), s.fixed_weight, device=x.device)
        grads = torch.autograd.grad(loss_ip + w * loss_vr + w_aux * loss_aux, [*theta, *phi, *psi])
        g_ip, g_vr = list(grads[:len(theta)]), []
        g_phi = [g / w for g in grads[len(theta):len(theta) + len(phi)]]
        g_psi = [g / w_aux for g in grads[len(theta) + len(phi):]]
    else:
        # cotangents at x̂ (and the recognizers' own gradients, from the same backward)
        (u_ip,) = torch.autograd.grad(loss_ip, x_hat, retain_graph=True)
        u_vr, *g_phi = torch.autograd.grad(loss_vr, [x_hat, *phi], retain_graph=True)
        u_rec = [u_vr]                                 # one cotangent per recognition task
        if aux:
            u, *g_psi = torch.autograd.grad(loss_aux, [x_hat, *psi], retain_graph=True)
            u_rec.append(u)
        on_head = getattr(s, "gate_on", "all") == "head"
        if measure and on_head:                        # cheap gate: cosines over the last layer only
            h_ip, *h_rec = vjps(x_hat, output_layer(t.enhancer), [u_ip, *u_rec], batched, retain_graph=True)
            ddp.average_(h_ip, *h_rec)
            for gate, h in zip(gates, h_rec, strict=True):
                gate.decide(h_ip, h)
        elif not measure:                              # cheap gate: reuse the last decisions
            for gate in gates:
                gate.last_cos = torch.full((), math.nan, device=x.device)
        if on_head or not measure:                     # one VJP of the combined cotangent
            combined = u_ip + sum(g.lam * g.last_weight.to(u.dtype) * u for g, u in zip(gates, u_rec, strict=True))
            g_ip, g_vr = vjps(x_hat, theta, [combined], batched)[0], []
        else:                                          # exact: every gradient over all enhancer parameters
            g_ip, g_vr, *rest = vjps(x_hat, theta, [u_ip, *u_rec], batched)
            g_aux = rest[0] if rest else []

    ddp.average_(g_ip, g_vr, g_phi, [loss_bad])        # same vectors on every replica, before the cosine
    ddp.average_(g_aux, g_psi)
    grad_bad = ~torch.isfinite(torch.stack([g.sum() for g in (*g_ip, *g_vr, *g_phi, *g_aux, *g_psi)]).sum())
    bad = torch.stack([loss_bad[0] != 0, grad_bad])  # both averaged, so every replica reads the same flags
    if t.cfg.nan_policy == "skip-step" and bad.any():  # the one host sync: skip-step must know before updating
        return None
    # the paper's core: how the two gradients combine (already combined for joint and when a cheap gate decided)
    update = s.combine(g_ip, g_vr) if g_vr else g_ip
    if g_aux:  # the second auxiliary through its own gate: its contribution is combine(g_ip, g_aux) − g_ip
        update = [u + c - a for u, c, a in zip(update, aux.strategy.combine(g_ip, g_aux), g_ip, strict=True)]

    for p, g in zip(theta, update, strict=True):
        p.grad = g
    t.opt_enhancer.step()
    if t.opt_recognizer is not None:
        for p, g in zip(phi, g_phi, strict=True):
            p.grad = g
        t.opt_recognizer.step()
    if aux and aux.opt is not None:
        for p, g in zip(psi, g_psi, strict=True):
            p.grad = g
        aux.opt.step()
    return loss_ip.detach(), loss_vr.detach(), bad


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
        loss_ip, loss_vr, bad = out
        flags.append(bad)
        if len(flags) == NAN_CHECK_STEPS:
            raise_if_bad(flags, unread_from, epoch)
            flags, unread_from = [], step + 1
        losses_ip.append(loss_ip)
        losses_vr.append(loss_vr)
        cosines.append(t.strategy.last_cos)
        weights.append(t.strategy.last_weight)
        if t.aux:
            aux_cosines.append(t.aux.strategy.last_cos)
            aux_weights.append(t.aux.strategy.last_weight)
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


@dataclass(frozen=True)
class Head:
    """One task scored on the enhanced images: its labels and class count, and its models by key suffix."""

    prefix: str
    task: str
    num_classes: int
    targets: Tensor
    models: dict[str, nn.Module]


def heads_of(t: Trial, split: str, reference_only: bool = False) -> list[Head]:
    """The tasks scored on `split`: the trial's task (and the second auxiliary's), by the trial's own recognizer
    and the clean-trained reference (or, with `reference_only`, by the reference alone)."""
    heads = [Head("", t.data.task, t.data.num_classes, getattr(t.data, split).targets,
                  {"_ref": t.reference} if reference_only else {"": t.recognizer, "_ref": t.reference})]
    if t.aux:  # the second auxiliary, by its own recognizer and its clean-trained reference
        heads.append(Head("aux_", t.aux.data.task, t.aux.data.num_classes, getattr(t.aux.data, split).targets,
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
    return score(t, getattr(t.data, split).images, inputs, heads_of(t, split))


@torch.no_grad()
def reference_baselines(t: Trial, inputs: Tensor, split: str) -> dict[str, float]:
    """`*_ref_clean` and `*_ref_input`: the fixed reference on the clean images and on the degraded input
    (upsampled bilinearly to the target size under downsampling), the levels an enhancer's `*_ref` lies between.
    Constants of (dataset, degradation, seed): computed once per trial, not per epoch."""
    return score(t, getattr(t.data, split).images, inputs, heads_of(t, split, reference_only=True),
                 views=("_clean", "_input"))


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
    heads = [Head("", t.data.task, t.eval_data.num_classes, t.eval_data.test.targets, models)]
    found = score(t, t.eval_data.test.images, t.eval_inputs, heads)
    heads = [replace(heads[0], models={"_ref": t.eval_reference})]
    found.update(score(t, t.eval_data.test.images, t.eval_inputs, heads, views=("_clean", "_input")))
    return {f"eval_{k}": v for k, v in found.items()}


def enhance(t: Trial, x_in: Tensor) -> Tensor:
    """The enhanced images for evaluation: through the fast path, returned in fp32 and clamped to [0, 1]."""
    with t.fast.autocast():
        return t.enhancer(t.fast.layout(x_in)).float().clamp(0, 1)


def score(t: Trial, images: Tensor, inputs: Tensor, heads: list[Head], views: tuple[str, ...] = ("",)
          ) -> dict[str, float]:
    """Each head's task metric per model (`prefix + metric + suffix + view`) on each view of the images: ""
    the enhanced images enhancer(inputs) (with their PSNR/SSIM against the clean `images`), "_clean" the clean
    images, "_input" the degraded input (resized to the target size). Sharded over workers and summed, so every
    worker returns the same figures."""
    rank, world_size = ddp.world()
    sums = {name: torch.zeros((), dtype=torch.float64, device=t.device) for name in ("psnr", "ssim", "psnr_in", "n")}
    counts = {(h.prefix, suffix + view): torch.zeros(2 if h.task == "classification" else h.num_classes ** 2,
                                                     dtype=torch.int64, device=t.device)
              for h in heads for suffix in h.models for view in views}
    for start in range(rank * EVAL_BATCH, len(images), EVAL_BATCH * world_size):
        x, x_in = images[start:start + EVAL_BATCH], inputs[start:start + EVAL_BATCH]
        baseline = x_in if x_in.shape == x.shape else F.interpolate(x_in, size=x.shape[-2:], mode="bilinear")
        seen = {"_clean": x, "_input": baseline.clamp(0, 1)}
        if "" in views:
            seen[""] = x_hat = enhance(t, x_in)
            sums["psnr"] += psnr(x_hat, x).double().sum()
            sums["ssim"] += ssim(x_hat, x).double().sum()
            sums["psnr_in"] += psnr(seen["_input"], x).double().sum()
        sums["n"] += len(x)
        for h in heads:
            y = h.targets[start:start + EVAL_BATCH]
            for suffix, model in h.models.items():
                for view in views:
                    with t.fast.autocast():
                        logits = model(t.fast.layout(seen[view]) if view else seen[view]).float()
                    if h.task == "classification":
                        counts[h.prefix, suffix + view] += torch.tensor(accuracy_counts(logits, y), device=t.device)
                    else:
                        counts[h.prefix, suffix + view] += confusion_matrix(logits.argmax(1), y,
                                                                            h.num_classes).reshape(-1)
    ddp.sum_(sums)
    ddp.sum_(counts)
    n = sums["n"].item()
    out = {"psnr": sums["psnr"].item() / n, "ssim": sums["ssim"].item() / n,
           "psnr_input": sums["psnr_in"].item() / n} if "" in views else {}
    for h in heads:
        metric, k = task_metric_name(h.task), h.num_classes
        for suffix in h.models:
            for view in views:
                c = counts[h.prefix, suffix + view]
                out[h.prefix + metric + suffix + view] = (c[0] / c[1]).item() if metric == "acc" else \
                    miou_from_confusion(c.view(k, k))
    return out


def trial_state(t: Trial, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: models, optimisers, and the epoch's report (re-sent if a trial that had
    finished is restored, so its final figures stay exactly what they were)."""
    return {
        "epoch": epoch,
        "metrics": metrics,
        "enhancer": t.enhancer.state_dict(),
        "recognizer": t.recognizer.state_dict(),
        "opt_enhancer": t.opt_enhancer.state_dict(),
        "opt_recognizer": t.opt_recognizer.state_dict() if t.opt_recognizer else {},
        # the gates' state between steps (EMA, last decisions) and the step counter gate_every counts by
        "strategy": t.strategy.state_dict(),
        "steps_done": t.steps_done,
        **({"aux_recognizer": t.aux.recognizer.state_dict(), "aux_strategy": t.aux.strategy.state_dict(),
            "opt_aux": t.aux.opt.state_dict() if t.aux.opt else {}} if t.aux else {}),
    }


def restore_state(t: Trial, state: dict[str, Any]) -> int:
    """Load a checkpoint into the trial; returns the last finished epoch."""
    t.enhancer.load_state_dict(state["enhancer"])
    t.recognizer.load_state_dict(state["recognizer"])
    t.opt_enhancer.load_state_dict(state["opt_enhancer"])
    if t.opt_recognizer is not None and state["opt_recognizer"]:
        t.opt_recognizer.load_state_dict(state["opt_recognizer"])
    t.strategy.load_state_dict(_on(state["strategy"], t.device))
    t.steps_done = int(state["steps_done"])
    if t.aux is not None:
        t.aux.recognizer.load_state_dict(state["aux_recognizer"])
        t.aux.strategy.load_state_dict(_on(state["aux_strategy"], t.device))
        if t.aux.opt is not None and state["opt_aux"]:
            t.aux.opt.load_state_dict(state["opt_aux"])
    return int(state["epoch"])


def _on(state: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """A strategy's checkpointed tensors (loaded on the CPU) on the trial's device."""
    return {k: v.to(device) for k, v in state.items()}


def train_trial(config: TrialConfig | dict[str, Any], report: Reporter | None = None,
                resume_from: str | Path | None = None) -> dict[str, Any]:
    """Train one trial for `config.epochs`, reporting validation metrics (and a checkpoint) every epoch.

    The last epoch's report also carries the test-split figures (`test_*`). Returns that last report.
    A NaN/inf loss raises `NonFiniteLossError("non-finite loss at epoch E step S")` (a NaN/inf gradient:
    "non-finite gradient …"); with `nan_policy="skip-step"` such steps are skipped and counted (`nan_skips`).
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    t = build_trial(cfg)
    rank, _ = ddp.world()
    restored = load_checkpoint(resume_from) if resume_from else None
    first_epoch = restore_state(t, restored) + 1 if restored else 1
    if restored and first_epoch > cfg.epochs and restored.get("metrics"):
        # the trial had finished when its process died: report its last epoch again, unchanged
        if report is not None:
            report(dict(restored["metrics"]), None)
        return dict(restored["metrics"])
    metric = task_metric_name(cfg.task)
    last: dict[str, Any] = {}
    started = time.perf_counter()
    levels = reference_baselines(t, t.val_inputs, "val")  # the reference on clean and degraded images: constants
    origin = provenance(t.data, t.device)  # versions, commit, device, data fingerprint: on every report
    for epoch in range(first_epoch, cfg.epochs + 1):
        metrics: dict[str, Any] = {"epoch": epoch, "schema_version": SCHEMA_VERSION, "n_skipped": len(t.data.skipped),
                                   "resumed_from": first_epoch - 1, **t.fast.describe(), **origin}
        metrics.update(train_epoch(t, epoch))
        tic = time.perf_counter()
        metrics.update(evaluate(t, t.val_inputs, "val"))
        metrics.update(levels)
        if epoch == cfg.epochs:
            test = {**evaluate(t, t.test_inputs, "test"), **reference_baselines(t, t.test_inputs, "test")}
            metrics.update({f"test_{k}": v for k, v in test.items()})
            if t.eval_data is not None:
                metrics.update(evaluate_elsewhere(t))
        metrics["time_eval_s"] = time.perf_counter() - tic
        metrics["wall_s"] = time.perf_counter() - started
        metrics["task_metric"] = metrics[metric]
        with tempfile.TemporaryDirectory(prefix="gradprom-ckpt-") as tmp:
            checkpoint_dir = str(save_checkpoint(tmp, trial_state(t, epoch, metrics)).parent) if rank == 0 else None
            if report is not None:
                report(metrics, checkpoint_dir)
        last = metrics
    return last
