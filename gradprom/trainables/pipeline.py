"""Pipelines: the kinds of trial gradprom runs, one registry entry each (as strategies, models and datasets are).

A pipeline is one function `train(cfg, report, resume_from) -> last report` plus what the orchestrator needs
to know without running it: a `preflight` that runs one image through it before Ray starts, the metric columns
it reports, its default objectives, the search spaces meant for it and the tasks it trains on. Every pipeline
reports `psnr`, `ssim` and `task_metric` (what the task metric is, it says in `metrics`), so results, fronts,
`aggregate` and `report` need no pipeline-specific code.

    register_pipeline("mine", train_mine, preflight=check_mine, metrics=("psnr", "f1"), objectives=("psnr", "f1"),
                      spaces=("my_space",), tasks=("classification",), help="…")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradprom.errors import GradpromError
from gradprom.registry import Registry
from gradprom.trainables.config import TrialConfig

#: report(metrics, checkpoint_dir or None): called once per epoch on every worker
Reporter = Callable[[dict[str, Any], "str | None"], None]
#: a pipeline's trial: train for cfg.epochs, report every epoch, return the last report
Train = Callable[[TrialConfig, "Reporter | None", "str | Path | None"], dict[str, Any]]

PIPELINES: Registry[dict[str, Any]] = Registry("pipeline")
DEFAULT = "task_driven"


def register_pipeline(name: str, train: Train, *, preflight: Callable[[TrialConfig], TrialConfig],
                      metrics: tuple[str, ...], objectives: tuple[str, ...], spaces: tuple[str, ...],
                      tasks: tuple[str, ...], help: str, datasets: tuple[str, ...] = (), reference: bool = False,
                      inspect: Callable[[dict[str, Any], Path], Any] | None = None, task_metric: str = "",
                      strategies: bool = False) -> Train:
    """Register a pipeline; `datasets` () means any dataset that has one of its `tasks`; `reference`: its trials
    score with the clean-trained reference recognizer, which a search then pretrains once before trials start;
    `inspect(config, checkpoint_dir)` rebuilds a finished trial's enhancer and recognizer for the report's
    qualitative view (`gradprom.trainables.inspect.Trained`; None: the report shows none for it); `task_metric`:
    the metric its `task_metric` column copies, for tables and plots (empty: the task's own, acc or miou);
    `strategies`: its trials train with a gradient strategy (else their rows name the pipeline as `strategy`,
    so a report or `pareto --by strategy` shows it as one system beside the strategies)."""
    if len(objectives) < 2 or not set(objectives) <= {*metrics, "task_metric"}:
        raise GradpromError(f"pipeline '{name}': its objectives {objectives} must be two or more of its metrics")
    PIPELINES.register(name, train, preflight=preflight, metrics=tuple(metrics), objectives=tuple(objectives),
                       spaces=tuple(spaces), tasks=tuple(tasks), datasets=tuple(datasets), help=help,
                       reference=reference, inspect=inspect, task_metric=task_metric,
                       strategies=strategies)
    return train


def pipeline_names() -> list[str]:
    return PIPELINES.names()


def pipeline_info(name: str) -> dict[str, Any]:
    """What `gradprom pipelines` lists: help, metrics, default objectives, spaces, tasks, datasets."""
    return PIPELINES.meta(name)


def config_of(config: TrialConfig | dict[str, Any]) -> TrialConfig:
    return config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)


def train_trial(config: TrialConfig | dict[str, Any], report: Reporter | None = None,
                resume_from: str | Path | None = None) -> dict[str, Any]:
    """Run one trial of its pipeline (`config.pipeline`): the one entry point Ray, `train` and `rerun` call."""
    cfg = config_of(config)
    return PIPELINES.get(cfg.pipeline)(cfg, report, resume_from)


def preflight(cfg: TrialConfig) -> TrialConfig:
    """The pipeline's own check of `cfg`: one image through its data and models, before Ray starts."""
    return PIPELINES.meta(cfg.pipeline)["preflight"](cfg)
