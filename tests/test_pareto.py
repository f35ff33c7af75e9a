"""Pareto fronts: exactly the non-dominated, full-budget, finite trials, per dataset."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from gradprom.analysis.pareto import front_rows, non_dominated


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
    from gradprom.analysis.pareto import parse_objectives
    from gradprom.errors import GradpromError

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


def test_pareto_ranks_are_layers_of_non_dominated_sorting() -> None:
    from gradprom.analysis.pareto import pareto_ranks

    # front 0: (30, .5), (25, .8); front 1: (29, .4), (20, .8); front 2: (19, .3); plus rows that cannot rank
    pts = [(30, 0.5), (29, 0.4), (25, 0.8), (20, 0.8), (19, 0.3)]
    rows = [row(str(i), p, a) for i, (p, a) in enumerate(pts)] + [row("x", 40, 0.9, status="failed"),
                                                                  row("y", math.nan, 0.9)]
    assert pareto_ranks(rows) == [0, 1, 0, 1, 2, None, None]
    assert pareto_ranks(rows, [("psnr", "min"), ("task_metric", "max")])[:5] == [2, 2, 1, 0, 0]


def test_hypervolume_and_knee_by_hand() -> None:
    from gradprom.analysis.pareto import fronts_by, hypervolume, knee, reference_point

    # three front points and a dominated one, reference (10 dB, 0): the union of rectangles is
    # (30−10)·0.5 + (25−10)·(0.8−0.5) + (14−10)·(0.95−0.8) = 10 + 4.5 + 0.6 = 15.1
    rows = [row("a", 30, 0.5), row("b", 25, 0.8), row("c", 14, 0.95), row("d", 20, 0.4)]
    ref = reference_point(("psnr", "task_metric"))
    assert ref == [10.0, 0.0]
    assert hypervolume(rows, ("psnr", "task_metric"), ref) == pytest.approx(15.1)
    # scaled to [0, 1]: a (1, 0), b (11/16, 2/3), c (0, 1); b lies farthest from the line a–c
    assert knee(front_rows(rows), ("psnr", "task_metric"))["trial_id"] == "b"
    by = fronts_by(rows + [{**row("e", 28, 0.9), "strategy": "joint"}], "strategy", ("psnr", "task_metric"), ref)
    assert [(g["strategy"], g["front_size"]) for g in by] == [(None, 3), ("joint", 1)]
    assert by[1]["hypervolume"] == pytest.approx((28 - 10) * 0.9)
    with pytest.raises(Exception, match="has no default hypervolume reference"):
        reference_point(("psnr", "step_ms"))
