"""Optuna is told COMPLETE only for full-budget trials: early-stopped ones are PRUNED, errors FAIL."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from gradprom.errors import GradpromError
from gradprom.search.searcher import StudySearcher, make_sampler
from gradprom.search_spaces import load_space


def searcher(budget: int = 4) -> StudySearcher:
    return StudySearcher(load_space("lambda_threshold").distributions(), ["psnr", "task_metric"], ["max", "max"],
                         make_sampler("random", 0, 8), budget)


def test_states_told_to_optuna() -> None:
    s = searcher()
    for tid in ("full", "stopped", "crashed", "nan"):
        assert set(s.suggest(tid)) == {"lam", "threshold"}
    s.on_trial_complete("full", {"epoch": 4, "psnr": 25.0, "task_metric": 0.6})
    s.on_trial_complete("stopped", {"epoch": 2, "psnr": 99.0, "task_metric": 0.99})
    s.on_trial_complete("crashed", {"epoch": 4, "psnr": 25.0, "task_metric": 0.6}, error=True)
    s.on_trial_complete("nan", {"epoch": 4, "psnr": float("nan"), "task_metric": 0.6})
    states = [t.state for t in s.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL]
    assert s.study.best_trials[0].values == [25.0, 0.6]  # the stopped trial's 99 dB never counted
    s.on_trial_complete("full", {"epoch": 4, "psnr": 1.0, "task_metric": 0.0})  # told once, whatever comes again
    assert s.study.best_trials[0].values == [25.0, 0.6]


def test_samplers_are_seeded() -> None:
    def draws(seed: int) -> list[float]:
        s = StudySearcher(load_space("strategies").distributions(), ["psnr", "task_metric"], ["max", "max"],
                          make_sampler("tpe", seed, 8), 1)
        return [s.suggest(f"t{i}")["lam"] for i in range(5)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    assert isinstance(make_sampler("nsga2", 0, 20), optuna.samplers.NSGAIISampler)
    with pytest.raises(GradpromError, match="Valid samplers"):
        make_sampler("cmaes", 0, 4)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "gp"])
def test_each_sampler_runs_a_seeded_two_objective_study(name: str) -> None:
    """Every offered sampler takes the two-objective study gradprom makes (past its startup trials, so GP and
    TPE really model), and draws the same points again from the same seed."""
    def run(seed: int) -> list[tuple[float, float]]:
        s = StudySearcher(load_space("gates").distributions(), ["psnr", "task_metric"], ["max", "max"],
                          make_sampler(name, seed, 6), 1)
        points = []
        for i in range(6):
            config = s.suggest(f"t{i}")
            lam = config["lam"]
            points.append((lam, config["ema"]))
            # a smooth two-objective trade-off in λ, so a model-based sampler has something to fit
            s.on_trial_complete(f"t{i}", {"psnr": 30 - lam, "task_metric": lam / (1 + lam), "epoch": 1})
        return points

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_auto_sampler_is_refused_in_one_line() -> None:
    with pytest.raises(GradpromError, match="OptunaHub.*never fetches code"):
        make_sampler("auto", 0, 4)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "gp"])
def test_each_sampler_survives_tunes_pickling_and_a_resume(name: str, tmp_path) -> None:  # noqa: ANN001
    """Tune pickles the searcher with cloudpickle (with the Tuner, in each snapshot) and a resume restores it:
    every offered sampler must go through both (Optuna 5's NSGA-II holds a thread lock), and the restored study
    asks next what the original asks next."""
    from ray import cloudpickle

    s = StudySearcher(load_space("gates").distributions(), ["psnr", "task_metric"], ["max", "max"],
                      make_sampler(name, 0, 6), 1)
    for i in range(4):
        lam = s.suggest(f"t{i}")["lam"]
        s.on_trial_complete(f"t{i}", {"psnr": 30 - lam, "task_metric": lam / (1 + lam), "epoch": 1})
    copied = cloudpickle.loads(cloudpickle.dumps(s))
    s.save(str(tmp_path / "searcher.pkl"))
    restored = StudySearcher(load_space("gates").distributions(), ["psnr", "task_metric"], ["max", "max"],
                             make_sampler(name, 9, 6), 1)
    restored.restore(str(tmp_path / "searcher.pkl"))
    nxt = s.suggest("t4")
    assert copied.suggest("t4") == nxt == restored.suggest("t4")
    assert len(restored.study.trials) == 5 and restored.asked["t3"] == 3
