"""Pareto-aware early stopping: asynchronous successive halving whose rung decision ranks trials on all objectives.

Ray Tune's ASHA stops on one metric, so in a two-objective search it stops exactly the trials with high task
quality and low PSNR before they can reach the front. `ParetoASHA` keeps ASHA's rungs (grace period × reduction
factor^k epochs) and its asynchrony (a trial is judged against the trials that reached the same rung before it),
but orders the rung by non-dominated sorting over the search's objectives, ties within a front broken by
crowding distance (NSGA-II) or by an ε-net (greedy farthest-point selection, as Syne Tune's MOASHA), and lets a
trial continue when it is among the top max(1, ⌊n / η⌋) of the n trials recorded at that rung, itself included.
Trials it stops end short of their budget, so Optuna is told PRUNED and they never enter a front.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from typing import Any

import moocore
import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from gradprom.errors import GradpromError, unknown_name

#: what --scheduler names: every trial its budget, Ray's ASHA on one metric, or gradprom's on every objective
SCHEDULERS = ("fifo", "asha", "pareto-asha")
TIEBREAKS = ("crowding", "epsnet")


def check_rungs(grace_period: int, reduction_factor: float, tiebreak: str, max_t: int, epochs: int) -> None:
    """The rungs' settings, each against its one range (the request checks them before Ray starts; a scheduler
    built by hand gets the same lines). `max_t` 0 means the trial's epochs."""
    if tiebreak not in TIEBREAKS:
        raise unknown_name("tiebreak", tiebreak, TIEBREAKS, option="--tiebreak")
    for flag, value, holds, rule in (("--grace-period", grace_period, grace_period >= 1, "≥ 1"),
                                     ("--reduction-factor", reduction_factor, reduction_factor > 1, "> 1"),
                                     ("--max-t", max_t, 0 <= max_t <= epochs, f"in 0…--epochs ({epochs})")):
        if not holds:
            raise GradpromError(f"{flag} must be {rule}, got {value:g}")


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point of one front: per objective, the gap between its neighbours over
    the objective's range, summed; the extremes of every objective get infinity."""
    n, m = points.shape
    out = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        span = points[order[-1], j] - points[order[0], j]
        out[order[0]] = out[order[-1]] = np.inf
        if span > 0:
            out[order[1:-1]] += (points[order[2:], j] - points[order[:-2], j]) / span
    return out


def epsnet_order(points: np.ndarray) -> np.ndarray:
    """Greedy ε-net order of one front (maximisation): the best point on the first objective, then each time the
    point farthest (Euclidean, on objectives scaled to [0, 1]) from those chosen. Earlier = more spread."""
    n = len(points)
    lo, hi = points.min(axis=0), points.max(axis=0)
    scaled = (points - lo) / np.where(hi > lo, hi - lo, 1.0)
    chosen = [int(np.argmax(points[:, 0]))]
    gap = np.linalg.norm(scaled - scaled[chosen[0]], axis=1)
    while len(chosen) < n:
        gap[chosen] = -1.0
        nxt = int(np.argmax(gap))
        chosen.append(nxt)
        gap = np.minimum(gap, np.linalg.norm(scaled - scaled[nxt], axis=1))
    return np.array(chosen)


def rung_order(points: np.ndarray, tiebreak: str = "crowding") -> list[int]:
    """Indices of `points` (rows, maximisation) best first: by non-dominated rank, then within a rank by crowding
    distance (larger first) or ε-net order; rows with a non-finite value (a trial that cannot enter a front) come
    last. Equal keys keep their row order."""
    if tiebreak not in TIEBREAKS:
        raise GradpromError(f"unknown tie-break '{tiebreak}'; valid: {', '.join(TIEBREAKS)}")
    points = np.asarray(points, dtype=float)
    ok = np.flatnonzero(np.isfinite(points).all(axis=1)) if len(points) else np.zeros(0, int)
    ranks = np.asarray(moocore.pareto_rank(points[ok], maximise=True)) if len(ok) else np.zeros(0, int)
    order: list[int] = []
    for rank in sorted(set(ranks.tolist())):
        members = ok[ranks == rank]
        if tiebreak == "crowding":
            crowd = crowding_distance(points[members])
            within = sorted(range(len(members)), key=lambda k: -crowd[k])
        else:
            within = epsnet_order(points[members]).tolist()
        order += [int(members[k]) for k in within]
    return order + [i for i in range(len(points)) if i not in set(ok.tolist())]


def promotable(recorded: dict[str, np.ndarray], trial_id: str, point: np.ndarray, reduction_factor: float,
               tiebreak: str = "crowding") -> bool:
    """Whether the trial with `point` continues past a rung where `recorded` holds the earlier trials' points:
    it must rank among the top max(1, ⌊n / η⌋) of the n points, itself included (listed first, so it wins a tie)."""
    ids = [trial_id] + [t for t in recorded if t != trial_id]
    points = np.array([point] + [recorded[t] for t in ids[1:]], dtype=float)
    keep = max(1, int(len(ids) // reduction_factor))
    return 0 in rung_order(points, tiebreak)[:keep]


class PickledState:
    """How gradprom's schedulers are saved with Tune's experiment state and restored on --resume: whole."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class ParetoASHA(PickledState, FIFOScheduler):
    """`--scheduler pareto-asha`: a Ray Tune scheduler (public `TrialScheduler` API) that stops a trial at a rung
    unless it is among the rung's best on all objectives (see the module docstring)."""

    def __init__(self, objectives: Sequence[tuple[str, str]], max_t: int, grace_period: int = 1,
                 reduction_factor: float = 2.0, tiebreak: str = "crowding", time_attr: str = "epoch") -> None:
        super().__init__()
        if len(objectives) < 2:
            raise GradpromError("pareto-asha ranks on two or more objectives; with one, use --scheduler asha")
        check_rungs(grace_period, reduction_factor, tiebreak, max_t, max_t)
        self.objectives = [(n, d) for n, d in objectives]
        self.signs = np.array([1.0 if d == "max" else -1.0 for _, d in self.objectives])
        self.rf, self.tiebreak, self.time_attr, self.max_t = float(reduction_factor), tiebreak, time_attr, max_t
        milestones, t = [], float(grace_period)
        while t < max_t:  # a rung at the full budget decides nothing: the trial ends there anyway
            milestones.append(int(round(t)))
            t *= self.rf
        # highest rung first: a result is judged at the highest rung it reached and was not judged at yet
        self.rungs: list[tuple[int, dict[str, np.ndarray]]] = [(m, {}) for m in sorted(set(milestones), reverse=True)]
        self.stopped: list[str] = []

    def point(self, result: dict[str, Any]) -> np.ndarray:
        """The result's objectives, signed for maximisation (NaN where missing or non-finite: such a trial ranks
        after every finite one)."""
        values = [result.get(n) for n, _ in self.objectives]
        return np.array([s * float(v) if isinstance(v, (int, float)) and math.isfinite(v) else np.nan
                         for s, v in zip(self.signs, values, strict=True)])

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        t = result.get(self.time_attr)
        if not isinstance(t, (int, float)) or not math.isfinite(t):
            return TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if t < milestone or trial.trial_id in recorded:
                continue
            point = self.point(result)
            keep = promotable(recorded, trial.trial_id, point, self.rf, self.tiebreak)
            recorded[trial.trial_id] = point
            if not keep:
                self.stopped.append(trial.trial_id)
                return TrialScheduler.STOP
            break
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"ParetoASHA: rungs {[m for m, _ in self.rungs]}, stopped {len(self.stopped)}"
