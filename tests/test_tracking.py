"""MLflow tracking (`--mlflow`): the store checked before any work, a failing store never costing gradprom's own
results, `train` tracked as a search is. Read back with MLflow's own client, from a real SQLite store."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from gradprom.errors import GradpromError
from gradprom.results.tracking import Tracker, check_store, stopped_on_error, tracking_uri
from tests.fixtures.cli import cli
from tests.fixtures.settings import TINY


def test_an_unreachable_store_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(GradpromError, match=r"--mlflow sqlite:///.*/missing/x\.db: the folder .* does not exist"):
        check_store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    run = cli("search", "--trials", "1", "--out", str(tmp_path), "--name", "s", "--mlflow",
              f"sqlite:///{tmp_path / 'missing' / 'x.db'}", cache=str(tmp_path / "cache"))
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "--mlflow" in run.stderr
    assert not (tmp_path / "s").exists()  # refused before the experiment folder was made
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(GradpromError, match="the tracking store cannot be reached"):
        check_store(f"sqlite:///{tmp_path / 'junk.db'}")


def test_the_environment_names_the_store_when_the_flag_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri("") == ""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert tracking_uri("") == "sqlite:///env.db" and tracking_uri("sqlite:///flag.db") == "sqlite:///flag.db"


def test_a_store_failing_mid_search_warns_once_and_stops_tracking(tmp_path: Path, mlflow_store: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "mlruns.db"
    tracker = Tracker(mlflow_store, "e", tmp_path / "exp")
    tracker.start({"trials": 1}, "versions")
    row = {"trial_id": "t1", "dataset": "synthetic", "config_json": json.dumps({"lam": 0.5})}
    tracker.epoch(row, {"epoch": 1, "psnr": 20.0})
    assert tracker.parent and not tracker.off
    tracker._mlflow = None
    store.write_bytes(b"garbage" * 1000)  # the store breaks under a running search
    with caplog.at_level(logging.WARNING):
        tracker.epoch(row, {"epoch": 2, "psnr": 21.0})  # no exception reaches the search
        tracker.end({**row, "status": "completed", "epochs_done": 2})
    assert tracker.off and sum("MLflow tracking stopped" in r.message for r in caplog.records) == 1


def test_a_search_stopped_early_leaves_its_run_killed_and_resumable(tmp_path: Path, mlflow_store: str) -> None:
    """Whatever ends the search's block early (here Ctrl-C) marks the parent run KILLED, read back by MLflow's own
    client; a resume of the same folder finds that run and sets it running again."""
    import mlflow

    tracker = Tracker(mlflow_store, "e", tmp_path / "exp")
    tracker.start({"trials": 1}, "versions")
    with pytest.raises(KeyboardInterrupt), stopped_on_error(tracker):
        raise KeyboardInterrupt
    client = mlflow.tracking.MlflowClient(mlflow_store)
    assert client.get_run(tracker.parent).info.status == "KILLED"
    again = Tracker(mlflow_store, "e", tmp_path / "exp")
    again.start({"trials": 1}, "versions")
    assert again.parent == tracker.parent and client.get_run(again.parent).info.status == "RUNNING"
    with pytest.raises(ValueError), stopped_on_error(None):  # no tracking: the error goes on as it was
        raise ValueError("x")
    # a stop that comes after the search ended its run (as Ray shuts down) leaves the run FINISHED
    with pytest.raises(KeyboardInterrupt), stopped_on_error(again):
        again.finish("FINISHED", [], [])
        raise KeyboardInterrupt
    assert client.get_run(again.parent).info.status == "FINISHED"


def test_train_is_tracked_as_one_parent_and_its_trial(tmp_path: Path, mlflow_store: str) -> None:
    import mlflow

    store = mlflow_store
    settings = [arg for k, v in TINY.items() if k not in ("epochs", "device") for arg in ("--set", f"{k}={v}")]
    run = cli("train", "--epochs", "2", "--device", "cpu", "--mlflow", store, *settings,
              cache=str(tmp_path / "cache"))
    assert run.returncode == 0, run.stderr[-2000:]
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["gradprom-train"], output_format="list")
    [child] = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 2 and child.info.status == "FINISHED" and child.data.params["strategy"] == "gradprom"
    assert child.data.params["image_size"] == "32" and math.isfinite(child.data.metrics["test_psnr"])
    history = mlflow.tracking.MlflowClient(store).get_metric_history(child.info.run_id, "psnr")
    assert [m.step for m in history] == [1, 2]


def test_a_recorder_pickled_before_tracking_resumes_without_it(tmp_path: Path) -> None:
    """Tune restores its callbacks from the experiment state: a recorder pickled by a gradprom without MLflow
    tracking (no `tracker` attribute) still takes results."""
    import pickle
    from types import SimpleNamespace

    from gradprom.search.recorder import ResultsRecorder

    recorder = ResultsRecorder(tmp_path, {"dataset": "synthetic"}, "space", "synthetic", "e", 1)
    del recorder.__dict__["tracker"]  # as an older pickle has it
    restored = pickle.loads(pickle.dumps(recorder))
    restored.on_trial_result(0, [], SimpleNamespace(trial_id="t", config={}), {"epoch": 1, "psnr": 20.0})
    assert restored.tracker is None and restored.results["t"][0]["psnr"] == 20.0
