"""`pareto-asha`'s rung decisions on scripted results, against orders worked out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from gradprom.errors import GradpromError
from gradprom.search.schedulers import ParetoASHA, crowding_distance, promotable, rung_order

# five points of one front (maximise both): A and D are the extremes, E the middle, B next to A, C next to D
A, B, C, D, E = (0.0, 10.0), (1.0, 9.9), (9.0, 1.0), (10.0, 0.0), (5.0, 5.0)


def test_dominated_points_rank_after_the_front() -> None:
    points = np.array([(1, 1), (3, 3), (2, 0), (0, 4), (2, 2)])
    # (3,3) and (0,4) are the front; (2,2) and (1,1)... dominated by (3,3); (2,0) by (3,3) and (2,2)
    order = rung_order(points)
    assert set(order[:2]) == {1, 3} and order[-1] in (0, 2)
    assert order.index(4) < order.index(0)  # (2,2) is on the second front, (1,1) and (2,0) on the third


def test_crowding_distance_by_hand() -> None:
    crowd = crowding_distance(np.array([A, B, C, D, E]))
    # E: (9−1)/10 on the first objective + (9.9−1)/10 on the second; B and C: 0.5 + 0.5
    assert math.isinf(crowd[0]) and math.isinf(crowd[3])
    assert crowd[4] == pytest.approx(0.8 + 0.89) and crowd[1] == pytest.approx(1.0) and crowd[2] == pytest.approx(1.0)
    assert rung_order(np.array([A, B, C, D, E]))[:3] == [0, 3, 4]


def test_epsnet_order_by_hand() -> None:
    # the best first objective (D), then the point farthest from D (A), then the one farthest from both (E)
    assert rung_order(np.array([A, B, C, D, E]), "epsnet")[:3] == [3, 0, 4]


def test_ties_and_the_keep_rule() -> None:
    recorded = {"a": np.array(A), "d": np.array(D)}
    # n = 3, η = 2: keep max(1, ⌊3/2⌋) = 1. E is on the front but both extremes are infinitely crowded
    assert not promotable(recorded, "e", np.array(E), 2)
    # with η = 1.5 two are kept: still only the infinite extremes (the new point wins a tie, so D... A or itself)
    assert promotable({"a": np.array(A)}, "d", np.array(D), 2)  # two extremes tie: the newcomer goes on
    assert not promotable({"x": np.array((5.0, 5.0))}, "y", np.array((4.0, 4.0)), 2)  # dominated: stops
    assert promotable({}, "first", np.array((0.0, 0.0)), 3)  # alone at its rung: always goes on


def test_the_scheduler_stops_at_rungs_with_directions() -> None:
    s = ParetoASHA([("psnr", "max"), ("loss", "min")], max_t=6, grace_period=1, reduction_factor=2)
    assert [m for m, _ in s.rungs] == [4, 2, 1]
    trial = SimpleNamespace
    assert s.on_trial_result(None, trial(trial_id="t1"), {"epoch": 1, "psnr": 20, "loss": 1.0}) == \
        TrialScheduler.CONTINUE
    # lower PSNR and a higher loss: dominated once the loss is minimised, so it stops
    assert s.on_trial_result(None, trial(trial_id="t2"), {"epoch": 1, "psnr": 19, "loss": 2.0}) == TrialScheduler.STOP
    # a lower loss (better, since it is minimised) puts it on the front beside t1: extremes tie, it goes on
    assert s.on_trial_result(None, trial(trial_id="t3"), {"epoch": 1, "psnr": 19, "loss": 0.5}) == \
        TrialScheduler.CONTINUE
    assert s.stopped == ["t2"]
    # a failed result (NaN epoch) and an epoch already judged change nothing
    assert s.on_trial_result(None, trial(trial_id="t3"), {"epoch": math.nan}) == TrialScheduler.CONTINUE
    assert s.on_trial_result(None, trial(trial_id="t1"), {"epoch": 1, "psnr": 0, "loss": 9}) == \
        TrialScheduler.CONTINUE
    # a NaN objective ranks last
    assert s.on_trial_result(None, trial(trial_id="t4"), {"epoch": 1, "psnr": math.nan, "loss": 0.1}) == \
        TrialScheduler.STOP


def test_bad_options_are_one_line() -> None:
    with pytest.raises(GradpromError, match="two or more"):
        ParetoASHA([("psnr", "max")], max_t=4)
    with pytest.raises(GradpromError, match="reduction-factor"):
        ParetoASHA([("psnr", "max"), ("acc", "max")], max_t=4, reduction_factor=1)
    with pytest.raises(GradpromError, match="tiebreak"):
        ParetoASHA([("psnr", "max"), ("acc", "max")], max_t=4, tiebreak="random")
