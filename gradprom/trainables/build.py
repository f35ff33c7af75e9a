"""Building a task-driven trial: its data, degradation, models, strategy, optimisers and fixed inputs.

Everything a trial trains and evaluates with is made here once (`build_trial`); `preflight` runs one image
through the same pipeline before Ray starts, so a mismatch is one line and not a failed trial.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradprom.datasets import (
    DATASETS,
    Degradation,
    Split,
    TaskData,
    dataset_info,
    get_dataset,
    get_degradation,
    parse_degradation,
)
from gradprom.errors import GradpromError
from gradprom.keyvalue import parse_model_args
from gradprom.models import MODELS, create_model, model_names
from gradprom.strategies import Strategy
from gradprom.trainables import distributed as ddp
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.fastpath import FastPath
from gradprom.trainables.image_loss import IMAGE_LOSSES
from gradprom.trainables.reference import CALIBRATION_IMAGES, pretrained_recognizer, recognizer_spec

EVAL_BATCH = 64


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GradpromError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def trial_device(cfg: TrialConfig) -> torch.device:
    """The trial's device, with its process-wide settings applied: torch threads, and on a GPU the memory bound
    that lets packed trials (`--gpus-per-trial 0.25`) share it: past its fraction, an allocation raises CUDA's
    out-of-memory error in this trial instead of starving the trials beside it."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.gpu_memory_fraction and device.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(cfg.gpu_memory_fraction, device)
    return device


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
    aux: Auxiliary | None = None  # a second auxiliary task (multi-auxiliary training)
    fast: FastPath = FastPath()  # precision, memory format and compile of the forward passes
    image_loss: Callable[..., tuple[Tensor, Tensor]] | None = None  # L_IP with its settings (`image_loss_of`)
    train_degradation: Degradation | None = None  # what a training step applies (none: the data are observations)


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
    options.update(cfg.settings_of(DATASETS.meta(cfg.dataset)))
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
    check_config(cfg)
    for role in ("enhancer", "recognizer"):
        name = getattr(cfg, role)
        if name and role not in MODELS.meta(name).roles:
            raise GradpromError(f"{role} '{name}' is not a {role}; {role}s: {', '.join(model_names(role=role))}")
    data, other = read_samples(cfg)
    if other is not None and other.channels != data.channels:
        raise GradpromError(f"eval dataset '{other.name}' has {other.channels}-channel images but '{data.name}' "
                            f"has {data.channels}; the enhancer cannot take them, pick a dataset with "
                            f"{data.channels} channel(s)")
    degradation = parse_degradation(cfg.degradation)
    x = inputs_of(data.train, degradation, torch.Generator().manual_seed(0))
    enhancer = create_enhancer(cfg, data, degradation.scale, semantic_guide(cfg, data, torch.device("cpu"),
                                                                           pretrained=False)).eval()
    x_hat = enhancer(x)
    if x_hat.shape != data.train.images.shape:
        raise GradpromError(f"the enhancer returns {tuple(x_hat.shape[-2:])} images for {cfg.image_size}px targets "
                            f"under '{cfg.degradation}'; check the degradation's scale")
    image_loss_of(cfg, degradation)(enhancer, x, x_hat, data.train.images if cfg.clean_targets else None,
                                    torch.Generator().manual_seed(0))  # odd sizes, r2r without σ: one line now
    for reference in (False, True):
        name, kwargs = recognizer_spec(cfg, data, reference=reference)
        create_model(name, **kwargs).eval()(x_hat)
    return cfg


def semantic_guide(cfg: TrialConfig, data: TaskData, device: torch.device,
                   pretrained: bool = True) -> nn.Module | None:
    """For a guided enhancer (`sesr`): the recognizer pretrained on clean images, frozen, whose encoder features
    steer it (the semantic extraction network; with `pretrained=False` an untrained one, for shape checks).
    It is a copy of its own, never the trial's recognizer or the reference that scores the images. None for an
    enhancer that takes no guide."""
    if not MODELS.meta(cfg.enhancer).guided:
        return None
    if pretrained:
        model = pretrained_recognizer(cfg, data, device)
    else:
        name, kwargs = recognizer_spec(cfg, data)
        model = create_model(name, **kwargs).to(device)
    return model.requires_grad_(False).eval()


