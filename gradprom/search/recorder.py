"""Results written as trials end, not only when a study is over: a crash never loses a finished trial.

`ResultsRecorder` is a Tune callback. Each time a trial completes or fails it rewrites trials.parquet,
epochs.parquet and pareto.parquet (each atomically: temporary file + rename) with the rows of earlier
studies plus every trial of this study that has ended. When the study is over, the rows built from
Tune's ResultGrid replace them (the same function builds both, so the figures agree).

A resumed study starts from the rows on disk: a trial that had ended when the last run stopped keeps its row as
it is. Tune's snapshot of the experiment may be older than that row (a driver killed outright between a trial's
last result and the next snapshot), so Tune may try that trial again, and fail to.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from ray.tune import Callback

from gradprom.analysis.pareto import OBJECTIVES, as_objectives, front_rows
from gradprom.errors import GradpromError
from gradprom.results.parquet import EPOCHS, TRIALS, error_line, read_rows
from gradprom.results.rows import epoch_row, metrics_only, trial_row, trial_status, write_results
from gradprom.results.tracking import Tracker

logger = logging.getLogger(__name__)

ENDED = ("completed", "stopped_early", "failed")  # statuses a trial's row keeps for good once written


def ended_before(folder: Path, dataset: str) -> tuple[dict[str, dict], list[dict]]:
    """(trial id -> row, their epoch rows) for `dataset`'s trials that had ended on disk before this run."""
    try:
        trials = {r["trial_id"]: r for r in read_rows(folder / TRIALS)
                  if r.get("dataset") == dataset and r["status"] in ENDED} if (folder / TRIALS).is_file() else {}
        epochs = [e for e in read_rows(folder / EPOCHS) if e.get("dataset") == dataset and e["trial_id"] in trials] \
            if trials and (folder / EPOCHS).is_file() else []
    except GradpromError:  # unreadable: nothing to keep; the rows Tune holds are written in its place
        return {}, []
    return trials, epochs


def keep_ended(trials: list[dict], epochs: list[dict], kept: tuple[dict[str, dict], list[dict]]) -> tuple[list, list]:
    """`trials` and `epochs` with the rows of trials that had ended before this run as they were on disk."""
    rows, their_epochs = kept
    return ([rows.get(r["trial_id"], r) for r in trials],
            [e for e in epochs if e["trial_id"] not in rows] + their_epochs)


class ResultsRecorder(Callback):
    """Keeps plain rows (Tune pickles its callbacks with the experiment state) and writes them as trials end."""

    #: MLflow (--mlflow); a class default too, so a recorder pickled by an older gradprom resumes without one
    tracker: Tracker | None = None
    kept: tuple[dict[str, dict], list[dict]] = ({}, [])  # (setup fills it) rows of trials that ended before this run

    def __init__(self, folder: Path, base: dict[str, Any], space: str, dataset: str, experiment: str, budget: int,
                 earlier: tuple[list[dict], list[dict]] = ([], []),
                 objectives: tuple[tuple[str, str], ...] = as_objectives(OBJECTIVES),
                 tracker: Tracker | None = None) -> None:
        self.folder, self.base, self.space, self.dataset = Path(folder), dict(base), space, dataset
        self.experiment, self.budget, self.objectives = experiment, budget, tuple(objectives)
        self.earlier = (list(earlier[0]), list(earlier[1]))
        self.results: dict[str, list[dict[str, Any]]] = {}  # trial id -> its reported results, in order
        self.ended: dict[str, dict[str, Any]] = {}  # trial id -> its trials.parquet row
        self.warned = False
        self.tracker = tracker  # MLflow (--mlflow): told of each epoch and each end, after the Parquet is safe

    def setup(self, **info: Any) -> None:
        """Called as the study (re)starts: a resumed one is unpickled as it was at the first start."""
        self.kept = ended_before(self.folder, self.dataset)
        for row in self.kept[0].values() if self.tracker is not None else ():  # killed before MLflow heard of it
            self.tracker.ended_before(row)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.results.setdefault(trial.trial_id, []).append(dict(result))
        if self.tracker is not None and trial.trial_id not in self.kept[0]:
            row = trial_row(self.base, self.space, self.dataset, self.experiment, self.budget, trial.trial_id,
                            dict(trial.config or {}), result, "running", "")
            self.tracker.epoch(row, metrics_only(result))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        final = self._final(trial)
        self._record(trial, final, trial_status(final, self.budget), "")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = ""
        with contextlib.suppress(Exception):  # a nicety here: the final rows carry it from the ResultGrid
            error = error_line(trial.get_pickled_error() or trial.get_error())
        self._record(trial, self._final(trial), "failed", error)

    def _final(self, trial: Any) -> dict[str, Any]:
        reported = self.results.get(trial.trial_id) or [trial.last_result or {}]
        return reported[-1]

    def _record(self, trial: Any, final: dict[str, Any], status: str, error: str) -> None:
        if trial.trial_id in self.kept[0]:  # it ended before this run; its row stands
            return
        row = trial_row(self.base, self.space, self.dataset, self.experiment, self.budget, trial.trial_id,
                        dict(trial.config or {}), final, status, error)
        self.ended[trial.trial_id] = row
        epochs = [e for tid, ended in self.ended.items() for e in
                  (epoch_row(ended, r) for r in self.results.get(tid, [])) if e is not None]
        try:
            trials = self.earlier[0] + list(self.kept[0].values()) + list(self.ended.values())
            epochs = self.earlier[1] + self.kept[1] + epochs
            write_results(self.folder, trials, epochs, front_rows(trials, self.objectives))
        except GradpromError as exc:  # the search goes on; the write after the study reports it if it persists
            if not self.warned:
                logger.warning("%s", exc)
                self.warned = True
        if self.tracker is not None:
            self.tracker.end(row)
