"""The `r2c_gan` pipeline: the restore-to-classify GAN (R2C-GAN, Ahishali et al.) as a trial.

Two generators translate between an unpaired poor-quality pool A and good-quality pool B (G_ab restores,
G_ba degrades), each with a class head on its bottleneck; two patch discriminators judge each domain. Unlike
task_driven, the recognizer is *inside* the restorer and its loss simply joins the sum: no gradient strategy.

Generators' loss, per step (a, y_a from pool A; b, y_b from pool B; images in [-1, 1]):
  w_adv · LSGAN(D_b(G_ab(a)) → 1, D_a(G_ba(b)) → 1) + w_cycle · L1 cycles (a → b → a, b → a → b)
  + w_identity · L1 identities (G_ab(b) ≈ b, G_ba(a) ≈ a)
  + w_cls · Σ cross-entropy of the class outputs of the translated, cycled and identity passes (six terms,
    each with the label of the image it came from).
Discriminators: ½ LSGAN(real → 1, fake → 0) each, the fakes drawn through a pool of earlier fakes
(`fake_pool`). Adam(betas (beta1, 0.999)) at lr_g / lr_d, constant, then linearly down to 0 over the steps
after `decay_start` of training. Batches of `batch_size` from each pool; an epoch is one pass over pool A.

Reported each epoch on the val split (the last epoch also `test_*`): `psnr`, `ssim` (G_ab's restoration
against the clean image; NaN on unpaired data, which has none) and `psnr_input`; G_ab's class head, in the
same pass that restores the image (the paper's inference), scored as `acc`, `sensitivity`, `specificity`,
`precision`, `f1`, `f2` (`metrics.classification_metrics`); `task_metric` is `f1`. Single-process, fp32;
deterministic by cfg.seed, a resumed trial included (every random draw comes from (seed, epoch) streams).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gradprom.datasets import TaskData, split_sizes
from gradprom.datasets.unpaired import UnpairedData
from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.metrics import classification_metrics, confusion_matrix, psnr, ssim
from gradprom.models.r2c import Discriminator, Generator
from gradprom.settings import Setting
from gradprom.trainables import distributed as ddp
from gradprom.trainables.build import (
    EVAL_BATCH,
    build_data,
    dataset_options,
    read_samples,
    seeded_generator,
    trial_device,
)
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import Reporter, config_of, register_pipeline, run_epochs
from gradprom.trainables.provenance import provenance
from gradprom.trainables.r2c_data import EvalSet, FakePool, GanData, gan_data, pool_sizes, to_signed, to_unit

#: the GAN's own trial settings (task_driven trials carry them in their rows but do not read them)
SETTINGS = (
    Setting("w_adv", 1.0, "r2c_gan: weight of the LSGAN adversarial loss (both directions)", low=0),
    Setting("w_cycle", 10.0, "r2c_gan: weight of the L1 cycle-consistency loss", low=0),
    Setting("w_identity", 5.0, "r2c_gan: weight of the L1 identity loss", low=0),
    Setting("w_cls", 0.1, "r2c_gan: weight of each cross-entropy on the generators' class outputs", low=0),
    Setting("onn_q", 3, "r2c_gan: powers per operational (Self-ONN) layer; 1 is a plain convolution", low=1,
            high=9),  # each power costs a block of weights; the paper uses 3
    Setting("gan_layers", "operational", "r2c_gan: Self-ONN layers or plain convolutions (CycleGAN-style)",
            choices=("operational", "conv")),
    Setting("gan_channels", 32, "r2c_gan: generator width (the discriminator's first layer; its second twice this)",
            low=1),
    Setting("lr_g", 2e-4, "r2c_gan: Adam learning rate of both generators", above=0),
    Setting("lr_d", 2e-4, "r2c_gan: Adam learning rate of both discriminators", above=0),
    Setting("beta1", 0.5, "r2c_gan: Adam beta1 of generators and discriminators (beta2 0.999)", low=0, below=1),
    Setting("decay_start", 0.5, "r2c_gan: fraction of training after which both rates decay linearly to 0 "
            "(1: constant)", low=0, high=1),
    Setting("fake_pool", 50, "r2c_gan: earlier fakes kept per discriminator (CycleGAN image pool); 0: off", low=0),
)


NAME = "r2c_gan"
LOSSES = ("loss_g", "loss_d", "loss_adv", "loss_cycle", "loss_identity", "loss_cls")


@dataclass
class Gan:
    """Everything an r2c_gan trial trains and evaluates with, built once."""

    cfg: TrialConfig
    device: torch.device
    data: GanData
    g_ab: Generator  # poor → good (the restorer; its head is the trial's classifier)
    g_ba: Generator  # good → poor
    d_a: Discriminator  # judges poor-quality images
    d_b: Discriminator  # judges good-quality images
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    pool_a: FakePool
    pool_b: FakePool
    steps_per_epoch: int
    steps_done: int = 0


def models(cfg: TrialConfig, channels: int, num_classes: int) -> tuple[Generator, Generator, Discriminator,
                                                                       Discriminator]:
    """(G_ab, G_ba, D_a, D_b) as cfg says, initialised from the global RNG (seed it first)."""
    def g() -> Generator:
        return Generator(channels, num_classes, cfg.gan_channels, cfg.onn_q, cfg.gan_layers)

    def d() -> Discriminator:
        return Discriminator(channels, cfg.gan_channels, cfg.onn_q, cfg.gan_layers)

    return g(), g(), d(), d()


def build_gan(cfg: TrialConfig) -> tuple[Gan, TaskData]:
    """Data, models, optimisers and pools for `cfg` (deterministic by cfg.seed), and the dataset they came from."""
    if ddp.world()[1] > 1:
        raise GradpromError("r2c_gan trains in one process; use --workers-per-trial 1")
    device = trial_device(cfg)
    task_data = build_data(cfg).to(device)
    data = gan_data(cfg, task_data)
    steps = len(data.poor) // cfg.batch_size
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if steps == 0:
        raise GradpromError(f"batch_size {cfg.batch_size} is larger than the poor-quality pool ({len(data.poor)} "
                            "images); lower --batch-size or use more data (-p n_train)")
    torch.manual_seed(cfg.seed)
    g_ab, g_ba, d_a, d_b = (m.to(device) for m in models(cfg, task_data.channels, task_data.num_classes))
    betas = (cfg.beta1, 0.999)
    opt_g = torch.optim.Adam(itertools.chain(g_ab.parameters(), g_ba.parameters()), lr=cfg.lr_g, betas=betas)
    opt_d = torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()), lr=cfg.lr_d, betas=betas)
    return Gan(cfg, device, data, g_ab, g_ba, d_a, d_b, opt_g, opt_d, FakePool(cfg.fake_pool),
               FakePool(cfg.fake_pool), steps), task_data


def rate_factor(cfg: TrialConfig, step: int, total: int) -> float:
    """1 until `decay_start` of the `total` steps, then linearly down towards 0 (the last step gets 1/n)."""
    start = math.floor(cfg.decay_start * total)
    return 1.0 if step < start else (total - step) / (total - start)


def lsgan(scores: Tensor, real: bool) -> Tensor:
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


def gan_step(t: Gan, a: Tensor, y_a: Tensor, b: Tensor, y_b: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
    """One update of both generators, then of both discriminators; returns the (detached) losses."""
    cfg = t.cfg
    # generators: translate, cycle back, keep identities; the discriminators (frozen here) judge the fakes
    t.d_a.requires_grad_(False)
    t.d_b.requires_grad_(False)
    fake_b, c_ab = t.g_ab(a)
    fake_a, c_ba = t.g_ba(b)
    rec_a, c_aba = t.g_ba(fake_b)
    rec_b, c_bab = t.g_ab(fake_a)
    id_b, c_idb = t.g_ab(b)
    id_a, c_ida = t.g_ba(a)
    adv = lsgan(t.d_b(fake_b), True) + lsgan(t.d_a(fake_a), True)
    cycle = F.l1_loss(rec_a, a) + F.l1_loss(rec_b, b)
    identity = F.l1_loss(id_b, b) + F.l1_loss(id_a, a)
    cls = sum(F.cross_entropy(c, y) for c, y in ((c_ab, y_a), (c_aba, y_a), (c_ida, y_a),
                                                 (c_ba, y_b), (c_bab, y_b), (c_idb, y_b)))
    loss_g = cfg.w_adv * adv + cfg.w_cycle * cycle + cfg.w_identity * identity + cfg.w_cls * cls
    t.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    t.opt_g.step()

    # discriminators: real images against fakes, half of them earlier ones from the pools
    t.d_a.requires_grad_(True)
    t.d_b.requires_grad_(True)
    old_b, old_a = t.pool_b.query(fake_b.detach(), gen), t.pool_a.query(fake_a.detach(), gen)
    loss_d = 0.5 * (lsgan(t.d_b(b), True) + lsgan(t.d_b(old_b), False)) + \
        0.5 * (lsgan(t.d_a(a), True) + lsgan(t.d_a(old_a), False))
    t.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    t.opt_d.step()
    return {"loss_g": loss_g.detach(), "loss_d": loss_d.detach(), "loss_adv": adv.detach(),
            "loss_cycle": cycle.detach(), "loss_identity": identity.detach(), "loss_cls": cls.detach() / 6}


def train_epoch(t: Gan, epoch: int) -> dict[str, float]:
    """One pass over pool A, each batch paired with a random batch of pool B; returns the epoch's losses."""
    cfg, d, steps, batch = t.cfg, t.data, t.steps_per_epoch, t.cfg.batch_size
    order = seeded_generator(torch.device("cpu"), cfg.seed, epoch, 1)
    idx_a = torch.randperm(len(d.poor), generator=order)
    need = steps * batch  # pool B may be smaller than pool A: walk through fresh shuffles of it
    idx_b = torch.cat([torch.randperm(len(d.good), generator=order) for _ in range(-(-need // len(d.good)))])
    idx_a, idx_b = idx_a.to(t.device), idx_b.to(t.device)
    gen = seeded_generator(torch.device("cpu"), cfg.seed, epoch, 2)  # the fake pools' draws
    total = cfg.epochs * steps
    losses: list[dict[str, Tensor]] = []
    start = time.perf_counter()
    for step in range(steps):
        for opt, lr in ((t.opt_g, cfg.lr_g), (t.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * rate_factor(cfg, t.steps_done, total)
        ia, ib = idx_a[step * batch:(step + 1) * batch], idx_b[step * batch:(step + 1) * batch]
        losses.append(gan_step(t, to_signed(d.poor[ia]), d.poor_labels[ia], to_signed(d.good[ib]),
                               d.good_labels[ib], gen))
        t.steps_done += 1
    stacked = {k: torch.stack([s[k] for s in losses]) for k in LOSSES}
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)
    elapsed = time.perf_counter() - start
    bad = [k for k, v in stacked.items() if not bool(torch.isfinite(v).all())]
    if bad:
        first = int((~torch.isfinite(stacked[bad[0]])).nonzero()[0]) + 1
        raise NonFiniteLossError(f"non-finite loss at epoch {epoch} step {first} ({bad[0]}); lower lr_g/lr_d")
    return {**{k: v.mean().item() for k, v in stacked.items()}, "lr_factor": rate_factor(cfg, t.steps_done - 1, total),
            "steps": steps, "nan_skips": 0, "time_train_s": elapsed, "step_ms": 1000 * elapsed / steps,
            "images_per_s": 2 * steps * batch / elapsed, "world_size": 1}


@torch.no_grad()
def evaluate(t: Gan, split: EvalSet, num_classes: int) -> dict[str, float]:
    """G_ab on the poor inputs: restoration quality against the clean images (NaN without), and its class
    head's confusion matrix → accuracy, sensitivity, specificity, precision, F1, F2."""
    t.g_ab.eval()
    sums = {"psnr": 0.0, "ssim": 0.0, "psnr_input": 0.0}
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=t.device)
    for start in range(0, len(split.inputs), EVAL_BATCH):
        x_in = split.inputs[start:start + EVAL_BATCH]
        restored, logits = t.g_ab(to_signed(x_in))
        cm += confusion_matrix(logits.argmax(1), split.labels[start:start + EVAL_BATCH], num_classes)
        if split.clean is not None:
            x = split.clean[start:start + EVAL_BATCH]
            x_hat = to_unit(restored)
            sums["psnr"] += psnr(x_hat, x).double().sum().item()
            sums["ssim"] += ssim(x_hat, x).double().sum().item()
            sums["psnr_input"] += psnr(x_in, x).double().sum().item()
    t.g_ab.train()
    n = len(split.inputs)
    quality = {k: v / n if split.clean is not None else math.nan for k, v in sums.items()}
    return {**quality, **classification_metrics(cm)}


def gan_state(t: Gan, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: the four models, both optimisers, both fake pools, the step count (the rate
    schedule's position) and the epoch's report. Random draws restart from (seed, epoch) streams."""
    return {"pipeline": NAME, "epoch": epoch, "metrics": metrics, "steps_done": t.steps_done,
            **{k: getattr(t, k).state_dict() for k in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d")},
            "pool_a": t.pool_a.state_dict(), "pool_b": t.pool_b.state_dict()}


def restore_gan(t: Gan, state: dict[str, Any]) -> int:
    """Load a checkpoint into the trial; returns the last finished epoch."""
    if state.get("pipeline") != NAME:
        raise GradpromError(f"the checkpoint is of a '{state.get('pipeline', 'task_driven')}' trial, not {NAME}; "
                            "resume it with its own pipeline")
    for key in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d"):
        getattr(t, key).load_state_dict(state[key])
    t.pool_a.load_state_dict(state["pool_a"], t.device)
    t.pool_b.load_state_dict(state["pool_b"], t.device)
    t.steps_done = int(state["steps_done"])
    return int(state["epoch"])


@torch.no_grad()
def preflight(cfg: TrialConfig) -> TrialConfig:
    """Names, the task, the image size against the strides, one image through both generators and both
    discriminators, and the batch against the poor-quality pool: one line on any mismatch, before Ray starts."""
    check_config(cfg)
    if cfg.task != "classification":
        raise GradpromError(f"r2c_gan restores and classifies: task must be classification, got '{cfg.task}'")
    for key, off in (("eval_dataset", ""), ("aux_task", ""), ("nan_policy", "fail")):
        if getattr(cfg, key) != off:
            raise GradpromError(f"r2c_gan has no {key} setting (a task_driven one); leave it at its default")
    data, _ = read_samples(cfg)
    g_ab, g_ba, d_a, d_b = (m.eval() for m in models(cfg, data.channels, data.num_classes))
    if cfg.image_size % d_a.factor:
        raise GradpromError(f"r2c_gan: image_size {cfg.image_size} must be a multiple of {d_a.factor} (the "
                            "discriminator's strides)")
    x = to_signed(data.train.images[:1])
    for name, g in (("G_ab", g_ab), ("G_ba", g_ba)):
        y, logits = g(x)
        if y.shape != x.shape or logits.shape != (1, data.num_classes):
            raise GradpromError(f"r2c_gan {name} turns a {tuple(x.shape)} image into {tuple(y.shape)} and "
                                f"{tuple(logits.shape)} logits; expected the same shape and {data.num_classes} "
                                "classes")
    side = cfg.image_size // d_a.factor
    for name, d in (("D_a", d_a), ("D_b", d_b)):
        if d(x).shape != (1, 1, side, side):
            raise GradpromError(f"r2c_gan {name} gives a {tuple(d(x).shape)} patch map for {cfg.image_size}px "
                                f"images; expected (1, 1, {side}, {side})")
    listed = split_sizes(cfg.dataset, task=cfg.task, image_size=cfg.image_size, seed=cfg.seed,
                         **dataset_options(cfg, cache=False))
    if listed is not None and not isinstance(data, UnpairedData):  # unpaired pools: counted when built
        poor = pool_sizes(listed[0])[0]
        if cfg.batch_size > poor:
            raise GradpromError(f"batch_size {cfg.batch_size} is larger than r2c_gan's poor-quality pool (half the "
                                f"training split of {cfg.dataset}: {poor} images); lower it or use more data")
    return cfg


@register_pipeline(
    NAME, preflight=preflight,
    metrics=("psnr", "ssim", "task_metric", "f1", "f2", "acc", "sensitivity", "specificity", "precision",
             "psnr_input", *LOSSES, "lr_factor", "step_ms", "images_per_s", "time_train_s"),
    objectives=("psnr", "task_metric"),
    spaces=("r2c_weights",),
    tasks=("classification",), task_metric="f1",
    help="restore-to-classify GAN (R2C-GAN): unpaired poor/good pools, two generators with class heads, "
         "two patch discriminators; Self-ONN or conv layers",
    unpaired=True, settings=SETTINGS,
)
def train(config: TrialConfig | dict[str, Any], report: Reporter | None = None,
          resume_from: str | Path | None = None) -> dict[str, Any]:
    """Train one r2c_gan trial for `config.epochs`, reporting val metrics (and a checkpoint) every epoch;
    the last report also carries `test_*`. Returns that last report."""
    cfg = config_of(config)
    t, task_data = build_gan(cfg)
    k = task_data.num_classes

    def scores(epoch: int) -> dict[str, Any]:
        metrics = evaluate(t, t.data.val, k)
        if epoch == cfg.epochs:
            metrics.update({f"test_{m}": v for m, v in evaluate(t, t.data.test, k).items()})
            metrics["test_task_metric"] = metrics["test_f1"]
        return metrics

    return run_epochs(cfg, report, resume_from, restore=lambda state: restore_gan(t, state),
                      constants=lambda: {"n_skipped": len(task_data.skipped), **provenance(task_data, t.device)},
                      train_epoch=lambda epoch: train_epoch(t, epoch), evaluate=scores,
                      state=lambda epoch, metrics: gan_state(t, epoch, metrics), task_metric="f1")
