"""`gradprom search` end to end through the real CLI: real Ray (local), real Optuna, real Parquet.

Most searches run the CLI in this process on the session's local Ray runtime (`cli` + `ray_session`); those that
need a driver of their own (a signal to it, plugins in its trial processes) run it as a child (`gradprom`)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gradprom.results.parquet import read_rows
from tests.fixtures.cli import WRAPPER, cli, gone, gradprom
from tests.fixtures.settings import TINY_PARAMS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

TRIAL_COLUMNS = {"schema_version", "experiment", "dataset", "task", "trial_id", "status", "error", "epochs_done",
                 "budget", "strategy", "lam", "threshold", "psnr", "ssim", "task_metric", "acc", "acc_ref",
                 "test_psnr", "test_acc", "test_acc_ref", "promoted_frac", "cos_mean", "seed", "degradation"}
EPOCH_COLUMNS = {"dataset", "trial_id", "epoch", "psnr", "ssim", "acc", "acc_ref", "promoted_frac", "cos_mean",
                 "loss_ip", "loss_vr", "time_train_s", "strategy", "lam"}


ROOT = Path(__file__).resolve().parent.parent
SMALL_DENSENET = "init_features=8 growth_rate=4 block_config=1,1,1,1"  # MONAI's DenseNet121, narrowed for a CPU


def dominated(a: dict, b: dict) -> bool:
    """b dominates a."""
    return b["psnr"] >= a["psnr"] and b["task_metric"] >= a["task_metric"] and \
        (b["psnr"] > a["psnr"] or b["task_metric"] > a["task_metric"])


def test_search_asha_writes_results_and_exact_front(tmp_path: Path, shared_cache: str) -> None:
    out = tmp_path / "out"
    args = ["search", "--space", "lambda_threshold", "--dataset", "synthetic", "--trials", "4", "--epochs", "2",
            "--scheduler", "asha", "--sampler", "random", "--seed", "0", "--out", str(out), "--name", "e2e",
            "--concurrency", "1",  # trials in order, so ASHA's stopping decisions are deterministic
            "--device", "cpu", *TINY_PARAMS]
    run = cli(*args, cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Pareto front" in run.stdout
    # asha stops on --metric alone while the search has two objectives: it says so, and what ranks on both
    assert "--scheduler asha stops trials on psnr alone" in run.stdout and "pareto-asha ranks on all" in run.stdout
    folder = out / "e2e"
    trials = read_rows(folder / "trials.parquet")
    epochs = read_rows(folder / "epochs.parquet")
    front = read_rows(folder / "pareto.parquet")

    assert len(trials) == 4 and TRIAL_COLUMNS <= set(trials[0])
    assert EPOCH_COLUMNS <= set(epochs[0])
    assert {t["status"] for t in trials} <= {"completed", "stopped_early"}
    for t in trials:
        assert t["strategy"] == "threshold" and 1e-3 <= t["lam"] <= 10 and -1 <= t["threshold"] <= 1
        assert (t["status"] == "completed") == (t["epochs_done"] == 2)
        mine = sorted(e["epoch"] for e in epochs if e["trial_id"] == t["trial_id"])
        assert mine == list(range(1, t["epochs_done"] + 1))
    assert any(t["status"] == "stopped_early" for t in trials), "ASHA with 4 trials should stop at least one"

    finished = [t for t in trials if t["status"] == "completed"]
    expected = {t["trial_id"] for t in finished if not any(dominated(t, o) for o in finished)}
    assert {f["trial_id"] for f in front} == expected
    assert all(f["status"] == "completed" for f in front)
    assert int(pq.read_schema(folder / "trials.parquet").metadata[b"gradprom.schema_version"]) == 2
    for e in epochs:  # gate telemetry per epoch: every step's cosine, explaining promoted_frac (τ of its trial)
        steps, tau = json.loads(e["cos_steps"]), next(t["threshold"] for t in trials if t["trial_id"] == e["trial_id"])
        assert len(steps) == e["steps"]
        assert e["promoted_frac"] == pytest.approx(sum(c >= tau for c in steps) / len(steps))

    shown = cli("pareto", str(folder), "--telemetry", "front", cache=shared_cache)
    assert shown.returncode == 0, shown.stderr
    assert (folder / "telemetry.png").read_bytes()[:4] == b"\x89PNG"
    for bad, says in ((["--telemetry", "nope"], "--telemetry: no trial 'nope'"), (["--by", "nosuch"], "--by: unknown "
                      "grouping 'nosuch'"), (["--plot", str(tmp_path / "front.png" / "x.png")], "is a file")):
        (tmp_path / "front.png").write_bytes(b"x")
        wrong = cli("pareto", str(folder), *bad, cache=shared_cache)
        assert wrong.returncode == 2 and says in wrong.stderr and len(wrong.stderr.splitlines()) == 1, wrong.stderr
        assert wrong.stdout == ""  # refused before the front is printed

    plot = tmp_path / "front.png"
    shown = cli("pareto", str(folder), "--plot", str(plot), cache=shared_cache)
    assert shown.returncode == 0, shown.stderr
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    for f in front:
        assert f["trial_id"][-5:] in shown.stdout

    again = cli(*args, cache=shared_cache)
    assert again.returncode == 2 and "already holds an experiment" in again.stderr
    assert "Traceback" not in again.stderr


def test_segmentation_search_where_a_trial_diverges(tmp_path: Path, shared_cache: str) -> None:
    """Trials with an absurd learning rate turn NaN and fail alone, with the reason; the others finish."""
    # with --seed 4 the random sampler draws lr 1e30 for two of the four trials, and gradprom (which trains
    # its recognizer) among the healthy ones (both checked in the asserts)
    args = ["search", "--space", "strategies", "--task", "segmentation", "--trials", "4", "--epochs", "1",
            "--concurrency", "1",  # one trial process, reused: these tests check results, not parallelism
            "--sampler", "random", "--seed", "4", "--out", str(tmp_path), "--name", "seg", "--device", "cpu",
            "-p", "strategy=enhancer_only,gradprom", "-p", "lr=0.001,1e30", *TINY_PARAMS]
    run = cli(*args, cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = read_rows(tmp_path / "seg" / "trials.parquet")
    by_status = {s: [t for t in trials if t["status"] == s] for s in ("completed", "failed")}
    assert len(trials) == 4 and by_status["failed"] and by_status["completed"]
    for t in by_status["failed"]:
        assert t["lr"] == 1e30 and t["epochs_done"] == 0
        assert t["error"].startswith("non-finite loss at epoch 1 step"), t["error"]
        # deterministic, so not retried by --max-failures (default 1): one attempt, one (final) result
        results = (tmp_path / "seg" / "ray" / "synthetic" / t["trial_id"] / "result.json").read_text().splitlines()
        assert len(results) == 1 and json.loads(results[0])["failed"] == t["error"]
    for t in by_status["completed"]:
        assert t["lr"] == 0.001 and 0 <= t["miou"] <= 1 and 0 <= t["miou_ref"] <= 1
    assert "gradprom" in {t["strategy"] for t in by_status["completed"]}
    assert "failed" in run.stdout and "non-finite loss" in run.stdout
    front = read_rows(tmp_path / "seg" / "pareto.parquet")
    assert front and {f["trial_id"] for f in front} <= {t["trial_id"] for t in by_status["completed"]}


def test_search_whose_every_trial_fails_exits_1(tmp_path: Path, shared_cache: str) -> None:
    """lr 1e30 passes every check before Ray (it is a finite number > 0) and turns the loss non-finite in the
    first epoch: both trials fail, the summary is printed, the rows are written, and the exit code is 1."""
    args = ["search", "--space", "gradprom_lambda", "--trials", "2", "--epochs", "1", "--sampler", "random",
            "--concurrency", "1",
            "--out", str(tmp_path), "--name", "allfail", "--device", "cpu", *TINY_PARAMS, "-p", "lr=1e30"]
    run = cli(*args, cache=shared_cache)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-3000:]
    assert "2 trials: 0 completed, 0 stopped early, 2 failed" in " ".join(run.stdout.split()), run.stdout[-2000:]
    err = " ".join(run.stderr.split())
    assert err.startswith("error: all 2 trial(s) of synthetic failed (the first: non-finite loss at epoch 1"), err
    assert str(tmp_path / "allfail" / "trials.parquet") in err and "Traceback" not in run.stderr
    trials = read_rows(tmp_path / "allfail" / "trials.parquet")
    assert len(trials) == 2 and all(t["status"] == "failed" and t["lr"] == 1e30 for t in trials), trials
    assert all(t["error"].startswith("non-finite loss at epoch 1 step") for t in trials)
    assert json.loads((tmp_path / "allfail" / "manifest.json").read_text())["status"] == "finished"


def test_trial_with_two_ray_train_workers(tmp_path: Path, shared_cache: str) -> None:
    """--workers-per-trial 2 runs the trial as a Ray Train TorchTrainer (DDP over gloo) inside Tune."""
    args = ["search", "--space", "gradprom_lambda", "--trials", "1", "--epochs", "2", "--workers-per-trial", "2",
            "--out", str(tmp_path), "--name", "ddp", "--device", "cpu", *TINY_PARAMS]
    run = cli(*args, cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    (trial,) = read_rows(tmp_path / "ddp" / "trials.parquet")
    assert trial["status"] == "completed" and trial["epochs_done"] == 2 and trial["test_psnr"] > 0
    assert trial["world_size"] == 2  # really two data-parallel workers
    assert len(read_rows(tmp_path / "ddp" / "epochs.parquet")) == 2


PLUGINS = {"GRADPROM_PLUGINS": "tests.fixtures.plugin_example", "PYTHONPATH": str(ROOT)}


def start_driver(args: list[str], cache: str, **env: str) -> subprocess.Popen:
    """`gradprom ARGS` as a child driver of its own (it starts Ray itself), stdout and stderr piped."""
    return subprocess.Popen([sys.executable, "-m", "gradprom.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "GRADPROM_CACHE": cache, **env})


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (its children, theirs, …), from /proc."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def wait_for_a_result(runs: Path, driver: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None and \
            not [p for p in runs.glob("*/result.json") if p.stat().st_size]:
        time.sleep(0.2)
    assert driver.poll() is None, driver.communicate()


def test_ctrl_c_in_a_two_dataset_search_with_a_plugin_then_resume(tmp_path: Path, shared_cache: str) -> None:
    """Ctrl-C: finished trials are saved, the experiment says `interrupted`; --resume runs the rest once, the second
    dataset's study included. --dataset a,b runs one study each; a plugin's dataset and strategy (GRADPROM_PLUGINS)
    reach the Ray trial processes of both runs, and the strategy's own setting (`share`) is searched with -p."""
    args = ["search", "--space", "strategies", "--dataset", "synthetic,synthetic_shifted", "--trials", "2",
            "--epochs", "2", "--concurrency", "1", "--sampler", "random", "--out", str(tmp_path), "--name", "r",
            "--device", "cpu", "-p", "strategy=half_promotion,gradprom", "-p", "share=0.2:0.8",
            "-p", "max_steps_per_epoch=2", *TINY_PARAMS]
    driver = start_driver(args, shared_cache, **PLUGINS)
    wait_for_a_result(tmp_path / "r" / "ray" / "synthetic", driver)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-2000:]
    assert "search interrupted" in err and "(Ctrl-C); continue with: gradprom search" in err and "--resume" in err
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "interrupted"
    before = {t["trial_id"]: t for t in read_rows(tmp_path / "r" / "trials.parquet")}
    assert before and {t["status"] for t in before.values()} <= {"completed", "interrupted"}
    assert {t["dataset"] for t in before.values()} == {"synthetic"}  # the second study had not started

    resumed = gradprom("search", "--out", str(tmp_path), "--name", "r", "--resume", cache=shared_cache, **PLUGINS)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = read_rows(tmp_path / "r" / "trials.parquet")
    assert sorted(t["dataset"] for t in trials) == ["synthetic"] * 2 + ["synthetic_shifted"] * 2
    assert len({t["trial_id"] for t in trials}) == 4
    assert all(t["status"] == "completed" and t["image_size"] == 32 for t in trials)  # the original settings
    assert {t["strategy"] for t in trials} == {"half_promotion", "gradprom"}  # the plugin's strategy ran
    shares = [(t["dataset"], t["share"]) for t in trials]  # the plugin's setting: a column, sampled per trial
    assert all(0.2 <= s <= 0.8 for _, s in shares) and len({s for d, s in shares if d == "synthetic"}) == 2, shares
    for t in trials:
        if before.get(t["trial_id"], {}).get("status") == "completed":
            assert t["psnr"] == before[t["trial_id"]]["psnr"]  # finished trials kept as they were
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "finished"
    assert {e["dataset"] for e in read_rows(tmp_path / "r" / "epochs.parquet")} == {"synthetic", "synthetic_shifted"}
    front = read_rows(tmp_path / "r" / "pareto.parquet")
    assert {f["dataset"] for f in front} == {"synthetic", "synthetic_shifted"}  # one front per dataset
    # the two datasets differ, so their trials do too
    assert {round(t["psnr_input"], 4) for t in trials if t["dataset"] == "synthetic"} != \
        {round(t["psnr_input"], 4) for t in trials if t["dataset"] == "synthetic_shifted"}
    changed = cli("search", "--out", str(tmp_path), "--name", "r", "--resume", "--trials", "9", cache=shared_cache)
    assert changed.returncode == 2 and "as it was started (--trials 2)" in changed.stderr


