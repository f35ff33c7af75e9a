"""The recorder as a resumed study sees it: a trial that ended before the driver was killed keeps its row, even
when Tune's older snapshot makes it run (and fail) again; rows of other trials are written beside it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from gradprom.results.parquet import EPOCHS, TRIALS, read_rows
from gradprom.results.rows import epoch_row, trial_row, write_results
from gradprom.search.recorder import ResultsRecorder, ended_before, keep_ended

BASE = {"dataset": "synthetic"}


def ended_on_disk(folder: Path) -> dict:
    """A folder as a killed driver left it: trial `a` completed (two epochs), trial `b` still running."""
    results = [{"epoch": e, "training_iteration": e, "psnr": 20.0 + e} for e in (1, 2)]
    done = trial_row(BASE, "space", "synthetic", "e", 2, "a", {}, results[-1], "completed", "")
    running = trial_row(BASE, "space", "synthetic", "e", 2, "b", {}, results[0], "running", "")
    write_results(folder, [done, running], [epoch_row(done, r) for r in results], [])
    return done


def test_a_resumed_recorder_keeps_the_rows_of_trials_that_had_ended(tmp_path: Path) -> None:
    done = ended_on_disk(tmp_path)
    recorder = ResultsRecorder(tmp_path, BASE, "space", "synthetic", "e", 2)
    recorder.setup()
    again = SimpleNamespace(trial_id="a", config={}, last_result={}, get_pickled_error=lambda: None,
                            get_error=lambda: "ValueError: Could not recover from checkpoint")
    recorder.on_trial_error(0, [], again)  # Tune tried `a` again from a checkpoint already deleted
    b = SimpleNamespace(trial_id="b", config={}, last_result={})
    recorder.on_trial_result(0, [], b, {"epoch": 2, "training_iteration": 2, "psnr": 25.0})
    recorder.on_trial_complete(0, [], b)
    rows = {r["trial_id"]: r for r in read_rows(tmp_path / TRIALS)}
    assert set(rows) == {"a", "b"} and rows["a"]["status"] == "completed" and rows["a"]["psnr"] == done["psnr"] == 22
    assert rows["b"]["status"] == "completed" and rows["b"]["psnr"] == 25.0
    assert sorted((e["trial_id"], e["epoch"]) for e in read_rows(tmp_path / EPOCHS)) == [("a", 1), ("a", 2), ("b", 2)]


def test_the_final_rows_keep_what_had_ended_and_take_the_rest_from_tune(tmp_path: Path) -> None:
    ended_on_disk(tmp_path)
    kept = ended_before(tmp_path, "synthetic")
    assert set(kept[0]) == {"a"} and ended_before(tmp_path, "other") == ({}, [])
    from_tune = [{"trial_id": "a", "status": "failed"}, {"trial_id": "b", "status": "completed"}]
    epochs = [{"trial_id": "a", "epoch": 1}, {"trial_id": "b", "epoch": 1}]
    trials, their_epochs = keep_ended(from_tune, epochs, kept)
    assert [r["status"] for r in trials] == ["completed", "completed"] and trials[0]["psnr"] == 22
    assert sorted((e["trial_id"], e["epoch"]) for e in their_epochs) == [("a", 1), ("a", 2), ("b", 1)]


def test_a_trial_that_ended_before_the_kill_ends_in_mlflow_too(tmp_path: Path, mlflow_store: str) -> None:
    """Killed between writing a trial's row and ending its MLflow run: the resumed recorder ends the run (read back
    with MLflow's client), and leaves a run that had ended as it was."""
    from mlflow.tracking import MlflowClient

    from gradprom.results.tracking import Tracker

    done = ended_on_disk(tmp_path)
    tracker = Tracker(mlflow_store, "e", tmp_path)
    tracker.start({"trials": 2}, "versions")
    tracker.epoch(done, {"epoch": 2, "psnr": 22.0})  # its last epoch reached MLflow; its end did not
    recorder = ResultsRecorder(tmp_path, BASE, "space", "synthetic", "e", 2, tracker=tracker)
    recorder.setup()
    client = MlflowClient(mlflow_store)
    run = client.get_run(tracker.runs["a"])
    assert run.info.status == "FINISHED" and run.data.tags["gradprom_status"] == "completed"
    ended = run.info.end_time
    recorder.setup()  # a second resume: the run had ended, nothing is logged again
    assert client.get_run(tracker.runs["a"]).info.end_time == ended
    assert [m.step for m in client.get_metric_history(run.info.run_id, "psnr")] == [2]