def create_enhancer(cfg: TrialConfig, data: TaskData, scale: int, guide: nn.Module | None) -> nn.Module:
    """The configured enhancer for `data`'s channels at the degradation's `scale`; a guided one gets `guide`."""
    meta = MODELS.meta(cfg.enhancer)
    extra = {"guide": guide} if meta.guided else {}
    return create_model(cfg.enhancer, in_channels=data.channels, blocks=cfg.enhancer_blocks,
                        channels=cfg.enhancer_channels, scale=scale, **extra, **cfg.settings_of(meta),
                        **parse_model_args(cfg.enhancer_args, "enhancer_args"))


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
    trial's images with the other task's targets (under clean_targets=false the same observations)."""
    aux_cfg = cfg.aux_config()
    if aux_cfg is None:
        return None
    aux_data = trial_data(aux_cfg, device)  # the very observations the trial's own task has (same seed and stream)
    for split in ("train", "val", "test"):
        if not torch.equal(getattr(aux_data, split).images, getattr(data, split).images):
            raise GradpromError(f"dataset '{cfg.dataset}' does not give its {cfg.task} and {cfg.aux_task} tasks "
                                f"the same images ({split} split differs); aux_task needs one image set, both labels")
    strategy = aux_cfg.build_strategy()
    recognizer, reference, opt = make_recognizers(aux_cfg, aux_data, device, strategy)
    return Auxiliary(aux_data, recognizer, reference, strategy, opt)


def build_trial(cfg: TrialConfig) -> Trial:
    """Data, degradation, models, strategy and optimisers for `cfg` (deterministic by cfg.seed)."""
    device = trial_device(cfg)
    strategy = cfg.build_strategy()
    degradation = parse_degradation(cfg.degradation)
    data = trial_data(cfg, device)
    recognizer, reference, opt_r = make_recognizers(cfg, data, device, strategy)
    aux = build_auxiliary(cfg, data, device)

    guide = semantic_guide(cfg, data, device)
    torch.manual_seed(cfg.seed)
    enhancer = create_enhancer(cfg, data, degradation.scale, guide).to(device)
    ddp.broadcast_module_(enhancer)
    opt_e = torch.optim.Adam(enhancer.parameters(), lr=cfg.lr)

    # Validation and test degradations are drawn once from fixed streams: every epoch and every trial
    # of a search scores the very same degraded images.
    val_inputs = inputs_of(data.val, degradation, seeded_generator(device, cfg.seed, 101))
    test_inputs = inputs_of(data.test, degradation, seeded_generator(device, cfg.seed, 202))
    train_degradation = degradation if cfg.clean_targets else get_degradation("none")
    calibration = degrade_fixed(train_degradation, data.train.images[:CALIBRATION_IMAGES],
                                seeded_generator(device, cfg.seed, 303))
    fast = FastPath.resolve(cfg.precision, cfg.memory_format, cfg.compile, device)
    for model in (enhancer, recognizer, *((aux.recognizer,) if aux else ())):
        fast.prepare(model)
    for model in (reference, *((aux.reference,) if aux else ())):
        fast.prepare(model, compile=False)
    trial = Trial(cfg, device, data, degradation, enhancer, recognizer, reference, strategy, opt_e, opt_r,
                  val_inputs, test_inputs, calibration, aux=aux, fast=fast, image_loss=image_loss_of(cfg, degradation),
                  train_degradation=train_degradation)
    eval_cfg = cfg.eval_config()
    if eval_cfg is not None:
        trial.eval_data = build_data(eval_cfg).to(device)
        trial.eval_reference = pretrained_recognizer(eval_cfg, trial.eval_data, device, reference=True)
        trial.eval_reference.requires_grad_(False)
        trial.fast.prepare(trial.eval_reference, compile=False)
        trial.eval_inputs = inputs_of(trial.eval_data.test, degradation, seeded_generator(device, cfg.seed, 404))
    return trial


def forward(t: Trial, images: Tensor) -> Tensor:
    """The enhancer on `images` under the fast path, fp32 out (the forward a self-supervised loss takes itself)."""
    with t.fast.autocast():
        return t.enhancer(t.fast.layout(images)).float()


def trial_data(cfg: TrialConfig, device: torch.device) -> TaskData:
    """The trial's data on `device` as it trains: under clean_targets=false the training split holds observations
    only, never a clean image, for the trial and for the recognizers pretrained for it (before a search starts too,
    so the cached reference is the one a trial would train)."""
    data = build_data(cfg).to(device)
    return data if cfg.clean_targets else observations(cfg, data, parse_degradation(cfg.degradation), device)


def observations(cfg: TrialConfig, data: TaskData, degradation: Degradation, device: torch.device) -> TaskData:
    """`data` with its training images replaced by observations, the clean ones left behind: a dataset's own
    scans (`Split.observed`), else its images degraded once from a fixed stream (one noisy observation per image,
    as a scanner gives, not a fresh draw each step). What `clean_targets=false` trains the enhancer and, since no
    clean image is read, the recognizers on."""
    train = data.train
    seen = train.observed if train.observed is not None else \
        degrade_fixed(degradation, train.images, seeded_generator(device, cfg.seed, 606))
    return dataclasses.replace(data, train=Split(seen, train.targets))


def inputs_of(split: Split, degradation: Degradation, gen: torch.Generator) -> Tensor:
    """A split's inputs: its observed scans when the dataset has them, else its images degraded from `gen`."""
    return split.observed if split.observed is not None else degrade_fixed(degradation, split.images, gen)


def image_loss_of(cfg: TrialConfig, degradation: Degradation) -> Callable[..., tuple[Tensor, Tensor]]:
    """L_IP as the trial uses it (`loss_ip`, with the loss's own settings); r2r with r2r_sigma 0 takes the σ of a
    gaussian degradation."""
    settings = cfg.settings_of(IMAGE_LOSSES.meta(cfg.loss_ip))
    if settings.get("r2r_sigma") == 0.0 and degradation.name == "gaussian":
        settings["r2r_sigma"] = float(degradation.params["sigma"])
    return functools.partial(IMAGE_LOSSES.get(cfg.loss_ip), **settings)


def degrade_fixed(degradation: Degradation, images: Tensor, gen: torch.Generator) -> Tensor:
    return torch.cat([degradation(images[i:i + EVAL_BATCH], gen) for i in range(0, len(images), EVAL_BATCH)])


