"""Where a model-based search starts (`--sampler gp`): the anchors a space names, then space-filling points.

A Gaussian process learns nothing from a handful of random points bunched in one corner; its first trials should
cover the space and include the settings a researcher knows matter: τ = −1 (the threshold gate then behaves as
joint), τ = 0 (GradProm), λ at both ends of its range (`SearchSpace.anchors`). The rest of the start is a scrambled
Sobol sequence (seeded: the same points for the same seed), mapped onto each param's range (log ranges in log
space, ints rounded, categorical choices by equal shares). They are enqueued in the study, so every later trial is
the GP's (Optuna's `GPSampler`, which also conditions on the trials still running: two concurrent asks do not
return one point).
"""

from __future__ import annotations

import math
from typing import Any

from gradprom.search_spaces import SearchSpace


def startup_size(trials: int) -> int:
    """Trials before the GP takes over: a quarter of the budget, 4 to 10."""
    return max(4, min(10, trials // 4))


def from_unit(spec: dict[str, Any], u: float) -> Any:
    """The value of a param at position `u` in [0, 1) of its range."""
    if spec["type"] == "categorical":
        choices = spec["choices"]
        return choices[min(int(u * len(choices)), len(choices) - 1)]
    low, high = spec["low"], spec["high"]
    if spec["type"] == "int":
        if spec.get("log"):
            return min(high, int(math.floor(math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low))))))
        return min(high, low + int(math.floor(u * (high - low + 1))))
    if spec.get("log"):
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    return float(low + u * (high - low))


def startup_points(space: SearchSpace, n: int, seed: int) -> list[dict[str, Any]]:
    """The first `n` points of a model-based search: the space's anchors (all of them, even past `n`), then
    scrambled Sobol points until there are `n`."""
    from scipy.stats import qmc

    points = space.anchor_points()
    names = sorted(space.params)
    if not names:
        return points
    sobol = qmc.Sobol(d=len(names), scramble=True, seed=seed)
    need = max(0, n - len(points))
    for row in sobol.random(2 ** math.ceil(math.log2(max(need, 1))))[:need] if need else []:
        point = {name: from_unit(space.params[name], float(u)) for name, u in zip(names, row, strict=True)}
        if point not in points:
            points.append(point)
    return points
