"""Every search in MLflow, beside gradprom's own Parquet (`--mlflow URI`, or $MLFLOW_TRACKING_URI; off by default).

One parent run per experiment (its request, versions and command; at the end the front as a table and the
protocol's figures as artefacts) and one nested run per trial: every setting a param, each epoch's metrics at their
step, the test figures at the last, status and error as tags, and whether it is on the front. Runs are found again
by their tags (`gradprom_folder`, `gradprom_trial_id`), so a resumed search continues them and a retried trial
appends to its run; epochs already logged are not logged twice.

The driver logs, as its results arrive (the same moments trials.parquet is written): only the machine running
`gradprom search` needs to reach the tracking store, never the workers, and one process writes a SQLite store.
MLflow is a guest: the store is checked before the search starts (one line), and a failure mid-search is one
warning, after which tracking stops and gradprom's own results carry on untouched.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gradprom.errors import GradpromError

logger = logging.getLogger(__name__)

ENV = "MLFLOW_TRACKING_URI"
#: what MLflow's run status is for each way a trial ends
RUN_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def tracking_uri(given: str) -> str:
    """`--mlflow URI`, else $MLFLOW_TRACKING_URI, else '' (no tracking)."""
    return given or os.environ.get(ENV, "")


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def check_store(uri: str) -> None:
    """Reach the tracking store now (creating a SQLite file if there is none): one line when it cannot be read or
    written, before any work."""
    if uri.startswith("sqlite:///"):
        parent = Path(uri[len("sqlite:///"):]).expanduser().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise GradpromError(f"--mlflow {uri}: the folder {parent} does not exist or is not writable; create it "
                                "or point at another file")
    try:
        client = _client(uri)
        client.search_experiments(max_results=1)
    except ImportError as exc:
        raise GradpromError(f"--mlflow needs MLflow: pip install mlflow-skinny ({exc})") from None
    except Exception as exc:
        raise GradpromError(f"--mlflow {uri}: the tracking store cannot be reached ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]}); check the URI, or leave --mlflow out") from None


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artefacts: beside a SQLite store's file (not the current folder)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).expanduser().resolve().parent / "mlartifacts").as_uri()
    return None


def numeric(values: dict[str, Any]) -> dict[str, float]:
    """The values MLflow can hold as metrics: numbers (NaN included), not flags, lists or text."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """One experiment's MLflow runs. Holds only names and ids (Tune pickles it with the recorder); the client is
    made when needed. Every call is guarded: the first failure warns once and turns tracking off."""

    def __init__(self, uri: str, experiment: str, folder: Path) -> None:
        self.uri, self.experiment, self.folder = uri, experiment, str(Path(folder).resolve())
        self.parent = self.experiment_id = ""
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.logged: dict[str, int] = {}  # trial id -> last epoch logged
        self.off = False
        self.ended = False  # the parent run was ended by finish: nothing left for stop to mark
        self._mlflow: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mlflow": None}

    @property
    def client(self) -> Any:
        if self._mlflow is None:
            self._mlflow = _client(self.uri)
        return self._mlflow

    def guarded(self, what: str, call: Any, *args: Any) -> Any:
        if self.off:
            return None
        try:
            return call(*args)
        except Exception as exc:  # MLflow is a guest: gradprom's own results never depend on it
            self.off = True
            logger.warning("MLflow tracking stopped (%s: %s: %s); gradprom's own results are unaffected", what,
                           type(exc).__name__, " ".join(str(exc).split())[:200])
            return None

    # --- the experiment ------------------------------------------------------------------------------------------
    def start(self, request: dict[str, Any], versions: str) -> None:
        self.guarded("starting the experiment's run", self._start, request, versions)

    def _start(self, request: dict[str, Any], versions: str) -> None:
        from mlflow.entities import Param, RunTag

        found = self.client.get_experiment_by_name(self.experiment)
        exp = found.experiment_id if found else self.client.create_experiment(
            self.experiment, artifact_location=artifact_root(self.uri))
        self.experiment_id = exp
        runs = self.client.search_runs([exp], f"tags.gradprom_folder = '{self.folder}'", max_results=1)
        if runs:
            self.parent = runs[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
            return
        run = self.client.create_run(exp, run_name=Path(self.folder).name, tags={
            "gradprom_folder": self.folder, "gradprom_role": "experiment"})
        self.parent = run.info.run_id
        params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(request.items())]
        tags = [RunTag("gradprom_command", " ".join(sys.argv)), RunTag("gradprom_versions", versions)]
        self.client.log_batch(self.parent, params=params, tags=tags)

    def finish(self, status: str, front: list[dict[str, Any]], trials: list[dict[str, Any]]) -> None:
        """Mark each trial on the front or not, attach the front table and the protocol's figures, end the run."""
        self.guarded("ending the experiment's run", self._finish, status, front, trials)

    def _finish(self, status: str, front: list[dict[str, Any]], trials: list[dict[str, Any]]) -> None:
        if not self.parent:
            return
        on_front = {r.get("trial_id") for r in front}
        for row in trials:
            run = self._run_of(row["trial_id"])
            if run:
                self.client.set_tag(run, "gradprom_on_front", str(row["trial_id"] in on_front).lower())
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "front.csv"
            columns = sorted({k for r in front for k in r if not isinstance(r[k], (list, dict))})
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(columns)
            writer.writerows([_cell(r.get(c)) for c in columns] for r in front)
            table.write_text(text.getvalue())
            self.client.log_artifact(self.parent, str(table))
        self._attach()
        self.client.set_terminated(self.parent, status=status)
        self.ended = True

    def attach(self) -> None:
        """Attach what the experiment folder holds now (a protocol's evidence, once written) to the parent run."""
        self.guarded("attaching the results", self._attach)

    def _attach(self) -> None:
        if not self.parent:
            found = self.client.get_experiment_by_name(self.experiment)
            runs = self.client.search_runs([found.experiment_id], f"tags.gradprom_folder = '{self.folder}'",
                                           max_results=1) if found else []
            if not runs:
                return
            self.parent = runs[0].info.run_id
        folder = Path(self.folder)
        for name in ("pareto.parquet", "protocol.md", "protocol.parquet", "manifest.json"):
            if (folder / name).is_file():
                self.client.log_artifact(self.parent, str(folder / name))
        for name in ("fronts", "report"):
            if (folder / name).is_dir():
                self.client.log_artifacts(self.parent, str(folder / name), artifact_path=name)

    def stop(self) -> None:
        """The search stopped before its end (Ctrl-C, SIGTERM): the parent run is KILLED until a resume."""
        if self.parent and not self.ended:
            self.guarded("marking the run stopped", self.client.set_terminated, self.parent, "KILLED")

    # --- the trials ----------------------------------------------------------------------------------------------
    def epoch(self, row: dict[str, Any], result: dict[str, Any]) -> None:
        """One epoch of a trial (`row`: its trials.parquet row so far, for the settings)."""
        self.guarded("logging an epoch", self._epoch, row, result)

    def _epoch(self, row: dict[str, Any], result: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        tid, step = row["trial_id"], int(result.get("epoch", 0))
        run = self._run_for(row)
        if step <= self.logged.get(tid, 0):
            return  # logged before the driver restarted (a resumed trial reports from its checkpoint)
        self.client.update_run(run, status="RUNNING")  # a retried or resumed trial's run runs again
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in numeric(result).items() if k != "epoch"]
        self.client.log_batch(run, metrics=metrics, tags=[RunTag("gradprom_last_epoch", str(step))])
        self.logged[tid] = step

    def end(self, row: dict[str, Any]) -> None:
        """A trial ended: its test figures at its last step, status and error, the run's end."""
        self.guarded("ending a trial's run", self._end, row)

    def _end(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        run = self._run_for(row)
        stamp, step = int(time.time() * 1000), int(row.get("epochs_done") or 0)
        held = {k: v for k, v in numeric(row).items() if k.startswith(("test_", "eval_"))}
        tags = [RunTag("gradprom_status", row["status"]), RunTag("gradprom_error", row.get("error") or "")]
        self.client.log_batch(run, metrics=[Metric(k, v, stamp, step) for k, v in held.items()], tags=tags)
        self.client.set_terminated(run, status=RUN_STATUS.get(row["status"], "FINISHED"))

    def ended_before(self, row: dict[str, Any]) -> None:
        """A trial whose end reached trials.parquet before the driver died: its run ends too, unless it had."""
        self.guarded("ending a trial's run", self._ended_before, row)

    def _ended_before(self, row: dict[str, Any]) -> None:
        run = self._run_of(row["trial_id"])
        if not run or self.client.get_run(run).info.status == "RUNNING":
            self._end(row)

    def _run_of(self, tid: str) -> str:
        """The trial's run: known, or found by its tags (a resumed or restarted driver), or ''."""
        if tid not in self.runs and self.parent:
            found = self.client.search_runs([self.experiment_id], f"tags.gradprom_trial_id = '{tid}' and "
                                            f"tags.gradprom_parent = '{self.parent}'", max_results=1)
            if found:
                self.runs[tid] = found[0].info.run_id
                self.logged[tid] = int(found[0].data.tags.get("gradprom_last_epoch", 0))
        return self.runs.get(tid, "")

    def _run_for(self, row: dict[str, Any]) -> str:
        """The trial's run, found or made, with its settings as params (logged again on the first touch in this
        process: the same values, so a run made just before the driver died gets them too)."""
        from mlflow.entities import Param

        tid = row["trial_id"]
        if tid in self.runs:
            return self.runs[tid]
        run = self._run_of(tid) or self.client.create_run(self.experiment_id, run_name=tid, tags={
            "mlflow.parentRunId": self.parent, "gradprom_parent": self.parent, "gradprom_trial_id": tid,
            "gradprom_dataset": str(row.get("dataset", ""))}).info.run_id
        settings = json.loads(row["config_json"])
        self.client.log_batch(run, params=[Param(k, _cell(v)) for k, v in sorted(settings.items())])
        self.runs[tid] = run
        self.logged.setdefault(tid, 0)
        return run


@contextlib.contextmanager
def stopped_on_error(tracker: Tracker | None) -> Iterator[None]:
    """Marks the parent run stopped (`Tracker.stop`) whatever ends the block early: a signal, bad input, a bug."""
    try:
        yield
    except BaseException:
        if tracker is not None:
            tracker.stop()
        raise


def _cell(value: Any) -> str:
    """A value as a param or CSV cell: text as is, numbers and flags as JSON writes them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else json.dumps(value)
