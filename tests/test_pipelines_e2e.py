"""Both new seed systems through the real CLI: a short `--space r2c_weights` search (r2c_gan, its pipeline) and a short
`--space sr_architecture` search (srresnet vs the semantic-guided sesr, ×2/×4) write the usual Parquet files, and
`gradprom report` shows both experiments' fronts on one page; `gradprom pipelines` lists what each declares."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradprom.results.parquet import read_rows
from tests.fixtures.cli import cli
from tests.fixtures.processes import shared_ray
from tests.fixtures.settings import TINY_PARAMS

pytestmark = pytest.mark.slow

FILES = ("trials.parquet", "epochs.parquet", "pareto.parquet", "manifest.json")


@pytest.fixture(scope="module")
def searches(tmp_path_factory: pytest.TempPathFactory, shared_cache: str, request: pytest.FixtureRequest) -> Path:
    shared_ray(shared_cache, request)
    out = tmp_path_factory.mktemp("pipelines")
    common = ["--trials", "2", "--epochs", "1", "--sampler", "random", "--concurrency", "1", "--out", str(out),
              "--device", "cpu",
              *TINY_PARAMS]
    runs = [cli("search", "--space", "r2c_weights", "--dataset", "synthetic",  # the space's own pipeline: r2c_gan
                "--name", "r2c", *common, cache=shared_cache),
            cli("search", "--space", "sr_architecture", "--dataset", "synthetic", "--name", "sr",
                "-p", "enhancer=sesr,srresnet", *common, cache=shared_cache)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_an_r2c_gan_search_writes_the_usual_files(searches: Path) -> None:
    assert all((searches / "r2c" / f).is_file() for f in FILES)
    trials = read_rows(searches / "r2c" / "trials.parquet")
    assert len(trials) == 2 and all(t["status"] == "completed" and t["pipeline"] == "r2c_gan" for t in trials)
    for t in trials:  # its own metric columns, and the objectives every pipeline reports
        assert all(math.isfinite(t[k]) for k in ("psnr", "ssim", "task_metric", "f1", "acc", "sensitivity",
                                                 "specificity", "precision", "test_f1"))
        assert t["task_metric"] == t["f1"] and 0 <= t["test_f1"] <= 1
    assert read_rows(searches / "r2c" / "pareto.parquet")


def test_an_sr_architecture_search_runs_sesr_at_x2_or_x4(searches: Path) -> None:
    trials = read_rows(searches / "sr" / "trials.parquet")
    assert len(trials) == 2 and all(t["status"] == "completed" for t in trials)
    assert all(t["degradation"] in ("downsample:scale=2", "downsample:scale=4") for t in trials)
    assert all(t["pipeline"] == "task_driven" and t["psnr"] > 0 for t in trials)
    assert read_rows(searches / "sr" / "pareto.parquet")


def test_the_report_shows_both_pipelines_fronts(searches: Path, tmp_path: Path, shared_cache: str) -> None:
    """One page for both experiments: the GAN is one system (`strategy` r2c_gan) in the per-strategy fronts, whose
    knee is one of its trials, and the SR search's own front rows are on the page."""
    run = cli("report", str(searches / "r2c"), str(searches / "sr"), "--out", str(tmp_path / "rep"),
              cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    page = (tmp_path / "rep" / "index.html").read_text()
    r2c_ids = {str(t["trial_id"]) for t in read_rows(searches / "r2c" / "trials.parquet")}
    assert all(t["strategy"] == "r2c_gan" for t in read_rows(searches / "r2c" / "trials.parquet"))
    hv = page[page.index("id='hv-synthetic'"):]
    row = hv[hv.index(">r2c_gan<"):hv.index("</tr>", hv.index(">r2c_gan<"))]
    assert any(tid[-5:] in row or tid in row for tid in r2c_ids), row  # its own front's knee
    for trial in read_rows(searches / "sr" / "pareto.parquet"):
        assert str(trial["trial_id"]) in page


def test_pipelines_lists_both(shared_cache: str) -> None:
    run = cli("pipelines", cache=shared_cache, width=300)
    assert run.returncode == 0, run.stderr
    assert "r2c_gan" in run.stdout and "task_driven" in run.stdout and "r2c_weights" in run.stdout
