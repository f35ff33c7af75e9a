"""`--sampler gp`: a Gaussian process with a hypervolume acquisition (Optuna's GPSampler), started at the space's
anchors and Sobol points; on a 2-objective toy whose front is known it finds the front within a small budget,
seeded runs repeat, and two trials asked at once (both running) are never one point."""

from __future__ import annotations

import math

import moocore
import numpy as np
import pytest

from gradprom.search.searcher import StudySearcher, make_sampler
from gradprom.search.seeding import from_unit, startup_points
from gradprom.search_spaces import SearchSpace, load_space

TOY = SearchSpace("toy", "", {}, {"x": {"type": "float", "low": 0.0, "high": 1.0},
                                  "y": {"type": "float", "low": 0.0, "high": 1.0}},
                  anchors=[{"x": "low", "y": "low"}, {"x": "high", "y": "low"}])


def toy(point: dict) -> dict:
    """Both maximised: f1 = x, f2 = 1 − x² − y. The front is y = 0, f2 = 1 − f1², of hypervolume ∫₀¹ 1 − x² dx = 2/3
    from the reference (0, 0)."""
    return {"f1": point["x"], "f2": 1 - point["x"] ** 2 - point["y"], "epoch": 1}


def searcher(seed: int, trials: int) -> StudySearcher:
    return StudySearcher(TOY.distributions(), ["f1", "f2"], ["max", "max"], make_sampler("gp", seed, trials), 1,
                         points_to_evaluate=startup_points(TOY, 4, seed))


def run(seed: int, trials: int) -> list[dict]:
    s, asked = searcher(seed, trials), []
    for i in range(trials):
        point = s.suggest(str(i))
        s.on_trial_complete(str(i), toy(point))
        asked.append(point)
    return asked


def test_the_gp_finds_the_front_of_a_known_toy_within_twelve_trials() -> None:
    asked = run(0, 12)
    assert asked[:2] == [{"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 0.0}]  # the anchors first
    found = moocore.hypervolume(np.array([[toy(p)["f1"], toy(p)["f2"]] for p in asked]), ref=[0.0, 0.0],
                                maximise=True)
    grid = np.linspace(0, 1, 2001)  # brute force: the dense front itself
    brute = moocore.hypervolume(np.stack([grid, 1 - grid ** 2], 1), ref=[0.0, 0.0], maximise=True)
    assert brute == pytest.approx(2 / 3, abs=1e-3)
    assert found >= 0.85 * brute, (found, brute)


def test_a_seeded_gp_search_repeats_itself() -> None:
    assert run(3, 5) == run(3, 5)  # the fifth point is the GP's
    assert startup_points(TOY, 4, 3)[2:] != startup_points(TOY, 4, 4)[2:]  # the Sobol start follows the seed


def test_two_trials_asked_at_once_are_never_one_point() -> None:
    s = searcher(0, 8)
    for i in range(4):  # the enqueued start, done
        s.on_trial_complete(str(i), toy(s.suggest(str(i))))
    a, b = s.suggest("a"), s.suggest("b")  # both running: the GP conditions the second ask on the first
    assert a != b and math.dist(list(a.values()), list(b.values())) > 1e-3


def test_anchors_and_the_space_filling_start() -> None:
    space = load_space("lambda_threshold")
    points = startup_points(space, 8, 0)
    assert points[:4] == [{"lam": pytest.approx(0.1), "threshold": -1.0}, {"lam": pytest.approx(0.1), "threshold": 0.0},
                          {"lam": 0.001, "threshold": 0.0}, {"lam": 10.0, "threshold": 0.0}]
    assert len(points) == 8 and all(0.001 <= p["lam"] <= 10 and -1 <= p["threshold"] <= 1 for p in points)
    assert from_unit({"type": "float", "low": 1e-3, "high": 10.0, "log": True}, 0.5) == pytest.approx(0.1)
    assert from_unit({"type": "int", "low": 2, "high": 5}, 0.999) == 5
    assert from_unit({"type": "categorical", "choices": ["a", "b", "c"]}, 0.5) == "b"
    narrowed = load_space("lambda_threshold")
    narrowed.params["threshold"] = {"type": "float", "low": -0.5, "high": 0.5}  # as -p threshold=-0.5:0.5 does
    assert {"lam": pytest.approx(0.1), "threshold": -1.0} not in narrowed.anchor_points()  # out of range: left out
