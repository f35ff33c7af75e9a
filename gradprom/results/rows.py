"""Result rows: one per trial and one per (trial, epoch), built the same way wherever they come from
(the live recorder as trials end, or Tune's ResultGrid when a study is over), and written together."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from gradprom import SCHEMA_VERSION
from gradprom.results.parquet import EPOCHS, PARETO, TRIALS, write_rows
from gradprom.results.storage import publish
from gradprom.trainables import pipeline_info, pipeline_names
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import FAILED_KEY

#: Tune's own bookkeeping keys, left out of the results tables
TUNE_KEYS = {
    "config", "date", "timestamp", "done", "should_checkpoint", "checkpoint_dir_name", "experiment_tag",
    "iterations_since_restore", "time_since_restore", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "checkpoint_path", "pid", "time_this_iter_s", "time_total_s",
}
#: column order of trials.parquet (the rest follows alphabetically)
LEADING = ("schema_version", "experiment", "dataset", "task", "trial_id", "status", "error", "epochs_done",
           "budget", "pipeline", "strategy", "lam", "threshold", "psnr", "ssim", "task_metric", "acc", "acc_ref",
           "acc_ref_clean", "acc_ref_input", "dice", "dice_ref", "dice_ref_clean", "dice_ref_input", "miou",
           "miou_ref", "miou_ref_clean", "miou_ref_input", "test_psnr", "test_ssim", "test_acc", "test_acc_ci_low",
           "test_acc_ci_high", "test_acc_ref", "test_acc_ref_ci_low", "test_acc_ref_ci_high", "test_acc_ref_clean",
           "test_acc_ref_input", "test_dice", "test_dice_ci_low", "test_dice_ci_high", "test_dice_ref",
           "test_dice_ref_ci_low", "test_dice_ref_ci_high", "test_dice_ref_clean", "test_dice_ref_input",
           "test_miou", "test_miou_ref", "test_miou_ref_clean", "test_miou_ref_input", "promoted_frac", "cos_mean")


def metrics_only(result: dict[str, Any]) -> dict[str, Any]:
    """A reported result without Tune's bookkeeping or its copy of the config."""
    return {k: v for k, v in result.items() if k not in TUNE_KEYS and not k.startswith("config/")}


def trial_status(final: dict[str, Any], budget: int, ended: bool = True, error: Any = None) -> str:
    """How a trial ended, the one place that decides it: failed (an error, or a NaN loss or bad data its last
    result names), interrupted (the search was stopped before the trial ended: `ended` is False), completed (its
    whole budget) or stopped_early (a scheduler stopped it)."""
    if error or final.get(FAILED_KEY):
        return "failed"
    if not ended:
        return "interrupted"
    return "completed" if epochs_done(final) >= budget else "stopped_early"


def trial_row(base: dict[str, Any], space: str, dataset: str, experiment: str, budget: int, trial_id: str,
              sampled: dict[str, Any], final: dict[str, Any], status: str, error: str) -> dict[str, Any]:
    """The trials.parquet row: every setting (base overridden by the sampled ones), the final metrics, tags."""
    config = TrialConfig.from_dict({**base, **sampled}).to_dict()
    config.pop("cache_dir", None)
    # a setting that some pipeline's metric shadows (the setting `loss_ip`, the training loss `loss_ip`) is left
    # to config_json, so one column never holds a setting in one experiment and a metric in another
    columns = {k: v for k, v in config.items() if k not in shadowed_settings()}
    if not pipeline_info(config["pipeline"]).strategies:  # a pipeline without gradient strategies: one system
        columns["strategy"] = config["pipeline"]
    if final.get(FAILED_KEY):  # a trial that ended itself for good (NaN loss, bad data): its last result says why
        error = str(final[FAILED_KEY])
    done = epochs_done(final)
    tags = {"schema_version": SCHEMA_VERSION, "experiment": experiment, "dataset": dataset, "trial_id": trial_id}
    # the full config also as JSON: a metric column (the training loss `loss_ip`) shadows a setting of that name
    return {**columns, **metrics_only(final), **tags, "status": status, "error": error, "epochs_done": done,
            "budget": budget, "space": space, "config_json": json.dumps(config, sort_keys=True)}


@functools.cache
def shadowed_settings() -> frozenset[str]:
    """Trial settings named like a metric of some pipeline."""
    metrics = {m for name in pipeline_names() for m in pipeline_info(name).metrics}
    return frozenset(set(TrialConfig.field_names()) & metrics)


def epochs_done(result: dict[str, Any]) -> int:
    """Epochs a trial finished, from its last result (a failed trial's last result carries `last_epoch`)."""
    epoch = result.get("last_epoch", result.get("epoch", 0))
    return int(epoch) if isinstance(epoch, (int, float)) and math.isfinite(epoch) else 0


def epoch_row(trial: dict[str, Any], result: dict[str, Any]) -> dict[str, Any] | None:
    """The epochs.parquet row of one reported epoch of `trial` (its trial row); None for a non-epoch result."""
    epoch = result.get("epoch")
    if not isinstance(epoch, (int, float)) or math.isnan(epoch):
        return None
    tags = {k: trial[k] for k in ("schema_version", "experiment", "dataset", "trial_id", "task", "strategy", "lam",
                                  "threshold")}
    return {**metrics_only(result), **tags}


def unique_epochs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, trial, epoch), the last reported kept: a trial restored after a crash may
    report its last finished epoch again (with the very same figures)."""
    keyed = {(r["dataset"], r["trial_id"], r["epoch"]): r for r in rows}
    return list(keyed.values())


def write_results(folder: Path, trials: list[dict], epochs: list[dict], front: list[dict]) -> None:
    """Write the three Parquet files (each atomically): the trials, their epochs, and `front` (the caller's front on
    the search's objectives: results store it, the search computes it)."""
    write_rows(folder / TRIALS, trials, LEADING)
    write_rows(folder / EPOCHS, unique_epochs(epochs), ("dataset", "trial_id", "epoch"))
    write_rows(folder / PARETO, front, LEADING)
    publish(folder, TRIALS, EPOCHS, PARETO)


def settings_view(row: dict[str, Any]) -> dict[str, Any]:
    """A trials row with every setting a metric shadows (the setting `loss_ip` beside the training loss `loss_ip`)
    read back from its config_json: what a protocol's grouping by settings needs."""
    if not row.get("config_json"):
        return row
    config = json.loads(row["config_json"])
    return {**row, **{k: config[k] for k in shadowed_settings() if k in config}}
