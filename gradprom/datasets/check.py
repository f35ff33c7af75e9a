"""`gradprom datasets check`: validate a dataset's layout and every one of its files, and count what is there.

Every sample of every split is listed and decoded exactly as training would (no caps, no cache), so a
file that passes here loads in a search. Problems are collected, not raised: the report lists each bad
file with its reason. Without `--task`, every task of the dataset is checked whose files are on disk (a
task whose optional part is absent, e.g. QaTa-COV19's control group, is noted, not failed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gradprom.datasets.base import DATASETS, check_image_size, get_dataset
from gradprom.datasets.disk import SPLIT_NAMES, DiskLoader, configured
from gradprom.errors import DataMissing, GradpromError

#: step(task, samples done, samples in total) after each decoded sample
Progress = Callable[[str, int, int], None]


@dataclass
class TaskCounts:
    """Samples per split, and per class: images of that class (classification) or images showing that label
    (segmentation), counted at the checked image size."""

    task: str
    class_names: list[str]
    samples: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLIT_NAMES, 0))
    per_class: dict[str, list[int]] = field(default_factory=dict)

    def add(self, split: str, target: torch.Tensor) -> None:
        row = self.per_class.setdefault(split, [0] * len(self.class_names))
        self.samples[split] += 1
        labels = [int(target)] if target.ndim == 0 else torch.unique(target).tolist()
        for label in labels:
            row[label] += 1


@dataclass
class CheckReport:
    """What `check_dataset` found: counts per task, bad files (one line each) and layout problems."""

    name: str
    counts: list[TaskCounts] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a task whose layout could not be listed at all
    absent: list[tuple[str, str]] = field(default_factory=list)  # (task, why): its files are not on disk

    @property
    def ok(self) -> bool:
        return not self.bad and not self.problems and bool(self.counts)

    @property
    def total(self) -> int:
        return sum(sum(c.samples.values()) for c in self.counts)


def check_dataset(name: str, data_root: str = "", task: str = "", image_size: int = 48, seed: int = 0,
                  step: Progress | None = None, options: dict[str, Any] | None = None) -> CheckReport:
    """Check dataset `name` for `task` (empty: every task it supports whose files are present), read with its
    dataset-specific `options` (`--data-option`, checked)."""
    meta = DATASETS.meta(name)
    tasks = meta.tasks
    if task and task not in tasks:
        raise GradpromError(f"dataset '{name}' has no task '{task}'; its tasks: {', '.join(tasks)}")
    check_image_size(image_size)
    report = CheckReport(name)
    loader: DiskLoader | None = meta.loader
    for t in (task,) if task else tasks:
        if loader is None:  # built in or a plugin without files: count what it generates
            _count_generated(report, name, t, image_size, seed, options or {})
            continue
        try:
            root = loader.locate(data_root, t)
            groups = loader.list_samples(root, t, seed, image_size, **(options or {}))
            task_loader = configured(loader, root, t, options or {})
        except DataMissing as exc:
            if task:
                raise
            report.absent.append((t, str(exc)))
            continue
        except GradpromError as exc:
            report.problems.append(f"{t}: {exc}")
            continue
        _decode_all(report, task_loader, t, groups, image_size, step)
    if not report.counts and not report.problems:  # nothing of the dataset on disk: the usual one line
        raise DataMissing(report.absent[0][1])
    return report


def _decode_all(report: CheckReport, loader: DiskLoader, task: str, groups: list[list], image_size: int,
                step: Progress | None) -> None:
    counts = TaskCounts(task, list(loader.class_names[task]))
    total, done = sum(len(g) for g in groups), 0
    for split, group in zip(SPLIT_NAMES, groups, strict=True):
        for sample in group:
            try:
                target = loader.decode(sample, task, image_size)[1]
                counts.add(split, target)
            except GradpromError as exc:
                if str(exc) not in report.bad:
                    report.bad.append(str(exc))
            done += 1
            if step is not None:
                step(task, done, total)
    report.counts.append(counts)


def _count_generated(report: CheckReport, name: str, task: str, image_size: int, seed: int,
                     options: dict[str, Any]) -> None:
    data = get_dataset(name, task=task, image_size=image_size, seed=seed, **options)
    counts = TaskCounts(task, list(data.class_names))
    for split in SPLIT_NAMES:
        for target in getattr(data, split).targets:
            counts.add(split, target)
    report.counts.append(counts)
