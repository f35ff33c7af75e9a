"""`--fidelity-check`: a scheduler's first rung measured on scripted results whose rank correlations are known by
hand, and the decision it leads to (trust the stopper, or run every trial fully)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from gradprom.errors import GradpromError
from gradprom.search.fidelity import FidelityGate, fidelity_columns, rank_agreement
from gradprom.search.request import SearchRequest, check_scheduling


class AlwaysStop(TrialScheduler):
    """A stopper that wants every trial stopped at every result: what the gate lets through is visible."""

    def on_trial_result(self, tune_controller, trial, result):  # noqa: ANN001, ANN201
        return TrialScheduler.STOP


def feed(gate: FidelityGate, trial: str, epoch: int, psnr: float, task: float) -> str:
    return gate.on_trial_result(None, SimpleNamespace(trial_id=trial), {"epoch": epoch, "psnr": psnr,
                                                                         "task_metric": task})


def measured(tmp_path: Path, final_task: list[float]) -> FidelityGate:
    """Four trials whose epoch-1 psnr and task metric both rank 1 < 2 < 3 < 4; final psnr keeps that order, the final
    task metric is `final_task`. Nothing is stopped while they run."""
    gate = FidelityGate(AlwaysStop(), ["psnr", "task_metric"], rung=1, budget=3, probe=4, min_rho=0.5,
                        record=str(tmp_path / "fidelity-synthetic.json"))
    for i, trial in enumerate("abcd"):
        assert feed(gate, trial, 1, 20.0 + i, 0.1 * (i + 1)) == TrialScheduler.CONTINUE
    for i, trial in enumerate("abcd"):
        verdict = feed(gate, trial, 3, 25.0 + i, final_task[i])
        assert (verdict == TrialScheduler.CONTINUE) == (i < 3 or gate.decision == "fallback")
    return gate


def test_a_rung_that_ranks_like_noise_runs_every_later_trial_fully(tmp_path: Path) -> None:
    gate = measured(tmp_path, [0.4, 0.3, 0.2, 0.1])  # the task metric's order reversed: ρ = −1
    assert gate.decision == "fallback" and gate.rho == {"psnr": 1.0, "task_metric": -1.0}
    assert feed(gate, "e", 1, 10.0, 0.0) == TrialScheduler.CONTINUE  # the stopper says STOP; it no longer counts
    record = json.loads((tmp_path / "fidelity-synthetic.json").read_text())
    assert record["decision"] == "fallback" and record["trials"] == 4 and "runs its full budget" in record["said"]
    assert fidelity_columns(tmp_path, "synthetic") == {"fidelity_decision": "fallback",
                                                       "fidelity_rho": '{"psnr": 1.0, "task_metric": -1.0}'}


def test_a_rung_that_ranks_well_hands_decisions_to_the_scheduler(tmp_path: Path) -> None:
    gate = measured(tmp_path, [0.1, 0.2, 0.4, 0.3])  # one swap: ρ = 1 − 6·(1 + 1)/(4·15) = 0.8
    assert gate.decision == "trusted" and gate.rho["task_metric"] == pytest.approx(0.8)
    assert feed(gate, "e", 1, 10.0, 0.0) == TrialScheduler.STOP
    assert fidelity_columns(tmp_path, "other") == {}  # no check for that dataset: no columns


def test_the_decision_survives_a_save_and_restore(tmp_path: Path) -> None:
    gate = measured(tmp_path, [0.4, 0.3, 0.2, 0.1])
    gate.save(str(tmp_path / "state.pkl"))
    again = FidelityGate(AlwaysStop(), ["psnr", "task_metric"], rung=1, budget=3, probe=4)
    again.restore(str(tmp_path / "state.pkl"))
    assert again.decision == "fallback" and feed(again, "f", 1, 1.0, 1.0) == TrialScheduler.CONTINUE


def test_rank_agreement_against_the_hand_formula() -> None:
    assert rank_agreement([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert rank_agreement([1, 1, 1], [1, 2, 3]) is None  # a constant rung ranks nothing
    assert rank_agreement([1, 2], [1, 2]) is None  # too few trials


@pytest.mark.parametrize(("change", "message"), [
    ({"fidelity_check": 2, "scheduler": "pareto-asha"}, "--fidelity-check must be 0 .* or 3…--trials"),
    ({"fidelity_check": 4, "scheduler": "fifo"}, "fifo stops nothing"),
    ({"fidelity_check": 4, "scheduler": "asha", "grace_period": 6}, "--grace-period below --epochs"),
    ({"fidelity_check": 4, "scheduler": "asha", "min_rho": 2.0}, "--min-rho must be in -1…1"),
])
def test_bad_fidelity_settings_are_one_line(change: dict, message: str) -> None:
    with pytest.raises(GradpromError, match=message):
        check_scheduling(SearchRequest(trials=12, epochs=6, **change))
