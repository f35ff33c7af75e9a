"""The `task_driven` pipeline (the default): enhancer + recognizer trained with a gradient strategy.

No Ray here: `train_trial(config, report)` runs in a plain loop (benchmarks, debugging, GPU machines
without Ray) and Ray only glues it in (`gradprom.trainables.ray_trial`). Under torch.distributed
(Ray Train's worker group) it shards the data and averages gradients itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradprom.metrics import task_metric_name
from gradprom.settings import Setting
from gradprom.trainables.build import build_trial, preflight
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.epoch import train_epoch
from gradprom.trainables.evaluate import evaluate, evaluate_elsewhere, reference_baselines
from gradprom.trainables.pipeline import Reporter, config_of, register_pipeline, run_epochs
from gradprom.trainables.provenance import provenance
from gradprom.trainables.qualitative import load_trained
from gradprom.trainables.state import restore_state, trial_state

#: task_driven's own trial settings beyond every trial's and its strategy's
SETTINGS = (
    Setting("vjp", "two", "the two VJPs through the enhancer: two calls, or one vmapped (batched) call",
            choices=("two", "batched")),
)


@register_pipeline(
    "task_driven", preflight=preflight,
    metrics=("psnr", "ssim", "task_metric", "acc", "acc_ref", "dice", "dice_ref", "miou", "miou_ref", "promoted_frac",
             "loss_ip", "loss_vr", "step_ms", "images_per_s", "time_train_s", "aux_acc", "aux_acc_ref", "aux_dice",
             "aux_dice_ref", "aux_miou", "aux_miou_ref", "loss_image"),
    objectives=("psnr", "task_metric"),
    spaces=("lambda_threshold", "gradprom_lambda", "gates", "architecture", "sr_architecture"),
    tasks=("classification", "segmentation"), reference=True, inspect=load_trained, strategies=True,
    help="enhancer + recognizer trained together, the recognizer's gradient combined by a gradient strategy",
    settings=SETTINGS, observations=True,
)
def train(config: TrialConfig | dict[str, Any], report: Reporter | None = None,
          resume_from: str | Path | None = None) -> dict[str, Any]:
    """Train one trial for `config.epochs`, reporting validation metrics (and a checkpoint) every epoch.

    The last epoch's report also carries the test-split figures (`test_*`). Returns that last report.
    A NaN/inf loss raises `NonFiniteLossError("non-finite loss at epoch E step S")` (a NaN/inf gradient:
    "non-finite gradient …"); with `nan_policy="skip-step"` such steps are skipped and counted (`nan_skips`).
    """
    cfg = config_of(config)
    t = build_trial(cfg)

    def constants() -> dict[str, Any]:
        # the reference on clean and degraded val images; versions, commit, device, data fingerprint
        return {"n_skipped": len(t.data.skipped), **t.fast.describe(), **provenance(t.data, t.device),
                # what the fixed reference (and frozen's / enhancer_only's recognizer) was trained on
                "reference_trained_on": "clean images" if cfg.clean_targets else "observations",
                **reference_baselines(t, t.val_inputs, "val")}

    def scores(epoch: int) -> dict[str, Any]:
        metrics = evaluate(t, t.val_inputs, "val")
        if epoch == cfg.epochs:
            test = {**evaluate(t, t.test_inputs, "test"), **reference_baselines(t, t.test_inputs, "test")}
            metrics.update({f"test_{k}": v for k, v in test.items()})
            if t.eval_data is not None:
                metrics.update(evaluate_elsewhere(t))
        return metrics

    return run_epochs(cfg, report, resume_from, restore=lambda state: restore_state(t, state), constants=constants,
                      train_epoch=lambda epoch: train_epoch(t, epoch), evaluate=scores,
                      state=lambda epoch, metrics: trial_state(t, epoch, metrics),
                      task_metric=task_metric_name(cfg.task))
