"""Ray glue for `train_trial`: the only module of trainables/ that imports Ray.

One-worker trials run in the Tune trial's own process (no worker group to start). Trials with
`workers > 1` start a Ray Train `TorchTrainer` (DDP process group, gloo on CPU / nccl on GPU) from
inside the Tune function, and its reports reach Tune through `TuneReportCallback`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import ray.train
import ray.tune
from ray.train import Checkpoint
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.plugins import load_plugins
from gradprom.trainables.pipeline import FAILED_KEY, train_trial

DRIVER_MEMORY = 100 * 1024**2  # bytes


@dataclass(frozen=True)
class Placement:
    """How one trial runs: workers, CPUs and GPUs per worker (fractions allowed), where Train stores."""

    workers: int = 1
    cpus: float = 1.0
    gpus: float = 0.0
    storage_path: str = ""
    custom: tuple[tuple[str, float], ...] = ()  # custom node resources each worker needs (--trial-resource)

    def trial_resources(self) -> dict[str, float]:
        """Resources of the Tune trial itself: all of them for one worker; for a Train driver, no CPU.

        The driver only waits on its workers, which hold the CPUs/GPUs; a CPU token for it would make
        `2 workers × 1 CPU` unschedulable on a 2-CPU machine. Ray refuses an empty bundle, so the driver
        asks for the memory it really uses instead (every node advertises `memory`).
        """
        if self.workers == 1:
            return self.worker_resources()
        return {"CPU": 0, "memory": DRIVER_MEMORY}

    def worker_resources(self) -> dict[str, float]:
        """What one worker holds: its CPUs, GPU share and custom resources."""
        return {"CPU": self.cpus, "GPU": self.gpus, **dict(self.custom)}


def _run(report_fn: Any, get_checkpoint: Any, config: dict[str, Any]) -> None:
    """Resume from the latest checkpoint if Ray has one, and report every epoch through `report_fn`."""

    last_epoch = 0

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        nonlocal last_epoch
        last_epoch = int(metrics["epoch"])
        report_fn(metrics, checkpoint=Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)

    checkpoint = get_checkpoint()
    try:
        if checkpoint is None:
            train_trial(config, report)
        else:
            with checkpoint.as_directory() as directory:
                train_trial(config, report, resume_from=directory)
    except (NonFiniteLossError, GradpromError) as exc:
        # Deterministic: a retry (--max-failures) would fail the same way. End the trial with a last result
        # that says why; the orchestrator records it as failed and Optuna is told FAIL.
        # Its epoch is NaN, so no epoch row is made of it; `last_epoch` says how far it got.
        report_fn({"epoch": math.nan, "last_epoch": last_epoch, FAILED_KEY: str(exc),
                   **dict.fromkeys(("psnr", "ssim", "task_metric"), math.nan)})


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker (the process group is already up)."""
    load_plugins()
    _run(ray.train.report, ray.train.get_checkpoint, config)


def tune_trial(sampled: dict[str, Any], base: dict[str, Any], placement: Placement) -> None:
    """The Tune function trainable: `base` settings overridden by the searcher's `sampled` ones."""
    load_plugins()  # users' own strategies/datasets/models, registered in this worker process too
    config = {**base, **sampled}
    if placement.workers == 1:
        _run(ray.tune.report, ray.tune.get_checkpoint, config)
        return
    trial_id = ray.tune.get_context().get_trial_id()
    resources = {k: v for k, v in placement.worker_resources().items() if v or k == "CPU"}
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=placement.workers, use_gpu=placement.gpus > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=f"train-trial_id={trial_id}",  # stable name: a restarted trial resumes its Train run
            storage_path=placement.storage_path or None,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()


def make_trainable(base: dict[str, Any], placement: Placement) -> Any:
    """`tune_trial` with its fixed arguments bound and its resources attached, ready for a Tuner."""
    trainable = ray.tune.with_parameters(tune_trial, base=base, placement=placement)
    return ray.tune.with_resources(trainable, placement.trial_resources())
