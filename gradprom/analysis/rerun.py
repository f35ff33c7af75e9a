"""`gradprom rerun EXP TRIAL_ID`: retrain one trial from its recorded config in a plain loop (no Ray) and set
its figures beside the original ones.

The config comes from the row's `config_json` (every setting, seed included); the row's provenance (versions,
git commit, device, data fingerprint) says whether the rerun ran the same code on the same data. On the CPU,
with the same recognizer cache, the figures are bit-identical (tested); a rerun elsewhere retrains the cached
reference recognizer, and another device or library version may move the last digits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gradprom.errors import GradpromError
from gradprom.results.parquet import TRIALS, read_rows, write_rows
from gradprom.results.storage import local_folder

#: the figures compared, in this order (those the row and the rerun both have)
FIGURES = ("test_psnr", "test_ssim", "test_acc", "test_acc_ref", "test_miou", "test_miou_ref", "psnr", "ssim",
           "task_metric", "promoted_frac", "cos_mean", "loss_ip")
PROVENANCE = ("data_fingerprint", "run_git_commit", "run_versions", "run_device")


def find_trial(experiment: str, trial_id: str) -> dict[str, Any]:
    """The trials.parquet row of `trial_id` (a unique suffix, as tables show, is enough)."""
    rows = read_rows(local_folder(experiment) / TRIALS)
    found = [r for r in rows if str(r.get("trial_id")) == trial_id] or \
        [r for r in rows if str(r.get("trial_id", "")).endswith(trial_id)]
    if len(found) != 1:
        what = "no trial" if not found else f"{len(found)} trials"
        raise GradpromError(f"{what} '{trial_id}' in {experiment}; its trials: "
                            f"{', '.join(str(r.get('trial_id')) for r in rows)}")
    row = found[0]
    if not row.get("config_json"):
        raise GradpromError(f"trial {row['trial_id']} was recorded before configs were kept whole (no config_json); "
                            "it cannot be rerun exactly")
    return row


def rerun(experiment: str, trial_id: str, out: Path | None = None,
          report: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Retrain the trial; returns (original row, the rerun's final figures). With `out`, the rerun's figures
    are written there as rerun.parquet (one row, tagged with the original trial id)."""
    from gradprom.trainables.pipeline import train_trial

    row = find_trial(experiment, trial_id)
    config = json.loads(row["config_json"])
    final = train_trial(config, report)
    if out is not None:
        write_rows(Path(out) / "rerun.parquet", [{**final, "trial_id": row["trial_id"],
                                                   "experiment": row.get("experiment"), "config_json":
                                                   row["config_json"]}])
    return row, final


def comparison(original: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """(figure, original, rerun, 'same' | difference) for every compared figure and provenance entry."""
    out = []
    for key in (*FIGURES, *PROVENANCE):
        if key not in original or key not in new:
            continue
        a, b = original[key], new[key]
        if isinstance(a, float) and isinstance(b, float):
            same = a == b or (math.isnan(a) and math.isnan(b))
            out.append((key, a, b, "same" if same else f"{b - a:+.3g}"))
        else:
            out.append((key, a, b, "same" if a == b else "differs"))
    return out
