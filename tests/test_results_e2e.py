"""Reading an experiment back, through the real CLI on one small real search: `report` opened in a real headless
Chromium (Selenium + chromedriver: every image loaded, the front table holds the front's rows, nothing fetched
from the network), `rerun` reproducing a trial exactly, `--warm-start` handing the trials to the next study's
sampler, `aggregate` and `pareto --by`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gradprom.results.parquet import read_rows
from tests.fixtures.cli import cli
from tests.fixtures.processes import shared_ray
from tests.fixtures.settings import TINY_PARAMS

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# CI installs Debian's chromium and chromium-driver (.ci/run): there a missing browser is a failure, not a skip
needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
                                   reason="Debian's chromium and chromium-driver are not installed here")


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, shared_cache: str, request: pytest.FixtureRequest) -> tuple:
    """One small real search on two objectives of its own (--objectives psnr,acc_ref): its folder and its output."""
    shared_ray(shared_cache, request)
    out = tmp_path_factory.mktemp("report-exp")
    run = cli("search", "--space", "strategies", "--trials", "3", "--epochs", "1", "--sampler", "random",
              "--concurrency", "1",
              "--objectives", "psnr,acc_ref", "--out", str(out), "--name", "exp", "--device", "cpu", *TINY_PARAMS,
              cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    return out / "exp", run


@pytest.fixture(scope="module")
def experiment(searched: tuple) -> Path:
    return searched[0]


def test_the_front_is_on_the_searched_objectives(searched: tuple) -> None:
    folder, run = searched
    trials = [t for t in read_rows(folder / "trials.parquet") if t["status"] == "completed"]
    expected = {t["trial_id"] for t in trials if not any(
        o["psnr"] >= t["psnr"] and o["acc_ref"] >= t["acc_ref"] and (o["psnr"] > t["psnr"] or o["acc_ref"] >
                                                                      t["acc_ref"]) for o in trials)}
    assert {f["trial_id"] for f in read_rows(folder / "pareto.parquet")} == expected
    assert "psnr vs acc_ref" in run.stdout and "acc_ref ↑" in run.stdout
    assert json.loads((folder / "manifest.json").read_text())["request"]["objectives"] == "psnr,acc_ref"


@needs_browser
def test_report_loads_offline_with_every_image_and_the_front(experiment: Path, tmp_path: Path,
                                                             shared_cache: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    run = cli("report", str(experiment), "--out", str(tmp_path / "report"), cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    page = tmp_path / "report" / "index.html"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER or "/usr/bin/chromedriver"), options=options)
    try:
        driver.get_log("performance")  # drain what the browser's own start page requested
        driver.get(page.as_uri())
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 4  # front, sensitivity, telemetry, qualitative
        widths = driver.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth)")
        assert all(w and w > 0 for w in widths), widths
        front = read_rows(experiment / "pareto.parquet")
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll('#front tbody tr')).map(r => r.cells[1].innerText)")
        assert sorted(shown) == sorted(r["trial_id"] for r in front)
        # every request the page's document made, from Chrome's own network log (CDP Network.requestWillBeSent);
        # the browser's own new-tab page requests chrome:// resources of its own and is not the report
        events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        fetched = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"
                   and e["params"].get("documentURL") == page.as_uri()]
        assert len(fetched) >= 1 + len(images) and all(url.startswith("file://") for url in fetched), fetched
        assert not driver.find_elements(By.TAG_NAME, "script")
        titles = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert "Experiments" in titles and "The front" in titles and "Qualitative view" in titles
        assert "gradprom search --space strategies" in driver.find_element(By.ID, "experiments").text
    finally:
        driver.quit()


def test_report_of_nothing_is_one_line(tmp_path: Path, shared_cache: str) -> None:
    run = cli("report", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), cache=shared_cache)
    assert run.returncode == 2 and "holds no trials.parquet" in run.stderr


def test_rerun_reproduces_a_trial_exactly(experiment: Path, tmp_path: Path, shared_cache: str) -> None:
    trial = next(r for r in read_rows(experiment / "trials.parquet") if r["status"] == "completed")
    run = cli("rerun", str(experiment), trial["trial_id"][-5:], "--out", str(tmp_path), cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    (again,) = read_rows(tmp_path / "rerun.parquet")
    for key in ("test_psnr", "test_ssim", "test_acc", "test_acc_ref", "psnr", "acc_ref", "loss_ip"):
        assert again[key] == trial[key], key  # bit-identical on the CPU
    assert again["data_fingerprint"] == trial["data_fingerprint"] and again["run_git_commit"] == \
        trial["run_git_commit"]
    assert "the test figures are identical" in run.stdout


def test_warm_start_hands_the_earlier_trials_to_the_sampler(experiment: Path, tmp_path: Path, shared_cache: str,
                                                           ray_session: None) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    run = cli("search", "--space", "strategies", "--trials", "1", "--epochs", "1", "--out", str(tmp_path),
                   "--name", "warm", "--warm-start", str(experiment), "--device", "cpu", *TINY_PARAMS,
                   cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="warm-synthetic",
                              storage=JournalStorage(JournalFileBackend(str(tmp_path / "warm" / "optuna.journal"))))
    earlier = [r for r in read_rows(experiment / "trials.parquet") if r["status"] == "completed"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len(earlier) + 1
    handed = sorted(tuple(t.values) for t in done[:len(earlier)])
    assert handed == sorted((r["psnr"], r["task_metric"]) for r in earlier)
    assert all(t.params["strategy"] == r["strategy"] for t, r in
               zip(sorted(done[:len(earlier)], key=lambda t: t.values[0]), sorted(earlier, key=lambda r: r["psnr"]),
                   strict=True))
    # the experiment's own study is there too, for optuna-dashboard: one trial per trial row
    own = optuna.load_study(study_name="exp-synthetic", storage=JournalStorage(JournalFileBackend(
        str(experiment / "optuna.journal"))))
    assert len(own.trials) == len(read_rows(experiment / "trials.parquet"))


def test_aggregate_and_pareto_by_strategy(experiment: Path, tmp_path: Path, shared_cache: str) -> None:
    run = cli("aggregate", str(experiment), "--out", str(tmp_path / "all.parquet"), cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    merged = pq.read_table(tmp_path / "all.parquet").to_pylist()
    assert len(merged) == len(read_rows(experiment / "trials.parquet"))
    assert {r["experiment"] for r in merged} == {"exp"} and all(r["space"] == "strategies" for r in merged)
    shown = cli("pareto", str(experiment), "--by", "strategy", "--objectives", "psnr,acc_ref", cache=shared_cache)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "fronts by strategy" in shown.stdout and "hypervolume" in shown.stdout and "acc_ref ↑" in shown.stdout
    bad = cli("pareto", str(experiment), "--objectives", "psnr,nosuch", cache=shared_cache)
    assert bad.returncode == 2 and "unknown objective" in bad.stderr
