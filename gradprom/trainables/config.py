"""One trial's configuration: a flat, typed record (flat so it maps 1:1 onto Parquet columns).

Validated before anything starts: unknown keys get a did-you-mean, wrong types and ranges one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from gradprom.cache import default_cache_dir
from gradprom.errors import GradpromError
from gradprom.trainables.fastpath import CPU_CHANNELS_LAST

if TYPE_CHECKING:
    from gradprom.strategies import Strategy

DEVICES = ("auto", "cpu", "cuda")
IP_LOSSES = ("l1", "mse")
RECOGNIZER_INITS = ("pretrained", "scratch")
NAN_POLICIES = ("fail", "skip-step")
VJP_MODES = ("two", "batched")
PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
COMPILE_MODES = ("off", "inductor", "aot_eager")  # torch.compile backends (aot_eager: traced, no codegen)
GAN_LAYERS = ("operational", "conv")  # r2c_gan: Self-ONN layers or plain convolutions
ONN_Q_MAX = 9  # r2c_gan: powers per layer at most (each costs a block of weights; the paper uses 3)


@dataclass
class TrialConfig:
    """Everything one trial needs; the search space overrides some of these per trial."""

    pipeline: str = "task_driven"  # the kind of trial (`gradprom pipelines`)
    # data
    dataset: str = "synthetic"
    task: str = "classification"
    image_size: int = 48
    data_root: str = ""  # folder holding one folder per real dataset; empty: $GRADPROM_DATA
    n_train: int = 0  # split sizes: 0 is the dataset's default (synthetic 512/128/128, real datasets all);
    n_val: int = 0  # for real datasets a positive count caps the split (seeded choice)
    n_test: int = 0
    degradation: str = "gaussian:sigma=0.1"
    data_options: str = ""  # JSON object of dataset-specific options (e.g. {"views": "4CH"}); --data-option
    skip_bad: bool = False  # leave bad files of a real dataset out (and say how many) instead of stopping
    eval_dataset: str = ""  # also score the final enhancer on this dataset's test split (eval_* columns)
    # models
    enhancer: str = "srresnet"
    enhancer_blocks: int = 4
    enhancer_channels: int = 16
    recognizer: str = ""  # empty: the task's default (resnet / unet)
    recognizer_depth: int = 0  # 0: the model's default (resnet 10, unet 3)
    recognizer_width: int = 16
    recognizer_init: str = "pretrained"
    # gradient strategy
    strategy: str = "gradprom"
    lam: float = 1.0
    aux_task: str = ""  # multi-auxiliary: a second recognition task on the same images (own recognizer, λ, gate)
    lam_aux: float = 1.0  # λ of that second auxiliary
    threshold: float = 0.0
    granularity: str = "global"
    symmetric: bool = False
    ema: float = 0.0  # gating strategies: gate on an EMA of the cosine (β; 0 = off)
    gate_every: int = 1  # gating strategies: measure the cosine every k-th step, reuse the decision between
    gate_on: str = "all"  # gating strategies: "head" measures the cosine over the enhancer's last layer only
    # optimisation
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    lr_recognizer: float = 1e-3
    loss_ip: str = "l1"
    max_steps_per_epoch: int = 0  # 0: a full pass over the training split
    vjp: str = "two"  # the two VJPs through the enhancer: two calls, or one vmapped ("batched") call
    nan_policy: str = "fail"  # fail: a NaN/inf loss or gradient fails the trial; skip-step: skip it and count
    pretrain_epochs: int = 20
    # run
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch threads in this trial; 0 leaves torch's default
    gpu_memory_fraction: float = 0.0  # bound on this process's share of its GPU's memory (packing); 0: none
    precision: str = "auto"  # forward passes: auto (bf16 autocast on a CUDA GPU, fp32 on the CPU), fp32 or bf16
    memory_format: str = "auto"  # auto (channels_last on a CUDA GPU), contiguous or channels_last
    compile: str = "off"  # torch.compile the models' forward passes: off, inductor or aot_eager
    cache_dir: str = ""
    # ---- r2c_gan pipeline only (the restore-to-classify GAN; task_driven ignores these) ----
    w_adv: float = 1.0  # weight of the LSGAN adversarial loss (both directions)
    w_cycle: float = 10.0  # weight of the L1 cycle-consistency loss
    w_identity: float = 5.0  # weight of the L1 identity loss
    w_cls: float = 0.1  # weight of each cross-entropy on the generators' class outputs
    onn_q: int = 3  # powers per operational (Self-ONN) layer; 1 is a plain convolution
    gan_layers: str = "operational"  # operational (Self-ONN) or conv (plain convolutions, CycleGAN-style)
    gan_channels: int = 32  # generator width (the discriminator's first layer; its second has twice this)
    lr_g: float = 2e-4  # Adam learning rate of both generators
    lr_d: float = 2e-4  # Adam learning rate of both discriminators
    beta1: float = 0.5  # Adam beta1 of generators and discriminators (beta2 0.999)
    decay_start: float = 0.5  # fraction of training after which both rates decay linearly to 0 (1: constant)
    fake_pool: int = 50  # earlier fakes kept per discriminator (CycleGAN image pool); 0: off

    def __post_init__(self) -> None:
        self._check_types()
        positive = ("image_size", "enhancer_blocks", "enhancer_channels",
                    "recognizer_width", "epochs", "batch_size")
        # recognizer_depth 0 means the model default, so it is only checked to be ≥ 0 below
        for name in positive:
            if getattr(self, name) < 1:
                raise GradpromError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("max_steps_per_epoch", "pretrain_epochs", "threads", "recognizer_depth", "n_train", "n_val",
                     "n_test"):
            if getattr(self, name) < 0:
                raise GradpromError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        for name in ("lam", "lam_aux"):
            if not (getattr(self, name) > 0 and getattr(self, name) < float("inf")):
                raise GradpromError(f"{name} (λ) must be a finite number > 0, got {getattr(self, name)}")
        if not 0.0 <= self.gpu_memory_fraction <= 1.0:
            raise GradpromError(f"gpu_memory_fraction must lie in [0, 1] (0: no bound), got {self.gpu_memory_fraction}")
        if not -1.0 <= self.threshold <= 1.0:
            raise GradpromError(f"threshold (τ) must lie in [-1, 1], got {self.threshold}")
        for name in ("lr", "lr_recognizer"):
            if not getattr(self, name) > 0:
                raise GradpromError(f"{name} must be > 0, got {getattr(self, name)}")
        for name, valid in (("device", DEVICES), ("loss_ip", IP_LOSSES), ("recognizer_init", RECOGNIZER_INITS),
                            ("nan_policy", NAN_POLICIES), ("vjp", VJP_MODES), ("precision", PRECISIONS),
                            ("memory_format", MEMORY_FORMATS), ("compile", COMPILE_MODES)):
            if getattr(self, name) not in valid:
                raise GradpromError(f"{name} must be one of {', '.join(valid)}, got '{getattr(self, name)}'")
        if self.memory_format == "channels_last" and self.device == "cpu":
            raise GradpromError(CPU_CHANNELS_LAST)
        if self.compile != "off" and self.vjp == "batched":
            raise GradpromError("vjp=batched cannot run through torch.compile's graphs (vmap over a compiled "
                                "backward); use vjp=two with compile, or compile=off")
        self._check_r2c()
        if not self.cache_dir:
            self.cache_dir = default_cache_dir()

    def _check_r2c(self) -> None:
        """Ranges of the r2c_gan fields (checked for every pipeline, so a bad value fails before any trial)."""
        for name in ("w_adv", "w_cycle", "w_identity", "w_cls"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise GradpromError(f"{name} must be a finite number ≥ 0, got {getattr(self, name)}")
        if not 1 <= self.onn_q <= ONN_Q_MAX:
            raise GradpromError(f"onn_q must lie in 1..{ONN_Q_MAX} (powers per operational layer), got {self.onn_q}")
        if self.gan_layers not in GAN_LAYERS:
            raise GradpromError(f"gan_layers must be one of {', '.join(GAN_LAYERS)}, got '{self.gan_layers}'")
        if self.gan_channels < 1:
            raise GradpromError(f"gan_channels must be ≥ 1, got {self.gan_channels}")
        for name in ("lr_g", "lr_d"):
            if not 0 < getattr(self, name) < float("inf"):
                raise GradpromError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        if not 0 <= self.beta1 < 1:
            raise GradpromError(f"beta1 must lie in [0, 1), got {self.beta1}")
        if not 0 <= self.decay_start <= 1:
            raise GradpromError(f"decay_start must lie in [0, 1] (a fraction of training), got {self.decay_start}")
        if self.fake_pool < 0:
            raise GradpromError(f"fake_pool must be ≥ 0 (0: off), got {self.fake_pool}")

    def _check_types(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
            elif kind is int and isinstance(value, float) and value.is_integer():
                setattr(self, f.name, int(value))
            elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise GradpromError(f"{f.name} must be {kind.__name__}, got {value!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        """Build from a (search-space-merged) dict; unknown keys are refused with a did-you-mean."""
        known = {f.name for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise GradpromError(f"unknown trial setting '{key}'.{hint} Valid settings: {', '.join(sorted(known))}")
        return cls(**values)

    def dataset_options(self) -> dict[str, Any]:
        """`data_options` as a dict of typed options, checked against the dataset's own options."""
        from gradprom.datasets import dataset_options_of

        if not self.data_options:
            return {}
        try:
            options = json.loads(self.data_options)
        except json.JSONDecodeError as exc:
            raise GradpromError(f"data_options must be a JSON object, got {self.data_options!r} ({exc.msg})") from None
        if not isinstance(options, dict):
            raise GradpromError(f"data_options must be a JSON object, got {self.data_options!r}")
        return dataset_options_of(self.dataset, options)

    def eval_config(self) -> TrialConfig | None:
        """The settings of the cross-dataset evaluation (`eval_dataset`): that dataset with all its samples
        and default options, everything else as in this trial; None without one."""
        if not self.eval_dataset:
            return None
        return dataclasses.replace(self, dataset=self.eval_dataset, n_train=0, n_val=0, n_test=0, data_options="",
                                   eval_dataset="")

    def aux_config(self) -> TrialConfig | None:
        """The settings of the second auxiliary (`aux_task`): that task with its own λ and the task's default
        recognizer, everything else as in this trial; None without one."""
        if not self.aux_task:
            return None
        return dataclasses.replace(self, task=self.aux_task, lam=self.lam_aux, aux_task="", recognizer="",
                                   recognizer_depth=0)

    def build_strategy(self) -> Strategy:
        """The configured strategy, given exactly the options it accepts (lam, threshold, …)."""
        from gradprom.strategies import get_strategy, strategy_options

        options = {k: getattr(self, k) for k in strategy_options(self.strategy) if hasattr(self, k)}
        return get_strategy(self.strategy, **options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
