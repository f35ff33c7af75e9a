"""Pareto fronts over the objectives the user names (default: PSNR and the task metric, both maximised),
per dataset.

Which objective answers which question: `task_metric` (`acc`/`dice`) is the trial's own recognizer on the
enhanced images, the paper's protocol (for `frozen`/`enhancer_only` that recognizer is the fixed clean-trained
one); `acc_ref`/`dice_ref` is a fixed recognizer trained on clean images only, never shown an enhancer's
output: what the images are worth to a model that never adapted to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import moocore
import numpy as np

from gradprom.errors import GradpromError, unknown_name

#: the default objectives, both maximised: PSNR and the task metric (acc or foreground dice)
OBJECTIVES = ("psnr", "task_metric")
DIRECTIONS = ("max", "min")
#: what `fronts_by` groups by (`pareto --by`)
BY = ("dataset", "strategy")
#: (column, "max" or "min")
Objective = tuple[str, str]


def default_direction(name: str) -> str:
    """Losses, times and failure counts are minimised; every quality figure (PSNR, SSIM, acc, mIoU) maximised."""
    bare = name.removeprefix("test_").removeprefix("eval_")
    return "min" if bare.startswith("loss") or bare.endswith(("_s", "_ms")) or bare in ("nan_skips",) else "max"


def parse_objectives(text: str, known: Sequence[str] | None = None) -> tuple[Objective, ...]:
    """`psnr,acc_ref` or `psnr:max,loss_ip:min` → ((name, direction), …): two or more distinct columns, each
    maximised unless it says `:min` (or is a loss or a time, see `default_direction`). With `known`, every name
    must be one of those columns."""
    found: list[Objective] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, _, direction = item.partition(":")
        name, direction = name.strip(), direction.strip() or default_direction(name.strip())
        if direction not in DIRECTIONS:
            raise GradpromError(f"objective '{item}': the direction after ':' must be max or min")
        if known is not None and name not in known:
            raise unknown_name("objective", name, known)
        if name in (n for n, _ in found):
            raise GradpromError(f"objective '{name}' is named twice in '{text}'; name each once")
        found.append((name, direction))
    if len(found) < 2:
        raise GradpromError(f"--objectives needs two or more result columns, got '{text}' (e.g. psnr,acc_ref)")
    return tuple(found)


def as_objectives(objectives: Sequence[str | Objective]) -> tuple[Objective, ...]:
    """Names or (name, direction) pairs as pairs (a bare name takes its default direction)."""
    return tuple(o if isinstance(o, tuple) else (o, default_direction(o)) for o in objectives)


def objective_text(objectives: Sequence[str | Objective]) -> str:
    """The `--objectives` spelling of `objectives` (what the manifest and the report show)."""
    return ",".join(f"{n}:{d}" for n, d in as_objectives(objectives))


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (≥ in every column and > in one); maximisation.
    Equal points do not dominate each other, so duplicates on the front are all kept (moocore)."""
    points = np.asarray(points, dtype=float)
    if points.size == 0:
        return np.zeros(len(points), dtype=bool)
    return np.asarray(moocore.is_nondominated(points, maximise=True, keep_weakly=True), dtype=bool)


def eligible(row: dict[str, Any], objectives: Sequence[str | Objective] = OBJECTIVES) -> bool:
    """Only trials that ran their full budget, finished, and have finite objectives may enter a front."""
    if row.get("status") != "completed":
        return False
    return all(isinstance(row.get(k), (int, float)) and math.isfinite(row[k]) for k, _ in as_objectives(objectives))


def front_rows(rows: list[dict[str, Any]], objectives: Sequence[str | Objective] = OBJECTIVES) -> list[dict[str, Any]]:
    """The non-dominated eligible rows, computed separately for each `dataset` (and task), sorted by the first
    objective (best first)."""
    pairs = as_objectives(objectives)
    signs = np.array([1.0 if d == "max" else -1.0 for _, d in pairs])
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        if eligible(row, pairs):
            groups.setdefault((row.get("dataset"), row.get("task")), []).append(row)
    out = []
    for group in groups.values():
        mask = non_dominated(np.array([[r[k] for k, _ in pairs] for r in group]) * signs)
        out.extend(r for r, keep in zip(group, mask, strict=True) if keep)
    first, sign = pairs[0][0], signs[0]
    return sorted(out, key=lambda r: (str(r.get("dataset")), -sign * r[first]))


#: hypervolume reference points per objective, fixed so that figures compare across runs and experiments:
#: PSNR 10 dB (below any useful enhancement: noisy input at σ = 0.3 is ≈ 10.5 dB), SSIM and every task
#: metric 0 (they lie in [0, 1]; the GAN's classifier figures too). Other objectives need `--ref`.
DEFAULT_REF = {"psnr": 10.0, "ssim": 0.0, "task_metric": 0.0, "acc": 0.0, "miou": 0.0, "acc_ref": 0.0,
               "miou_ref": 0.0, "dice": 0.0, "dice_ref": 0.0, "promoted_frac": 0.0, "f1": 0.0, "f2": 0.0,
               "sensitivity": 0.0, "specificity": 0.0, "precision": 0.0}


