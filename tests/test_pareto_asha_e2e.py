"""`--scheduler pareto-asha` inside a real small search: the trials it stops are the ones the rung's ranking
says, they are told PRUNED to Optuna and never enter the front (`asha` with two objectives warns: test_search_e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from gradprom.results.parquet import read_rows
from tests.fixtures.cli import cli
from tests.fixtures.settings import TINY_PARAMS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def test_pareto_asha_stops_the_trials_its_rung_ranks_low(tmp_path: Path, shared_cache: str) -> None:
    run = cli("search", "--space", "lambda_threshold", "--trials", "6", "--epochs", "2", "--concurrency", "1",
                   "--sampler", "random", "--seed", "3", "--scheduler", "pareto-asha", "--grace-period", "1",
                   "--reduction-factor", "2", "--out", str(tmp_path), "--name", "pa", "--device", "cpu",
                   *TINY_PARAMS, cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((tmp_path / "pa" / "manifest.json").read_text())
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "pa" / "optuna.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    asked = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    # one trial at a time, so Optuna's ask order is the order the trials met the rung in
    number = {(round(t.params["lam"], 12), round(t.params["threshold"], 12)): t.number for t in asked}
    trials = sorted(read_rows(tmp_path / "pa" / "trials.parquet"),
                    key=lambda t: number[round(t["lam"], 12), round(t["threshold"], 12)])
    epochs = read_rows(tmp_path / "pa" / "epochs.parquet")
    at_rung = {e["trial_id"]: (e["psnr"], e["task_metric"]) for e in epochs if e["epoch"] == 1}
    stopped = [t["trial_id"] for t in trials if t["status"] == "stopped_early"]
    assert stopped, "this seed's search has trials the rung ranks low"
    assert all(t["status"] in ("completed", "stopped_early") for t in trials)
    # trial k met the rung after trials 0…k−1: with η = 2 it goes on only if it ranks in
    # the top max(1, ⌊(k+1)/2⌋). Where dominance alone decides, check the scheduler's decision by hand.
    for k, trial in enumerate(trials):
        me, earlier = at_rung[trial["trial_id"]], [at_rung[t["trial_id"]] for t in trials[:k]]
        keep = max(1, (k + 1) // 2)
        if sum(dominates(o, me) for o in earlier) >= keep:
            assert trial["trial_id"] in stopped, (k, me, earlier)
        if all(dominates(me, o) for o in earlier):
            assert trial["trial_id"] not in stopped, (k, me, earlier)
    for t in trials:
        assert t["epochs_done"] == (1 if t["trial_id"] in stopped else 2)
    front = {f["trial_id"] for f in read_rows(tmp_path / "pa" / "pareto.parquet")}
    assert front and not front & set(stopped)
    # Optuna was told: PRUNED for each stopped trial, COMPLETE for the others
    states = [t.state for t in asked]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(trials) - len(stopped)
    assert manifest["request"]["scheduler"] == "pareto-asha"
