"""Pareto fronts of image quality against task quality (both maximised), per dataset."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: the two objectives every search maximises: PSNR and the task metric (acc or miou)
OBJECTIVES = ("psnr", "task_metric")


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


def eligible(row: dict[str, Any], objectives: tuple[str, ...] = OBJECTIVES) -> bool:
    """Only trials that ran their full budget, finished, and have finite objectives may enter a front."""
    if row.get("status") != "completed":
        return False
    return all(isinstance(row.get(k), (int, float)) and math.isfinite(row[k]) for k in objectives)


def front_rows(rows: list[dict[str, Any]], objectives: tuple[str, str] = OBJECTIVES) -> list[dict[str, Any]]:
    """The non-dominated eligible rows, computed separately for each `dataset` (and task), sorted by PSNR."""
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        if eligible(row, objectives):
            groups.setdefault((row.get("dataset"), row.get("task")), []).append(row)
    out = []
    for group in groups.values():
        mask = non_dominated(np.array([[r[k] for k in objectives] for r in group]))
        out.extend(r for r, keep in zip(group, mask, strict=True) if keep)
    return sorted(out, key=lambda r: (str(r.get("dataset")), -r[objectives[0]]))
