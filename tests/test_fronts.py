"""Strategies compared by their fronts over λ: hypervolume, attainment surfaces and EAF differences against
hand-computed small cases, the per-seed statistics against scipy, and a front protocol's cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gradprom.analysis.fronts import analyse_fronts, attainment, eaf_difference, hypervolume, lead_shares
from gradprom.errors import GradpromError
from gradprom.search_spaces.protocol import load_protocol


def test_hypervolume_of_a_staircase_by_hand() -> None:
    # three points above (0, 0): the union of the rectangles 3×1, 2×2 and 1×3 is 3 + 2·1 + 1·1 = 6
    assert hypervolume(np.array([[3, 1], [2, 2], [1, 3.0]]), (0, 0)) == pytest.approx(6.0)
    assert hypervolume(np.array([[3, 1], [2, 2], [1, 3.0]]), (1, 1)) == pytest.approx(1 * 1 + 0)  # only (2, 2)
    assert hypervolume(np.array([[0.5, 0.5]]), (1, 1)) == 0.0  # a point below the reference adds nothing
    assert hypervolume(np.zeros((0, 2)), (0, 0)) == 0.0


def test_attainment_surfaces_by_hand() -> None:
    """Three seeds, one point each: (3, 1), (2, 2), (1, 3). At least two of three reach (2, 1) and (1, 2) (the 50 %
    surface); all three reach (1, 1) (100 %); any one reaches the three points themselves."""
    runs = {0: np.array([[3, 1.0]]), 1: np.array([[2, 2.0]]), 2: np.array([[1, 3.0]])}
    np.testing.assert_allclose(attainment(runs, 50), [[1, 2], [2, 1]])
    np.testing.assert_allclose(attainment(runs, 100), [[1, 1]])
    np.testing.assert_allclose(attainment(runs, 1), [[1, 3], [2, 2], [3, 1]])


def test_eaf_difference_and_lead_shares_by_hand() -> None:
    """a reaches (2, 2) on both seeds, b only (1, 1): in the box (0, 0)…(2, 2) every point a attains that b does not
    lies outside [0, 1]², three quarters of the box, where a leads by every seed (difference 1)."""
    a = {0: np.array([[2, 2.0]]), 1: np.array([[2, 2.0]])}
    b = {0: np.array([[1, 1.0]]), 1: np.array([[1, 1.0]])}
    rects = eaf_difference(a, b)
    assert (rects[:, 4] == 1.0).all()
    assert lead_shares(rects, (0, 0), (2, 2)) == pytest.approx((0.75, 0.0))
    assert lead_shares(eaf_difference(b, a), (0, 0), (2, 2)) == pytest.approx((0.0, 0.75))
    half = {0: np.array([[2, 2.0]]), 1: np.array([[1, 1.0]])}  # one seed of two reaches (2, 2): a lead of 1/2
    assert lead_shares(eaf_difference(half, b), (0, 0), (2, 2)) == pytest.approx((0.375, 0.0))


def write_protocol(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "fronts.json"
    path.write_text(json.dumps({"description": "test", "fixed": {"degradation": "gaussian:sigma=0.1"},
                                "grid": {"strategy": ["enhancer_only", "joint", "gradprom"]}, "seeds": 3,
                                "baselines": ["joint"], "front": {"lam": [0.1, 1.0]}, **extra}))
    return path


def test_a_strategy_without_the_front_setting_runs_once_per_seed(tmp_path: Path) -> None:
    protocol = load_protocol(str(write_protocol(tmp_path)))
    cells = protocol.cells()
    assert len(cells) == (1 + 2 + 2) * 3  # enhancer_only has no λ: one run per seed; the others one per λ
    assert sorted({(c["strategy"], c["lam"]) for c in cells}) == [
        ("enhancer_only", 1.0), ("gradprom", 0.1), ("gradprom", 1.0), ("joint", 0.1), ("joint", 1.0)]
    assert protocol.cell_keys() == [] and "lam" in protocol.group_keys()
    with pytest.raises(GradpromError, match="no strategy on the strategy axis takes front axis 'threshold'"):
        load_protocol(str(write_protocol(tmp_path, front={"threshold": [0.0, 0.5]})))
    with pytest.raises(GradpromError, match="hv_reference maps front objectives"):
        load_protocol(str(write_protocol(tmp_path, hv_reference={"psnr": 10})))
    with pytest.raises(GradpromError, match="hv_reference maps front objectives"):  # both or neither
        load_protocol(str(write_protocol(tmp_path, hv_reference={"test_psnr": 10})))


def row(strategy: str, seed: int, lam: float, psnr: float, acc: float) -> dict:
    return {"status": "completed", "strategy": strategy, "seed": seed, "lam": lam, "task": "classification",
            "degradation": "gaussian:sigma=0.1", "test_psnr": psnr, "test_acc_ref": acc}


def test_front_analysis_matches_hand_hypervolumes_and_scipy(tmp_path: Path) -> None:
    """Per seed, joint reaches (20, 0.5) and (22, 0.4); gradprom (21, 0.6) and (23, 0.45) plus a seed-dependent
    lift; enhancer_only one point. Hypervolumes from the stated reference (10 dB, 0) by hand, paired tests by scipy."""
    protocol = load_protocol(str(write_protocol(tmp_path, hv_reference={"test_psnr": 10, "test_task_metric_ref": 0})))
    rows, lift = [], [0.0, 0.02, 0.05]
    for seed in range(3):
        rows += [row("joint", seed, 0.1, 22, 0.4), row("joint", seed, 1.0, 20, 0.5),
                 row("gradprom", seed, 0.1, 23, 0.45 + lift[seed]), row("gradprom", seed, 1.0, 21, 0.6 + lift[seed]),
                 row("enhancer_only", seed, 1.0, 24, 0.3)]
    per_seed, summary, paired, verdicts, cells = analyse_fronts(protocol, rows)
    joint = 12 * 0.4 + 10 * (0.5 - 0.4)  # (22−10)·0.4 + (20−10)·(0.5−0.4)
    gradprom = [13 * (0.45 + d) + 11 * (0.15) for d in lift]  # (23−10)·(0.45+d) + (21−10)·((0.6+d)−(0.45+d))
    got = {(r["strategy"], r["seed"]): r["hypervolume"] for r in per_seed}
    assert got[("joint", 0)] == pytest.approx(joint) and got[("enhancer_only", 2)] == pytest.approx(14 * 0.3)
    assert [got[("gradprom", s)] for s in range(3)] == pytest.approx(gradprom)
    mean = next(r for r in summary if r["strategy"] == "gradprom")
    assert mean["mean"] == pytest.approx(np.mean(gradprom)) and mean["n"] == 3
    test = next(r for r in paired if r["strategy"] == "gradprom")
    expected = stats.ttest_rel(gradprom, [joint] * 3)
    assert test["p_t"] == pytest.approx(expected.pvalue)
    assert test["mean_diff"] == pytest.approx(np.mean(gradprom) - joint)
    assert test["eaf_lead"] > 0.1 and test["eaf_behind"] == 0.0  # gradprom's front lies above joint's everywhere
    assert cells[0].reference == (10.0, 0.0)
    assert any(v.startswith("gradprom vs joint (fronts") and "attains more often than joint" in v for v in verdicts)
    assert len([r for r in per_seed if r["strategy"] == "enhancer_only"]) == 3
    # a seed whose front misses a run (λ = 1 of gradprom's seed 2 failed) is listed, not compared: its
    # hypervolume would be biased low
    per_seed, _, paired, _, _ = analyse_fronts(protocol, [r for r in rows if not (
        r["strategy"] == "gradprom" and r["seed"] == 2 and r["lam"] == 1.0)])
    lone = next(r for r in per_seed if (r["strategy"], r["seed"]) == ("gradprom", 2))
    assert not lone["complete"] and np.isnan(lone["hypervolume"]) and lone["points"] == 1
    assert next(r for r in paired if r["strategy"] == "gradprom")["n"] == 2
    only_one = [r for r in rows if r["strategy"] != "gradprom" or (r["seed"], r["lam"]) == (0, 0.1)]
    _, summary, paired, _, _ = analyse_fronts(protocol, only_one)  # gradprom: no complete seed at all
    assert "gradprom" not in {r["strategy"] for r in paired}
    assert next(r for r in summary if r["strategy"] == "gradprom")["n"] == 0
