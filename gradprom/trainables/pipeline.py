"""Pipelines: the kinds of trial gradprom runs, one registry entry each (as strategies, models and datasets are).

A pipeline is one function `train(cfg, report, resume_from) -> last report` plus what the orchestrator needs
to know without running it: a `preflight` that runs one image through it before Ray starts, the metric columns
it reports, its default objectives, the search spaces meant for it and the tasks it trains on. Every pipeline
reports `psnr`, `ssim` and `task_metric` (what the task metric is, it says in `metrics`), so results, fronts,
`aggregate` and `report` need no pipeline-specific code.

    @register_pipeline("mine", preflight=check_mine, metrics=("psnr", "f1"), objectives=("psnr", "f1"),
                       spaces=("my_space",), tasks=("classification",), help="…",
                       settings=(Setting("my_weight", 1.0, "…", low=0),))
    def train_mine(cfg, report, resume_from): ...
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradprom import SCHEMA_VERSION
from gradprom.errors import GradpromError
from gradprom.registry import Meta, Registry
from gradprom.trainables import distributed as ddp
from gradprom.trainables.checkpoint import load_checkpoint, save_checkpoint
from gradprom.trainables.config import TrialConfig

#: in the last result of a trial that failed for good (a NaN loss, bad data), its reason: the Ray glue sends it
#: instead of raising, so the trial is not retried, and results read the trial as failed
FAILED_KEY = "failed"

#: report(metrics, checkpoint_dir or None): called once per epoch on every worker
Reporter = Callable[[dict[str, Any], "str | None"], None]
#: a pipeline's trial: train for cfg.epochs, report every epoch, return the last report
Train = Callable[[TrialConfig, "Reporter | None", "str | Path | None"], dict[str, Any]]



@dataclass(frozen=True, kw_only=True)
class PipelineMeta(Meta):
    """What the orchestrator knows of a pipeline without running it.

    `preflight(cfg)` runs one image through it before Ray starts; `metrics` its metric columns; `objectives` its
    default ones (two or more of `metrics`); `spaces` the search spaces meant for it (the first is the default);
    `tasks` what it trains on; `datasets` () any dataset that has one of its tasks; `unpaired`: it trains on
    unpaired datasets too (no clean target for an image); `reference`: its trials score with the clean-trained
    reference recognizer, which a search pretrains once before trials start; `inspect(config, checkpoint_dir)`
    rebuilds a finished trial's enhancer and recognizer for the report's qualitative view (None: the report shows
    none for it); `task_metric` the metric its `task_metric` column copies (empty: the task's own, acc or dice);
    `strategies`: its trials train with a gradient strategy (else their rows name the pipeline as `strategy`, so
    a report or `pareto --by strategy` shows it as one system beside the strategies); `observations`: it honours
    `clean_targets=false` (its training never reads a clean image)."""

    preflight: Callable[[TrialConfig], TrialConfig]
    metrics: tuple[str, ...]
    objectives: tuple[str, ...]
    spaces: tuple[str, ...]
    tasks: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    unpaired: bool = False
    reference: bool = False
    inspect: Callable[[dict[str, Any], Path], Any] | None = None
    task_metric: str = ""
    strategies: bool = False
    observations: bool = False  # it honours clean_targets=false (trains on observations alone)

    def __post_init__(self) -> None:
        if len(self.objectives) < 2 or not set(self.objectives) <= {*self.metrics, "task_metric"}:
            raise GradpromError(f"a pipeline's objectives {self.objectives} must be two or more of its metrics")


PIPELINES: Registry[dict[str, Any], PipelineMeta] = Registry("pipeline", PipelineMeta)
DEFAULT = "task_driven"


def register_pipeline(name: str, **meta: Any) -> Callable[[Train], Train]:
    """Decorator registering a pipeline's `train(cfg, report, resume_from)` under `name`; `meta` as `PipelineMeta`
    lists it, `settings` the trial settings it reads beyond every trial's."""
    return PIPELINES.register(name, **meta)


def pipeline_names() -> list[str]:
    return PIPELINES.names()


def pipeline_info(name: str) -> PipelineMeta:
    """What `gradprom pipelines` lists: help, metrics, default objectives, spaces, tasks, datasets, settings."""
    return PIPELINES.meta(name)


def config_of(config: TrialConfig | dict[str, Any]) -> TrialConfig:
    return config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)


def run_epochs(cfg: TrialConfig, report: Reporter | None, resume_from: str | Path | None, *,
               restore: Callable[[dict[str, Any]], int], constants: Callable[[], dict[str, Any]],
               train_epoch: Callable[[int], dict[str, Any]], evaluate: Callable[[int], dict[str, Any]],
               state: Callable[[int, dict[str, Any]], dict[str, Any]], task_metric: str) -> dict[str, Any]:
    """Every pipeline's epoch loop: resume, train, evaluate, checkpoint and report once per epoch, so resuming,
    timing and reporting mean the same in every pipeline. Returns the last report.

    `restore(checkpoint)` loads a checkpoint into the trial and returns its epoch; `constants()` the columns every
    report carries (provenance, reference levels), computed once after resuming; `train_epoch(epoch)` and
    `evaluate(epoch)` (validation figures; at the last epoch also `test_*`) the epoch's figures; `state(epoch,
    metrics)` what its checkpoint holds; `task_metric` the column `task_metric` copies. A trial that had finished
    when its process died reports its last epoch again, unchanged. Only rank 0 writes checkpoints.
    """
    restored = load_checkpoint(resume_from) if resume_from else None
    first_epoch = restore(restored) + 1 if restored else 1
    if restored and first_epoch > cfg.epochs and restored.get("metrics"):
        if report is not None:
            report(dict(restored["metrics"]), None)
        return dict(restored["metrics"])
    fixed = constants()
    rank, _ = ddp.world()
    started, last = time.perf_counter(), {}
    for epoch in range(first_epoch, cfg.epochs + 1):
        metrics: dict[str, Any] = {"epoch": epoch, "schema_version": SCHEMA_VERSION, "resumed_from": first_epoch - 1,
                                   **fixed}
        metrics.update(train_epoch(epoch))
        tic = time.perf_counter()
        metrics.update(evaluate(epoch))
        metrics["time_eval_s"] = time.perf_counter() - tic
        metrics["wall_s"] = time.perf_counter() - started
        metrics["task_metric"] = metrics[task_metric]
        with tempfile.TemporaryDirectory(prefix="gradprom-ckpt-") as tmp:
            checkpoint_dir = str(save_checkpoint(tmp, state(epoch, metrics)).parent) if rank == 0 else None
            if report is not None:
                report(metrics, checkpoint_dir)
        last = metrics
    return last


def train_trial(config: TrialConfig | dict[str, Any], report: Reporter | None = None,
                resume_from: str | Path | None = None) -> dict[str, Any]:
    """Run one trial of its pipeline (`config.pipeline`): the one entry point Ray, `train` and `rerun` call."""
    cfg = config_of(config)
    return PIPELINES.get(cfg.pipeline)(cfg, report, resume_from)


def preflight(cfg: TrialConfig) -> TrialConfig:
    """The pipeline's own check of `cfg`: one image through its data and models, before Ray starts."""
    return PIPELINES.meta(cfg.pipeline).preflight(cfg)
