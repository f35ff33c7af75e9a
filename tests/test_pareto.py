"""Pareto fronts: exactly the non-dominated, full-budget, finite trials, per dataset."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from gradprom.orchestrator.pareto import front_rows, non_dominated


def brute_force(points: list[tuple[float, float]]) -> list[bool]:
    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))

    return [not any(dominates(q, p) for q in points) for p in points]


def test_non_dominated_matches_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 12)
        pts = [(rng.choice([1.0, 2.0, 3.0, rng.random()]), rng.choice([1.0, 2.0, rng.random()])) for _ in range(n)]
        assert non_dominated(np.array(pts)).tolist() == brute_force(pts)


def test_hand_made_front_keeps_duplicates_and_drops_dominated() -> None:
    pts = np.array([[30.0, 0.5], [25.0, 0.8], [30.0, 0.5], [29.0, 0.4], [20.0, 0.8]])
    assert non_dominated(pts).tolist() == [True, True, True, False, False]


def row(tid, psnr, acc, status="completed", dataset="d", task="classification"):
    return {"trial_id": tid, "psnr": psnr, "task_metric": acc, "status": status, "dataset": dataset, "task": task}


def test_front_rows_only_full_budget_and_finite_per_dataset() -> None:
    rows = [
        row("a", 30.0, 0.5), row("b", 25.0, 0.8),
        row("c", 40.0, 0.9, status="stopped_early"),   # would dominate all, but did not run its budget
        row("d", 41.0, 0.95, status="failed"),
        row("e", math.nan, 0.99),                       # NaN objective never enters
        row("f", 10.0, 0.1, dataset="other"),           # alone on its dataset: on its front
    ]
    assert {r["trial_id"] for r in front_rows(rows)} == {"a", "b", "f"}


def test_objectives_parse_with_directions() -> None:
    from gradprom.errors import GradpromError
    from gradprom.orchestrator.pareto import parse_objectives

    assert parse_objectives("psnr,acc_ref") == (("psnr", "max"), ("acc_ref", "max"))
    assert parse_objectives("psnr, loss_ip, step_ms:max") == (("psnr", "max"), ("loss_ip", "min"), ("step_ms", "max"))
    for bad, message in (("psnr", "two or more"), ("psnr,psnr", "named twice"), ("psnr,acc:up", "max or min")):
        with pytest.raises(GradpromError, match=message):
            parse_objectives(bad)
    with pytest.raises(GradpromError, match="unknown objective 'acc_rf'. Did you mean 'acc_ref'"):
        parse_objectives("psnr,acc_rf", known=["psnr", "acc_ref"])


def test_a_minimised_objective_flips_dominance() -> None:
    """With step_ms minimised, the front is brute force over (psnr, −step_ms)."""
    rng = random.Random(1)
    rows = [{"trial_id": str(i), "psnr": rng.choice([20.0, 21.0, rng.random() * 30]), "step_ms": rng.random() * 100,
             "status": "completed", "dataset": "d", "task": "classification"} for i in range(30)]
    expected = brute_force([(r["psnr"], -r["step_ms"]) for r in rows])
    found = {r["trial_id"] for r in front_rows(rows, [("psnr", "max"), ("step_ms", "min")])}
    assert found == {r["trial_id"] for r, keep in zip(rows, expected, strict=True) if keep}
