"""The benchmark scripts run in CI-sized form (`--quick`, few rounds) and print the figures they promise."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run(script: str, *args: str, cache: str) -> list[dict]:
    env = {**os.environ, "HOME": cache}  # the scripts cache their reference recognizer under ~/.cache
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--no-record", *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [ast.literal_eval(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_strategy_overhead_quick(tmp_path: Path) -> None:
    rows = run("strategy_overhead.py", "--rounds", "3", cache=str(tmp_path))
    by_name = {r["strategy"]: r for r in rows if "strategy" in r}
    assert {"joint", "floor", "gradprom", "pcgrad", "gradprom_gate_every_4", "gradprom_gate_on_head"} <= set(by_name)
    assert by_name["joint"]["ratio_vs_joint"] == 1.0
    assert all(r["ratio_vs_joint"] > 0 for r in by_name.values())
    for cheap in ("gradprom_gate_every_4", "gradprom_gate_on_head", "gradprom_gate_every_4_ema"):
        assert 0.0 <= by_name[cheap]["agreement_with_exact"] <= 1.0
    assert 0.0 <= by_name["gradprom_gate_every_4"]["exact_gate_persistence"] <= 1.0
    assert "gradprom_vs_floor" in rows[-1]


def test_throughput_quick(tmp_path: Path) -> None:
    rows = run("throughput.py", "--variants", "fp32,amp", cache=str(tmp_path))  # amp: bf16 autocast on the CPU
    assert [r["strategy"] for r in rows] == ["joint", "gradprom", "joint_amp", "gradprom_amp"]
    for r in rows:
        name = r["strategy"]
        assert r[f"{name}_pipeline_img_s"] > 0 and r[f"{name}_bare_img_s"] > 0 and r[f"{name}_ratio"] > 0
