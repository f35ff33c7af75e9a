"""Pareto fronts over the objectives the user names (default: PSNR and the task metric, both maximised),
per dataset.

Which objective answers which question: `task_metric` (`acc`/`miou`) is the trial's own recognizer on the
enhanced images, the paper's protocol (for `frozen`/`enhancer_only` that recognizer is the fixed clean-trained
one); `acc_ref`/`miou_ref` is a fixed recognizer trained on clean images only, never shown an enhancer's
output: what the images are worth to a model that never adapted to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradprom.errors import GradpromError, unknown_name

#: the default objectives, both maximised: PSNR and the task metric (acc or miou)
OBJECTIVES = ("psnr", "task_metric")
DIRECTIONS = ("max", "min")
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

    Equal points do not dominate each other, so duplicates on the front are all kept.
    """
    points = np.asarray(points, dtype=float)
    if points.size == 0:
        return np.zeros(len(points), dtype=bool)
    ge = (points[:, None, :] >= points[None, :, :]).all(-1)
    gt = (points[:, None, :] > points[None, :, :]).any(-1)
    dominated_by = ge & gt  # [i, j]: i dominates j
    return ~dominated_by.any(0)


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