def test_sigterm_stops_like_ctrl_c_and_a_piped_search_logs_as_it_goes(tmp_path: Path, shared_cache: str) -> None:
    """A real SIGTERM to the process group a driver was started in (a supervisor's killpg; the driver runs under a
    job script's process, which survives it): the driver, in a group of its own with Ray, gets the stop through its
    relay; trials stopped cleanly, the finished ones written, the manifest `interrupted`, one line with the
    --resume command, exit 143; --resume then reaches every trial exactly once. Its stdout is a pipe, so progress
    comes as plain lines, each read here as it arrives: the study's start, each trial's end (id, status,
    objectives, done/total, elapsed, ETA) and heartbeats."""
    args = ["search", "--space", "gradprom_lambda", "--trials", "3", "--epochs", "2", "--concurrency", "1",
            "--sampler", "random", "--out", str(tmp_path), "--name", "t", "--device", "cpu", "-p",
            "max_steps_per_epoch=2", *TINY_PARAMS]
    driver = subprocess.Popen([sys.executable, "-c", WRAPPER, sys.executable, "-m", "gradprom.cli", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              env={**os.environ, "GRADPROM_CACHE": shared_cache, "GRADPROM_HEARTBEAT_S": "1"})
    lines: list[tuple[float, str]] = []
    for line in driver.stdout:  # each line as the driver prints it, with the time it came
        lines.append((time.monotonic(), line.rstrip("\n")))
        if " completed psnr=" in line:
            break
    # the wrapper's child, not its group's leader and with no terminal: it started Ray in a process group of its own,
    # so the signal to the group it was started in reaches the driver through the relay, not Ray's processes
    (pid,) = (int(p) for p in Path(f"/proc/{driver.pid}/task/{driver.pid}/children").read_text().split())
    assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2]) == pid != driver.pid
    os.killpg(driver.pid, signal.SIGTERM)
    rest, err = driver.communicate(timeout=120)
    ended = time.monotonic()
    assert driver.returncode == 143, err[-2000:]
    assert err.startswith("error: search interrupted with ") and len(err.strip().splitlines()) == 1, err
    assert err.strip().endswith(f"(SIGTERM); continue with: gradprom search --out {tmp_path} --name t --resume")
    assert "Traceback" not in err and "SIGTERM: stopping the search" in rest
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["status"] == "interrupted"
    started = [t for t, text in lines if text.endswith("synthetic · gradprom_lambda: 3 trials · starting trials…")]
    trial = [(t, text) for t, text in lines if " completed psnr=" in text]
    assert started and trial and trial[0][0] < ended - 0.5, lines  # it came while the search ran, not at its end
    assert re.search(r"trial \w+ completed psnr=[\d.]+ task_metric=[\d.]+ · 1/3 done · elapsed \d+s · ETA \d+s$",
                     trial[0][1]), trial
    assert any(re.search(r"running 1 · 0/3 done · failed 0 · front so far 0 trial\(s\)$", text) for _, text in lines)
    finished = {t["trial_id"] for t in read_rows(tmp_path / "t" / "trials.parquet") if t["status"] == "completed"}
    assert finished

    # resumed by a driver of its own, which writes its end before it shuts its Ray down: a SIGTERM that comes as
    # Ray shuts down (Ray's shutdown leaves SIGTERM's default, which kills outright) finds the search `finished`
    resumed = start_driver(["search", "--out", str(tmp_path), "--name", "t", "--resume"], shared_cache)
    manifest = tmp_path / "t" / "manifest.json"
    deadline = time.monotonic() + 240
    while resumed.poll() is None and json.loads(manifest.read_text())["status"] != "finished" \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    ray_alive = [p for p in descendants(resumed.pid) if "gcs_server" in Path(f"/proc/{p}/cmdline").read_text()]
    left = descendants(resumed.pid)
    resumed.send_signal(signal.SIGTERM)
    out, err = resumed.communicate(timeout=60)
    assert ray_alive, "the manifest said finished only after Ray had shut down"
    assert resumed.returncode in (0, 143, -signal.SIGTERM) and "Traceback" not in err, err[-2000:]
    assert json.loads(manifest.read_text())["status"] == "finished"
    assert all(gone(p, 15) for p in left)  # Ray's processes end with the driver that started them
    after = read_rows(tmp_path / "t" / "trials.parquet")
    assert len(after) == 3 and len({t["trial_id"] for t in after}) == 3 and finished <= {t["trial_id"] for t in after}
    assert all(t["status"] == "completed" for t in after)
    epochs = read_rows(tmp_path / "t" / "epochs.parquet")
    assert len({(e["trial_id"], e["epoch"]) for e in epochs}) == len(epochs) == 6  # every epoch exactly once