def reference_point(objectives: Sequence[str | Objective], given: Sequence[float] = ()) -> list[float]:
    """The hypervolume's reference point: `given` (one value per objective), else DEFAULT_REF per objective."""
    pairs = as_objectives(objectives)
    if given:
        if len(given) != len(pairs):
            raise GradpromError(f"--ref needs {len(pairs)} values (one per objective: "
                                f"{', '.join(n for n, _ in pairs)}), got {len(given)}")
        return [float(v) for v in given]
    out = []
    for name, _ in pairs:
        bare = name.removeprefix("test_").removeprefix("eval_").removeprefix("aux_")
        if bare not in DEFAULT_REF:
            raise GradpromError(f"objective '{name}' has no default hypervolume reference; give --ref with one "
                                f"value per objective ({', '.join(n for n, _ in pairs)})")
        out.append(DEFAULT_REF[bare])
    return out


def _points(rows: list[dict[str, Any]], pairs: tuple[Objective, ...]) -> np.ndarray:
    return np.array([[r[k] for k, _ in pairs] for r in rows], dtype=float).reshape(len(rows), len(pairs))


def pareto_ranks(rows: list[dict[str, Any]], objectives: Sequence[str | Objective] = OBJECTIVES) -> list[int | None]:
    """Non-dominated sorting of the eligible rows, per dataset and task: 0 = the front, 1 = the front once the
    first is removed, …; None for a row that cannot enter a front (not completed, or a non-finite objective)."""
    pairs = as_objectives(objectives)
    ranks: list[int | None] = [None] * len(rows)
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, row in enumerate(rows):
        if eligible(row, pairs):
            groups.setdefault((row.get("dataset"), row.get("task")), []).append(i)
    for members in groups.values():
        found = moocore.pareto_rank(_points([rows[i] for i in members], pairs), maximise=[d == "max" for _, d in pairs])
        for i, rank in zip(members, found, strict=True):
            ranks[i] = int(rank)
    return ranks


def hypervolume(rows: list[dict[str, Any]], objectives: Sequence[str | Objective], ref: Sequence[float]) -> float:
    """The hypervolume the eligible rows dominate, measured from `ref` (points that do not dominate it add
    nothing); rows should come from one dataset and task."""
    pairs = as_objectives(objectives)
    mine = [r for r in rows if eligible(r, pairs)]
    if not mine:
        return 0.0
    return float(moocore.hypervolume(_points(mine, pairs), ref=list(ref), maximise=[d == "max" for _, d in pairs]))


def knee(front: list[dict[str, Any]], objectives: Sequence[str | Objective]) -> dict[str, Any] | None:
    """The front's knee: objectives scaled to [0, 1] over the front (1 = best), the point farthest from the line
    through the two extremes (two objectives), or nearest the ideal point (1, …, 1) with more; None if empty."""
    pairs = as_objectives(objectives)
    if not front:
        return None
    x = _points(front, pairs) * np.array([1.0 if d == "max" else -1.0 for _, d in pairs])
    span = x.max(0) - x.min(0)
    z = np.where(span > 0, (x - x.min(0)) / np.where(span > 0, span, 1.0), 1.0)
    if len(pairs) == 2 and len(front) > 2:
        a, b = z[z[:, 0].argmax()], z[z[:, 1].argmax()]
        d = b - a
        distance = np.abs(d[0] * (z[:, 1] - a[1]) - d[1] * (z[:, 0] - a[0])) / max(float(np.hypot(*d)), 1e-12)
        return front[int(distance.argmax())]
    return front[int(np.linalg.norm(1.0 - z, axis=1).argmin())]


def fronts_by(rows: list[dict[str, Any]], by: str, objectives: Sequence[str | Objective],
              ref: Sequence[float]) -> list[dict[str, Any]]:
    """One summary per (dataset, task, `by` value): its front size, hypervolume from `ref` and knee trial.
    `by` is "dataset" (one front per dataset, as the search ranks) or "strategy" (a front per strategy)."""
    if by not in BY:
        raise unknown_name("grouping", by, BY, option="--by")
    pairs = as_objectives(objectives)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row.get("dataset"), row.get("task")) + ((row.get("strategy"),) if by == "strategy" else ())
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        front = front_rows(members, pairs)
        best = knee(front, pairs)
        out.append({"dataset": key[0], "task": key[1], **({"strategy": key[2]} if by == "strategy" else {}),
                    "trials": len(members), "eligible": sum(eligible(r, pairs) for r in members),
                    "front_size": len(front), "hypervolume": hypervolume(members, pairs, ref),
                    "knee_trial": best["trial_id"] if best else None})
    return out
