"""Nothing lost: real processes killed with real signals (SIGKILL), then resumed or retried.

Each test kills only processes it started, by process id: the driver it launched and that driver's
descendants (Ray's processes), found through /proc before the kill, or the trial process of a search it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gradprom.errors import GradpromError
from gradprom.results.parquet import read_rows
from tests.fixtures.cli import Ran, cli
from tests.fixtures.settings import TINY_PARAMS

pytestmark = pytest.mark.slow


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (children first found, then theirs)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(predicate, timeout: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finished_rows(path: Path) -> list[dict]:
    try:
        return [r for r in read_rows(path) if r["status"] in ("completed", "failed")] if path.is_file() else []
    except GradpromError:
        return []


def test_driver_killed_outright_then_resumed(tmp_path: Path, shared_cache: str, ray_session: None,
                                            mlflow_store: str) -> None:
    """SIGKILL the driver after some trials finished: their rows are on disk already; a plain rerun says
    the search died and how to resume; --resume finishes the rest, every trial exactly once, the finished
    ones unchanged, and its MLflow runs (--mlflow) continued: one parent, one run per trial, no epoch twice."""
    store = mlflow_store
    args = ["search", "--trials", "4", "--epochs", "2", "--concurrency", "2", "--out", str(tmp_path), "--name", "k",
            "--device", "cpu", "--mlflow", store, *TINY_PARAMS]
    env = {**os.environ, "GRADPROM_CACHE": shared_cache, "COLUMNS": "120"}
    driver = subprocess.Popen([sys.executable, "-m", "gradprom.cli", *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    trials = tmp_path / "k" / "trials.parquet"
    try:
        wait_for(lambda: len(finished_rows(trials)) >= 2, 300, "two finished trials on disk")
    finally:
        below = descendants(driver.pid)
        driver.kill()
        driver.wait(timeout=60)
        time.sleep(1)
        kill_all(below + descendants(driver.pid))
    before = {r["trial_id"]: r for r in finished_rows(trials)}
    assert len(before) >= 2 and json.loads((tmp_path / "k" / "manifest.json").read_text())["status"] == "running"

    rerun = cli(*args, cache=shared_cache)
    assert rerun.returncode == 2 and "stopped without finishing" in rerun.stderr and "--resume" in rerun.stderr
    assert len(rerun.stderr.strip().splitlines()) == 1

    resumed = cli("search", "--out", str(tmp_path), "--name", "k", "--resume", cache=shared_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {r["trial_id"]: r for r in read_rows(trials)}
    assert len(after) == 4 and all(r["status"] == "completed" for r in after.values())
    for trial_id, row in before.items():
        assert after[trial_id]["psnr"] == row["psnr"] and after[trial_id]["test_psnr"] == row["test_psnr"]
    epochs = read_rows(tmp_path / "k" / "epochs.parquet")
    keys = [(e["trial_id"], e["epoch"]) for e in epochs]
    assert len(keys) == len(set(keys)) == 8  # 4 trials × 2 epochs, none lost or doubled
    assert json.loads((tmp_path / "k" / "manifest.json").read_text())["status"] == "finished"
    # the settings the killed driver knew (a fresh process; this one may hold settings other tests registered)
    known = set(json.loads(next(iter(before.values()))["config_json"]))
    check_mlflow(store, "k", list(after.values()), epochs=2, known=known)


def check_mlflow(store: str, experiment: str, rows: list[dict], epochs: int, known: set[str]) -> None:
    """The experiment's runs read back with MLflow's own client: one parent, one child per trial whose params are
    its config_json, whose latest metrics are its trials.parquet figures, each epoch logged once."""
    import math

    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["gradprom_trial_id"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(children) == sorted(r["trial_id"] for r in rows)
    client = MlflowClient(store)
    for row in rows:
        run = children[row["trial_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["gradprom_status"] == row["status"] and run.info.status == "FINISHED"
        config = {k: v for k, v in json.loads(row["config_json"]).items() if k in known}
        expected = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if v is not None}
        assert {k: run.data.params.get(k) for k in known} == expected, set(run.data.params) ^ set(expected)
        for key in ("psnr", "task_metric", "test_psnr", "test_acc", "promoted_frac"):
            assert key in run.data.metrics, key
        for key, value in run.data.metrics.items():
            if key in row and isinstance(row[key], float):
                assert value == row[key] or (math.isnan(value) and math.isnan(row[key])), key
        assert [m.step for m in client.get_metric_history(run.info.run_id, "psnr")] == list(range(1, epochs + 1))
    assert {t for t, r in children.items() if r.data.tags["gradprom_on_front"] == "true"} == \
        {r["trial_id"] for r in read_rows(Path(parents[0].data.tags["gradprom_folder"]) / "pareto.parquet")}


def test_killed_trial_process_is_retried_from_its_checkpoint(tmp_path: Path, shared_cache: str,
                                                             ray_session: None) -> None:
    """SIGKILL the process running a trial after its first epoch: Tune retries it (--max-failures 1) from
    the last checkpoint, so its epochs continue (reported `resumed_from` ≥ 1) instead of restarting. The search
    runs in a thread of this process (on the session's Ray), so the trial process is the one it reported."""
    args = ["search", "--trials", "1", "--epochs", "5", "--out", str(tmp_path), "--name", "w", "--device", "cpu",
            "--max-failures", "1", *TINY_PARAMS, "-p", "n_train=256"]
    ran: list[Ran] = []
    search = threading.Thread(target=lambda: ran.append(cli(*args, cache=shared_cache)), daemon=True)
    search.start()
    runs = tmp_path / "w" / "ray" / "synthetic"

    def first_report() -> dict | None:
        for path in runs.glob("*/result.json"):
            lines = path.read_text().splitlines()
            if lines:
                return json.loads(lines[0])
        return None

    report = wait_for(first_report, 300, "the trial's first epoch")
    assert report["epoch"] == 1
    os.kill(int(report["pid"]), signal.SIGKILL)  # the trial's own worker process
    search.join(timeout=400)
    assert not search.is_alive() and ran, "the search did not end"
    assert ran[0].returncode == 0, ran[0].stderr[-3000:]
    [trial] = read_rows(tmp_path / "w" / "trials.parquet")
    assert trial["status"] == "completed" and trial["epochs_done"] == 5
    epochs = sorted(read_rows(tmp_path / "w" / "epochs.parquet"), key=lambda e: e["epoch"])
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert epochs[-1]["resumed_from"] >= 1  # continued from a checkpoint, not from scratch
