"""Dataset containers and the dataset registry.

Every dataset, built-in or loaded from disk, ends up as one `TaskData`: three in-memory splits of
clean [0, 1] images plus task targets. Degradations are applied later, on the device, so the clean
image stays the enhancement target and one dataset serves every noise level of a search.
"""

from __future__ import annotations

import inspect
import json
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gradprom.errors import GradpromError
from gradprom.keyvalue import parse_as, split_pair
from gradprom.registry import Meta, Registry, check_options

TASKS = ("classification", "segmentation")

# Arguments every dataset factory takes; anything else is a dataset-specific option.
_COMMON_ARGS = ("task", "image_size", "seed")
# Options set through trial settings of their own (--data-root, n_*, --skip-bad, the cache folder), not through
# --data-option.
MANAGED_OPTIONS = {"data_root": "--data-root", "n_train": "-p n_train=N", "n_val": "-p n_val=N",
                   "n_test": "-p n_test=N", "skip_bad": "--skip-bad", "cache_dir": "$GRADPROM_CACHE"}


@dataclass
class Split:
    """One split held in memory: images float32 [N, C, H, W] in [0, 1], targets int64 [N] or [N, H, W].

    `images` are the clean images a degradation is applied to. A dataset of real scans, which come degraded
    already, may also give `observed`: the scans as acquired, the trial's input (then `images` holds their clean
    twins where some exist, a phantom or a high-dose scan, and NaN where none does)."""

    images: torch.Tensor
    targets: torch.Tensor
    observed: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # Catch loader bugs where they happen rather than deep inside a training step.
        if self.images.ndim != 4:
            raise ValueError(f"Split.images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.targets.shape[:1] != self.images.shape[:1]:
            raise ValueError(f"Split has {self.images.shape[0]} images but {self.targets.shape[0]} targets")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """Copy to `device` (e.g. once per trial, so batches are sliced on the GPU with no loader)."""
        return Split(self.images.to(device), self.targets.to(device),
                     None if self.observed is None else self.observed.to(device))


@dataclass
class TaskData:
    """A dataset ready for one task: metadata the models need plus the train/val/test splits."""

    name: str
    task: str
    num_classes: int
    channels: int
    image_size: int
    class_names: list[str]
    train: Split
    val: Split
    test: Split
    skipped: list[str] = field(default_factory=list)  # why each bad file left out (datasets read with skip_bad)
    fingerprint: str = ""  # for data read from disk: a hash of its samples and their files' stamps

    def to(self, device: torch.device | str) -> TaskData:
        """Copy every split to `device`; metadata is shared."""
        return TaskData(
            name=self.name,
            task=self.task,
            num_classes=self.num_classes,
            channels=self.channels,
            image_size=self.image_size,
            class_names=list(self.class_names),
            train=self.train.to(device),
            val=self.val.to(device),
            test=self.test.to(device),
            skipped=list(self.skipped),
            fingerprint=self.fingerprint,
        )


@dataclass(frozen=True, kw_only=True)
class DatasetMeta(Meta):
    """A dataset's entry: the `tasks` it has; `loader` (a `disk.Loader`) for one read from disk; whether its labels
    do not depend on orientation (`dihedral_invariant`, so a recognizer may see its images turned); whether it is
    `unpaired` (no clean target for an image: only a pipeline that takes unpaired data trains on it); whether, given
its options, it `observes` (its files are scans as acquired, the trial's inputs, with clean twins or none). Its
    `settings` are trial settings its factory takes as keyword options (searchable, unlike `--data-option`)."""

    tasks: tuple[str, ...] = TASKS
    loader: Any = None
    dihedral_invariant: bool = False
    unpaired: bool = False
    observes: Callable[[dict[str, Any]], bool] | None = None  # (its options) -> whether its files are scans as acquired


DATASETS: Registry[TaskData, DatasetMeta] = Registry("dataset", DatasetMeta)
register_dataset = DATASETS.register


def check_count(dataset: str, option: str, value: Any) -> int:
    """Validate a sample-count option (an integer >= 1) and return it as int; one-line error otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise GradpromError(f"dataset '{dataset}': {option} must be an integer >= 1, got {value!r}")
    return int(value)


def check_image_size(image_size: Any) -> None:
    """Image sizes are integers >= 16 and multiples of 4 (what the models' down/upsampling needs)."""
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 16 \
            or image_size % 4:
        raise GradpromError(f"image_size must be an integer >= 16 and a multiple of 4, got {image_size!r}")


def _options_of(name: str) -> dict[str, Any] | None:
    """The dataset-specific keyword options of a factory with their defaults (None where it has none); None if it
    takes **kwargs."""
    options = DATASETS.options(name, skip=_COMMON_ARGS)
    return None if options is None else {k: (None if v is inspect.Parameter.empty else v) for k, v in options.items()}


def get_dataset(
    name: str, task: str = "classification", image_size: int = 64, seed: int = 0, **options: Any
) -> TaskData:
    """Build dataset `name` for `task`, validating everything a user can mistype before any work starts."""
    tasks = DATASETS.meta(name).tasks  # unknown name -> did-you-mean error
    if task not in tasks:
        raise GradpromError(
            f"dataset '{name}' does not support task '{task}'; supported tasks: {', '.join(tasks)}"
        )
    check_image_size(image_size)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise GradpromError(f"seed must be an integer >= 0, got {seed!r}")
    return DATASETS.create(name, skip=_COMMON_ARGS, task=task, image_size=int(image_size), seed=int(seed),
                           **options)




def dataset_names() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def orientation_free(name: str) -> bool:
    """Whether dataset `name` was registered with `dihedral_invariant=True`: its labels (and masks, turned with the
    image) do not depend on orientation, so a recognizer may be shown its images rotated and mirrored."""
    return name in DATASETS and DATASETS.meta(name).dihedral_invariant


def dataset_info(name: str) -> dict[str, Any]:
    """What `gradprom datasets` lists for one dataset: its tasks, help text and options with defaults."""
    meta = DATASETS.meta(name)
    return {
        "name": name,
        "tasks": meta.tasks,
        "help": meta.help,
        "unpaired": meta.unpaired,
        "settings": tuple(s.name for s in meta.settings),
        "options": _options_of(name) or {},
    }


def dataset_options_of(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check `--data-option` values for dataset `name`: known, not managed elsewhere, of the default's type.

    Values given as text (from the CLI) are converted to the option's type; returns the typed options.
    """
    info = dataset_info(name)
    managed = {**MANAGED_OPTIONS, **{k: f"-p {k}=VALUE (a trial setting)" for k in info["settings"]}}
    valid = {k: v for k, v in info["options"].items() if k not in managed}
    for key in options:
        if key in managed:
            raise GradpromError(f"dataset option '{key}' is not a --data-option: set it with {managed[key]}")
    check_options(f"dataset '{name}'", options, valid)
    out: dict[str, Any] = {}
    for key, value in options.items():
        kind = type(valid[key]) if valid[key] is not None else str
        try:
            if isinstance(value, str):
                value = parse_as(value, kind)
            elif kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
        except ValueError:
            raise GradpromError(f"dataset '{name}': option {key} must be {kind.__name__}, got {value!r}") from None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise GradpromError(f"dataset '{name}': option {key} must be {kind.__name__}, got {value!r}")
        out[key] = value
    return out


def parse_dataset_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` texts (repeated `--data-option`) → typed options of dataset `name`."""
    raw = dict(split_pair(item, f"--data-option '{item}' is not KEY=VALUE (e.g. --data-option views=4CH)")
               for item in pairs)
    return dataset_options_of(name, raw)



def dataset_options_json(name: str, pairs: list[str]) -> str:
    """`--data-option KEY=VALUE` texts as the `data_options` trial setting: the typed options as sorted JSON."""
    return json.dumps(parse_dataset_options(name, pairs), sort_keys=True)