def test_search_on_a_camus_fixture(tmp_path: Path, shared_cache: str) -> None:
    """The main job's dataset, from tiny files of the real 2023 format (--data-root), segmentation, with a
    corrupt frame left out (--skip-bad), a loader option (-o views=4CH) and cross-dataset evaluation on a
    QaTa-COV19 fixture (--eval-dataset)."""
    from tests.fixtures.camus import make_2023
    from tests.fixtures.qata_cov19 import make_qata

    make_2023(tmp_path / "data")
    make_qata(tmp_path / "data")
    bad = tmp_path / "data" / "camus" / "database_nifti" / "patient0002" / "patient0002_4CH_ES.nii.gz"
    bad.write_bytes(bad.read_bytes()[:40])
    args = ["search", "--space", "lambda_threshold", "--dataset", "camus", "--task", "segmentation",
            "--concurrency", "1",
            "--data-root", str(tmp_path / "data"), "--trials", "2", "--epochs", "1", "--out", str(tmp_path),
            "--device", "cpu", *TINY_PARAMS, "-p", "batch_size=4", "-o", "views=4CH"]
    stopped = cli(*args, "--name", "strict", cache=shared_cache)
    assert stopped.returncode == 2 and "patient0002_4CH_ES.nii.gz: unreadable" in stopped.stderr
    assert "Traceback" not in stopped.stderr

    run = cli(*args, "--name", "camus", "--skip-bad", "--eval-dataset", "qata_cov19", cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "left out 1 bad file(s)" in run.stdout and "patient0002_4CH_ES" in run.stdout
    trials = read_rows(tmp_path / "camus" / "trials.parquet")
    assert len(trials) == 2 and all(t["status"] == "completed" and t["dataset"] == "camus" for t in trials)
    assert all(0 <= t["miou"] <= 1 and t["data_root"] == str((tmp_path / "data").resolve()) for t in trials)
    for t in trials:
        assert t["n_skipped"] == 1 and t["skip_bad"] and t["data_options"] == '{"views": "4CH"}'
        assert t["eval_dataset"] == "qata_cov19" and 0 <= t["eval_miou_ref"] <= 1 and t["eval_psnr"] > 5
        assert "eval_miou" not in t or t["eval_miou"] is None or math.isnan(t["eval_miou"])  # other classes


def test_search_on_a_folder_of_scans_ranks_on_the_self_supervised_loss(tmp_path: Path, shared_cache: str) -> None:
    """One's own scans (PNG/TIFF/NIfTI/DICOM, no clean training target): psnr cannot rank a search whose validation
    scans have no twin (one line, exit 2); the Neighbor2Neighbor loss on the validation scans can. The recognizer
    is MONAI's DenseNet121, by name, with its own arguments."""
    from tests.fixtures.scans import make_scans

    make_scans(tmp_path / "data" / "mine", n=(16, 4, 4), twins="test")
    args = ["search", "--space", "lambda_threshold", "--dataset", "folder", "--data-root", str(tmp_path / "data"),
            "-o", "subfolder=mine", "--trials", "2", "--epochs", "1", "--concurrency", "1", "--out", str(tmp_path),
            "--device", "cpu", *TINY_PARAMS, "-p", "batch_size=4", "-p", "n_train=0", "-p", "n_val=0",
            "-p", "n_test=0", "-p", "clean_targets=false", "-p", "loss_ip=neighbor2neighbor", "--degradation", "none",
            "--recognizer", "monai:DenseNet121", "-p", f"recognizer_args={SMALL_DENSENET}"]
    refused = cli(*args, "--name", "psnr", cache=shared_cache)
    assert refused.returncode == 2 and "no clean twin for any validation scan" in refused.stderr
    run = cli(*args, "--name", "mine", "--objectives", "loss_image,task_metric", cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = read_rows(tmp_path / "mine" / "trials.parquet")
    assert len(trials) == 2 and all(t["status"] == "completed" for t in trials)
    for t in trials:
        assert math.isfinite(t["loss_image"]) and math.isnan(t["psnr"]) and 5 < t["test_psnr"] < 60
        assert t["data_options"] == '{"subfolder": "mine"}' and not t["clean_targets"]
        assert t["recognizer"] == "monai:DenseNet121" and t["recognizer_args"] == SMALL_DENSENET
    front = read_rows(tmp_path / "mine" / "pareto.parquet")
    assert front and all(math.isfinite(f["loss_image"]) for f in front)


def test_a_misspelt_monai_argument_is_one_line_before_ray(tmp_path: Path, shared_cache: str) -> None:
    typo = cli("search", "--space", "lambda_threshold", "--recognizer", "monai:DenseNet121", "--out", str(tmp_path),
               "--name", "typo", "--device", "cpu", *TINY_PARAMS, "-p", "recognizer_args=init_feature=8",
               cache=shared_cache)
    assert typo.returncode == 2 and "has no option 'init_feature'. Did you mean 'init_features'" in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1
