"""One trial's configuration: a flat, typed record (flat so it maps 1:1 onto Parquet columns).

The record holds the settings every trial has (`TRIAL`, declared below) and those the registered parts declare
for themselves (a pipeline's, the strategies', a model's or dataset's, a plugin's: `gradprom.settings`). Validated
before anything starts: unknown keys get a did-you-mean, wrong types and ranges one line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gradprom.cache import default_cache_dir
from gradprom.errors import GradpromError
from gradprom.registry import Meta
from gradprom.settings import TRIAL as EVERY_TRIAL
from gradprom.settings import Setting, declare, declared, find
from gradprom.trainables.fastpath import CPU_CHANNELS_LAST

if TYPE_CHECKING:
    from gradprom.strategies import Strategy

TRIAL = (
    Setting("pipeline", "task_driven", "the kind of trial (`gradprom pipelines`)"),
    # data
    Setting("dataset", "synthetic", "the dataset (`gradprom datasets`)"),
    Setting("task", "classification", "the recognition task"),
    Setting("image_size", 48, "image side in pixels", low=1),
    Setting("data_root", "", "folder holding one folder per real dataset; empty: $GRADPROM_DATA"),
    Setting("n_train", 0, "training split size; 0: the dataset's default (a positive count caps a real one)", low=0),
    Setting("n_val", 0, "validation split size; 0: the dataset's default", low=0),
    Setting("n_test", 0, "test split size; 0: the dataset's default", low=0),
    Setting("degradation", "gaussian:sigma=0.1", "the degradation spec (`gradprom datasets`)"),
    Setting("data_options", "", "JSON object of dataset-specific options (--data-option)"),
    Setting("skip_bad", False, "leave bad files of a real dataset out (and say how many) instead of stopping"),
    Setting("eval_dataset", "", "also score the final enhancer on this dataset's test split (eval_* columns)"),
    # models
    Setting("enhancer", "srresnet", "the enhancer (`gradprom models`)"),
    Setting("enhancer_blocks", 4, "the enhancer's residual blocks", low=1),
    Setting("enhancer_channels", 16, "the enhancer's width", low=1),
    Setting("enhancer_args", "", "the enhancer network's own keyword arguments, KEY=VALUE pairs separated by spaces, "
            "lists with commas (e.g. features=8,8,16,32,64,8 for monai:BasicUNet; head_layer=NAME for its gate)"),
    Setting("recognizer", "", "the recognizer; empty: the task's default (resnet / unet)"),
    Setting("recognizer_depth", 0, "the recognizer's depth; 0: the model's default (resnet 10, unet 3)", low=0),
    Setting("recognizer_width", 16, "the recognizer's width", low=1),
    Setting("recognizer_args", "", "the recognizer network's own keyword arguments, as enhancer_args (e.g. "
            "dropout_prob=0.1 for monai:DenseNet121)"),
    Setting("recognizer_init", "pretrained", "start the recognizer pretrained on clean images, or from scratch",
            choices=("pretrained", "scratch")),
    # the recognizers' share of the enhancer's update
    Setting("strategy", "gradprom", "the gradient strategy (`gradprom strategies`)"),
    Setting("aux_task", "", "a second recognition task on the same images (own recognizer, λ and gate)"),
    Setting("lam_aux", 1.0, "λ of that second auxiliary", above=0),
    # optimisation
    Setting("epochs", 6, "training epochs", low=1),
    Setting("batch_size", 32, "images per step", low=1),
    Setting("lr", 1e-3, "the enhancer's Adam learning rate", above=0),
    Setting("lr_recognizer", 1e-3, "the recognizer's Adam learning rate", above=0),
    Setting("loss_ip", "l1", "the enhancer's image loss: l1, mse (against the clean image) or a self-supervised one "
            "(neighbor2neighbor, noise2self, r2r; `gradprom settings`)"),
    Setting("clean_targets", True, "false: training never reads a clean image (only observations; a self-supervised "
            "loss_ip, the reference trained on observations)"),
    Setting("max_steps_per_epoch", 0, "0: a full pass over the training split", low=0),
    Setting("nan_policy", "fail", "fail: a NaN/inf loss or gradient fails the trial; skip-step: skip it and count",
            choices=("fail", "skip-step")),
    Setting("pretrain_epochs", 20, "epochs of the clean-trained recognizers", low=0),
    # run
    Setting("seed", 0, "the trial's seed"),
    Setting("device", "auto", "where the trial runs", choices=("auto", "cpu", "cuda")),
    Setting("threads", 0, "torch threads in this trial; 0 leaves torch's default", low=0),
    Setting("gpu_memory_fraction", 0.0, "bound on this process's share of its GPU's memory (packing); 0: none",
            low=0, high=1),
    Setting("precision", "auto", "forward passes: auto (bf16 autocast on a CUDA GPU, fp32 on the CPU), fp32 or bf16",
            choices=("auto", "fp32", "bf16")),
    Setting("memory_format", "auto", "auto (channels_last on a CUDA GPU), contiguous or channels_last",
            choices=("auto", "contiguous", "channels_last")),
    Setting("compile", "off", "torch.compile the models' forward passes (aot_eager: traced, no codegen)",
            choices=("off", "inductor", "aot_eager")),
    Setting("cache_dir", "", "the cache folder; empty: $GRADPROM_CACHE or the user's cache"),
)
declare(EVERY_TRIAL, TRIAL)


def all_settings() -> dict[str, Setting]:
    """Every trial setting: the trial's own, then each registered part's, in the order they were declared."""
    return declared()


class TrialConfig:
    """Everything one trial needs; the search space overrides some of these per trial. Read a setting as an
    attribute (`cfg.lam`); a changed copy is `cfg.replace(lam=0.5)`."""

    # the trial's own settings, for readers and type checkers (values live in `_values`)
    pipeline: str
    dataset: str
    task: str
    image_size: int
    data_root: str
    n_train: int
    n_val: int
    n_test: int
    degradation: str
    data_options: str
    skip_bad: bool
    eval_dataset: str
    enhancer: str
    enhancer_blocks: int
    enhancer_channels: int
    enhancer_args: str
    recognizer: str
    recognizer_depth: int
    recognizer_width: int
    recognizer_args: str
    recognizer_init: str
    strategy: str
    aux_task: str
    lam_aux: float
    epochs: int
    batch_size: int
    lr: float
    lr_recognizer: float
    loss_ip: str
    max_steps_per_epoch: int
    nan_policy: str
    pretrain_epochs: int
    seed: int
    device: str
    threads: int
    gpu_memory_fraction: float
    precision: str
    memory_format: str
    compile: str
    cache_dir: str

    def __init__(self, **values: Any) -> None:
        settings = all_settings()
        for key in values:
            find(key, settings)
        checked = {name: s.check(values.get(name, s.default)) for name, s in settings.items()}
        object.__setattr__(self, "_values", checked)
        if self.memory_format == "channels_last" and self.device == "cpu":
            raise GradpromError(CPU_CHANNELS_LAST)
        if self.compile != "off" and self.get("vjp") == "batched":
            raise GradpromError("vjp=batched cannot run through torch.compile's graphs (vmap over a compiled "
                                "backward); use vjp=two with compile, or compile=off")
        if not self.cache_dir:
            checked["cache_dir"] = default_cache_dir()

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"trial setting '{name}' is not declared (by the trial or a registered part)")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a TrialConfig does not change; use cfg.replace({name}=...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrialConfig) and self._values == other._values

    def __repr__(self) -> str:
        return f"TrialConfig({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    def __getstate__(self) -> dict[str, Any]:
        return dict(self._values)

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(state))

    def get(self, name: str, default: Any = None) -> Any:
        """Setting `name`, or `default` when no registered part declares it (e.g. a plugin not loaded here)."""
        return self._values.get(name, default)

    def replace(self, **changes: Any) -> TrialConfig:
        """A copy with `changes`, checked as a new config is."""
        return TrialConfig(**{**self._values, **changes})

    def settings_of(self, meta: Meta) -> dict[str, Any]:
        """The values of the settings a registered part declared (its `meta.settings`), as keyword options."""
        return {s.name: self._values[s.name] for s in meta.settings}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        """Build from a (search-space-merged) dict; unknown keys are refused with a did-you-mean."""
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
        # scored by that dataset's reference trained on its clean images: it is a scorer, not the trial's data
        return self.replace(dataset=self.eval_dataset, n_train=0, n_val=0, n_test=0, data_options="", eval_dataset="",
                            clean_targets=True)

    def aux_config(self) -> TrialConfig | None:
        """The settings of the second auxiliary (`aux_task`): that task with its own λ and the task's default
        recognizer, everything else as in this trial; None without one."""
        if not self.aux_task:
            return None
        return self.replace(task=self.aux_task, lam=self.lam_aux, aux_task="", recognizer="", recognizer_depth=0)

    def build_strategy(self) -> Strategy:
        """The configured strategy, given exactly the options it accepts (lam, threshold, …)."""
        from gradprom.strategies import STRATEGIES

        return STRATEGIES.create(self.strategy, **self.settings_of(STRATEGIES.meta(self.strategy)))

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name (the trial's own first): the flat record a row and a manifest keep."""
        return dict(self._values)

    @classmethod
    def field_names(cls) -> list[str]:
        """The names of every trial setting (the columns a row's config has)."""
        return list(all_settings())
