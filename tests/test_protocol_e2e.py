"""`gradprom protocol … --quick` and `gradprom search --objectives` end to end: real CLI, local Ray, Parquet."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradprom.results.parquet import read_rows
from gradprom.search.request import SearchRequest, plan
from gradprom.search.study import make_searcher
from tests.fixtures.cli import cli
from tests.fixtures.settings import TINY_PARAMS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def test_quick_protocol_runs_the_grid_and_reads_it_as_evidence(tmp_path: Path, shared_cache: str,
                                                               mlflow_store: str) -> None:
    store = mlflow_store
    run = cli("protocol", "denoise", "--quick", "--out", str(tmp_path), "--name", "q", "--device", "cpu",
              "--concurrency", "1", "--mlflow", store, cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "q"
    trials = read_rows(folder / "trials.parquet")
    # the quick grid: frozen and gradprom × σ=0.2 × classification × seeds 0 and 1, every cell exactly once
    assert sorted((t["strategy"], t["seed"], t["degradation"]) for t in trials) == sorted(
        (s, seed, "gaussian:sigma=0.2") for s in ("frozen", "gradprom") for seed in (0, 1))
    assert all(t["status"] == "completed" and t["lam"] == 0.1 and t["epochs_done"] == 2 for t in trials)
    table = read_rows(folder / "protocol.parquet")
    by_seed = {(t["strategy"], t["seed"]): t for t in trials}
    for metric in ("test_psnr", "test_acc", "test_acc_ref"):
        summary = next(r for r in table if r["kind"] == "summary" and r["strategy"] == "gradprom"
                       and r["metric"] == metric)
        values = [by_seed["gradprom", s][metric] for s in (0, 1)]
        assert summary["n"] == 2 and summary["mean"] == pytest.approx(sum(values) / 2)
        assert summary["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
        test = next(r for r in table if r["kind"] == "paired" and r["metric"] == metric)
        diffs = [by_seed["gradprom", s][metric] - by_seed["frozen", s][metric] for s in (0, 1)]
        assert (test["strategy"], test["baseline"]) == ("gradprom", "frozen")
        assert test["mean_diff"] == pytest.approx(sum(diffs) / 2)
    page = (folder / "protocol.md").read_text()
    assert "## Protocol denoise" in page and "### Verdicts" in page and "gradprom vs frozen" in page
    assert (folder / "protocol.png").stat().st_size > 10_000
    assert "gradprom vs frozen" in run.stdout and "mean ± std" in run.stdout
    from mlflow.tracking import MlflowClient  # the evidence joins the experiment's run in MLflow

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("q").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 5 and {"protocol.md", "protocol.parquet", "front.csv"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}


def test_objectives_reach_optuna_and_are_checked(tmp_path: Path, shared_cache: str) -> None:
    """--objectives become the study's metrics and directions (a loss or time minimised); an unknown one is one line.
    A search's front on its --objectives, end to end: test_results_e2e (its experiment searches psnr,acc_ref)."""
    request = SearchRequest(space="lambda_threshold", datasets=["synthetic"], objectives="psnr,acc_ref,step_ms",
                            params=[p for p in TINY_PARAMS if p != "-p"])
    (study,) = plan(request)
    searcher = make_searcher(study, request)
    assert (searcher.metric, searcher.mode) == (["psnr", "acc_ref", "step_ms"], ["max", "max", "min"])
    bad = cli("search", "--objectives", "psnr,acc_rf", "--out", str(tmp_path), cache=shared_cache)
    assert bad.returncode == 2 and "unknown objective 'acc_rf'. Did you mean 'acc_ref'" in bad.stderr


def staircase_area(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """The area a set of points dominates above `ref`, both maximised: sorted by the first objective, best first,
    each point adds the strip between the best second objective so far and its own (a hand formula for 2-D)."""
    area, best = 0.0, ref[1]
    for x, y in sorted(points, reverse=True):
        if x > ref[0] and y > best:
            area += (x - ref[0]) * (y - best)
            best = y
    return area


def test_quick_front_protocol_compares_strategies_by_their_fronts(tmp_path: Path, shared_cache: str) -> None:
    """`denoise_fronts --quick`: frozen and gradprom at λ 0.1 and 1, enhancer_only once, 2 seeds; each strategy's
    front hypervolume per seed (from 10 dB, 0) as the hand formula gives it from the trials; attainment and EAF
    difference figures; the fronts in protocol.md, the report and `pareto --by strategy`."""
    run = cli("protocol", "denoise_fronts", "--quick", "--out", str(tmp_path), "--name", "f", "--device", "cpu",
              "--concurrency", "1", cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "f"
    trials = read_rows(folder / "trials.parquet")
    assert sorted((t["strategy"], t["lam"], t["seed"]) for t in trials) == sorted(
        [(s, lam, seed) for s in ("frozen", "gradprom") for lam in (0.1, 1.0) for seed in (0, 1)]
        + [("enhancer_only", 1.0, seed) for seed in (0, 1)])
    table = read_rows(folder / "protocol.parquet")
    for r in (r for r in table if r["kind"] == "hypervolume"):
        points = [(t["test_psnr"], t["test_acc_ref"]) for t in trials
                  if t["strategy"] == r["strategy"] and t["seed"] == r["seed"]]
        assert r["hypervolume"] == pytest.approx(staircase_area(points, (10.0, 0.0))), r
    assert {(r["strategy"], r["baseline"]) for r in table if r["kind"] == "hv_paired"} == {
        ("enhancer_only", "frozen"), ("gradprom", "frozen")}
    figures = sorted(p.name for p in (folder / "fronts").glob("*.png"))
    assert figures == ["fronts-0-attainment.png", "fronts-0-eafdiff-enhancer_only-vs-frozen.png",
                       "fronts-0-eafdiff-gradprom-vs-frozen.png"]
    page = (folder / "protocol.md").read_text()
    assert "## Fronts over the front axes" in page and "gradprom vs frozen (fronts, task=classification" in page
    by = cli("pareto", str(folder), "--on", "test", "--by", "strategy", cache=shared_cache)
    assert by.returncode == 0 and "hypervolume over seeds" in by.stdout and "attains more often" in by.stdout
    report = cli("report", str(folder), "--out", str(tmp_path / "report"), "--no-qualitative", cache=shared_cache)
    assert report.returncode == 0, report.stderr[-2000:]
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Fronts over λ" in html and "f-fronts-0-attainment.png" in html
    assert (tmp_path / "report" / "f-fronts-0-attainment.png").stat().st_size > 5_000
