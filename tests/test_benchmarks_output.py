"""Every benchmark script, in its quickest form: stdout is one JSON object per line (valid JSON, no NaN), the
figures it promises are there, and benchmarks/README.md is written only with `--record` (into `--readme PATH`).

The scripts mostly wait (for Ray to start, for trial processes to import torch), so the module starts every run
at once, at most three at a time and the longest first, and each test checks its own script's runs as they end.
No assertion reads a duration, only how the printed figures relate to each other, so sharing the CPU changes none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.throughput import memory_format

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "benchmarks" / "README.md"
pytestmark = pytest.mark.slow

#: each script's quickest form (seconds on a 2-core CPU, alone; the Ray ones mostly wait for Ray to start)
QUICKEST = {
    "data_cache.py": ["--images", "4", "--image-size", "16"],
    "reference_levels.py": ["--quick"],
    "strategy_overhead.py": ["--quick", "--rounds", "1", "--warmup", "0", "--image-size", "16",
                             "--agreement-steps", "2"],
    "throughput.py": ["--quick", "--n-train", "32", "--epochs", "1"],
    "orchestration_overhead.py": ["--quick", "--trials", "2", "--epochs", "1"],
    "packing.py": ["--quick", "--trials", "2", "--levels", "1,2", "--device", "cpu"],
    "search_efficiency.py": ["--quick", "--trials", "3", "--epochs", "2"],
    "fidelity_rank.py": ["--quick", "--configs", "4", "--epochs", "2"],
    "model_samplers.py": ["--quick"],
    "main_job.py": ["--trials", "1", "--epochs", "1", *(a for p in (
        "image_size=16", "n_train=32", "n_val=16", "n_test=16", "enhancer_blocks=1", "enhancer_channels=8",
        "recognizer_width=4", "batch_size=16", "pretrain_epochs=1", "threads=1") for a in ("-p", p))],
}
#: the runs the module starts, longest first (about 50, 30, 20, 10, 5, 4, 2 and 2 s alone); the key is the
#: script and the arguments added to its quickest form
RUNS = ("orchestration_overhead.py", "search_efficiency.py", "main_job.py", "fidelity_rank.py", "packing.py",
        "throughput.py", "model_samplers.py",
        "strategy_overhead.py", "data_cache.py", "data_cache.py --record")
AT_ONCE = 3


def reject_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A HOME for the scripts: they cache their reference recognizer under ~/.cache."""
    return str(tmp_path_factory.mktemp("home"))


@dataclass
class Runs:
    """The module's script runs, under way: `readme` is the tracked README as they found it, `copy` the copy
    that `data_cache.py --record` writes into (`--readme`)."""

    readme: bytes
    copy: Path
    started: dict[str, Future] = field(default_factory=dict)


def start(script: str, home: str, *extra: str) -> subprocess.CompletedProcess:
    """Run the script's quickest form, plus `extra`, to its end."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *QUICKEST[script], *extra],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": home}, cwd=ROOT)


@pytest.fixture(scope="module")
def scripts(home: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Every run of RUNS, started when the module's first test asks; the module waits for all of them at its end."""
    copy = tmp_path_factory.mktemp("readme") / "README.md"
    shutil.copy(README, copy)
    found = Runs(README.read_bytes(), copy)
    extra = {"data_cache.py --record": ["--record", "--readme", str(copy)]}
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        for key in RUNS:
            found.started[key] = pool.submit(start, key.split()[0], home, *extra.get(key, []))
        yield found
    assert README.read_bytes() == found.readme, f"one of {', '.join(RUNS)} changed benchmarks/README.md"


def run(scripts: Runs, key: str) -> list[dict]:
    """The run's output, once it ended: every stdout line is a JSON object, the last one the summary (its table
    exists in the README), and the tracked README is byte for byte what it was before the module's runs."""
    done = scripts.started[key].result()
    assert done.returncode == 0, done.stderr[-3000:]
    assert README.read_bytes() == scripts.readme, \
        f"{key} (or a run beside it, of {', '.join(RUNS)}) changed benchmarks/README.md"
    lines = done.stdout.splitlines()
    assert lines, f"{key} printed nothing on stdout"
    rows = [json.loads(line, parse_constant=reject_constant) for line in lines]
    assert all(isinstance(r, dict) for r in rows), done.stdout
    summary = rows[-1]
    assert {"benchmark", "date", "machine"} <= set(summary)
    assert f"<!-- rows:{summary['benchmark']} -->" in README.read_text()
    return rows


def test_data_cache_records_only_when_asked(scripts: Runs) -> None:
    (row,) = run(scripts, "data_cache.py")
    assert row["benchmark"] == "data_cache" and row["images"] == 4 and row["speedup"] > 0
    run(scripts, "data_cache.py --record")
    added = [line for line in scripts.copy.read_text().splitlines() if line not in README.read_text().splitlines()]
    assert len(added) == 1 and "images=4; image_size=16;" in added[0]
    lines = scripts.copy.read_text().splitlines()
    assert lines[lines.index("<!-- rows:data_cache -->") + 1] == added[0]  # the newest row first
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "data_cache.py"), "--readme",
                              str(scripts.copy)], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "--readme only applies with --record" in refused.stderr  # before any work


def test_strategy_overhead(scripts: Runs) -> None:
    rows = run(scripts, "strategy_overhead.py")
    by_name = {r["strategy"]: r for r in rows[:-1]}
    assert {"joint", "floor", "gradprom", "pcgrad", "gradprom_gate_every_4", "gradprom_gate_on_head"} <= set(by_name)
    assert by_name["joint"]["ratio_vs_joint"] == 1.0
    assert all(r["ratio_vs_joint"] > 0 for r in by_name.values())
    for cheap in ("gradprom_gate_every_4", "gradprom_gate_on_head", "gradprom_gate_every_4_ema"):
        assert 0.0 <= by_name[cheap]["agreement_with_exact"] <= 1.0
    assert 0.0 <= by_name["gradprom_gate_every_4"]["exact_gate_persistence"] <= 1.0
    assert rows[-1]["benchmark"] == "strategy_overhead_quick" and "gradprom_vs_floor" in rows[-1]


def test_throughput(scripts: Runs) -> None:
    rows = run(scripts, "throughput.py")
    assert [r["strategy"] for r in rows[:-1]] == ["joint", "gradprom"]
    for r in rows[:-1]:
        name = r["strategy"]
        assert r["memory_format"] == "contiguous"
        assert r[f"{name}_pipeline_img_s"] > 0 and r[f"{name}_bare_img_s"] > 0 and r[f"{name}_ratio"] > 0
        assert r[f"{name}_ratio"] == rows[-1][f"{name}_ratio"]
    assert rows[-1]["benchmark"] == "throughput_quick"


def test_throughput_channels_last_on_cuda_only() -> None:
    """The amp variants' layout: channels-last on CUDA, contiguous on the CPU (the trainer refuses it there)."""
    assert memory_format("amp", "cuda") == memory_format("amp_compile", "cuda:1") == "channels_last"
    assert memory_format("amp", "cpu") == memory_format("amp_compile", "cpu") == "contiguous"
    assert memory_format("fp32", "cuda") == "contiguous"


def test_main_job(scripts: Runs) -> None:
    (row,) = run(scripts, "main_job.py")
    assert row["benchmark"] == "main_job" and row["trials"] == 1 and row["completed"] == 1
    assert row["front_size"] >= 1 and len(row["psnr_range_db"]) == 2 and row["note"].startswith("changed: trials=1")


def test_orchestration_overhead(scripts: Runs) -> None:
    """Three timed runs of the same two trials and two of the first alone, then the summary whose ratios and
    overheads (the slope and intercept of search − loop over 1 and 2 trials) are those runs' walls."""
    *runs, summary = run(scripts, "orchestration_overhead.py")
    walls = {r["run"]: r["wall_s"] for r in runs}
    assert set(walls) == {"gradprom_search", "gradprom_search_1", "plain_loop", "plain_loop_1", "hand_ray_tune"}
    assert [r["trials"] for r in runs] == [2, 1, 2, 1, 2]
    assert summary["benchmark"] == "orchestration_overhead_quick"
    assert summary["ratio"] == pytest.approx(walls["gradprom_search"] / walls["plain_loop"], rel=0.02)
    assert summary["ratio_vs_tune"] == pytest.approx(walls["gradprom_search"] / walls["hand_ray_tune"], rel=0.02)
    d2, d1 = walls["gradprom_search"] - walls["plain_loop"], walls["gradprom_search_1"] - walls["plain_loop_1"]
    assert summary["per_trial_overhead_s"] == pytest.approx(d2 - d1, abs=0.1)
    assert summary["per_search_overhead_s"] == pytest.approx(d1 - (d2 - d1), abs=0.1)


def test_packing(scripts: Runs) -> None:
    """Two levels of the same two trials; the summary's throughputs and speedups are those levels' walls'."""
    *levels, summary = run(scripts, "packing.py")
    cores = os.cpu_count() or 1
    assert [r["at_once"] for r in levels] == [1, 2]
    assert [r["threads_per_trial"] for r in levels] == [max(1, cores), max(1, cores // 2)]
    for r in levels:
        assert r["trials_per_hour"] == pytest.approx(3600 * 2 / r["wall_s"], rel=0.01)
        assert summary[f"tph_{r['at_once']}"] == r["trials_per_hour"]
    assert summary["speedup_2"] == pytest.approx(levels[1]["trials_per_hour"] / levels[0]["trials_per_hour"], rel=1e-3)
    assert summary["trials_per_core_2"] == round(2 / cores, 2) and summary["benchmark"] == "packing_quick"


def test_search_efficiency(scripts: Runs) -> None:
    """Two searches (random/fifo, tpe/pareto-asha), each with its curve; the summary's figures are those curves'."""
    *runs, summary = run(scripts, "search_efficiency.py")
    assert [(r["sampler"], r["scheduler"]) for r in runs] == [("random", "fifo"), ("tpe", "pareto-asha")]
    for r in runs:
        worth = [w for w, _, _ in r["curve"]]
        assert len(r["curve"]) == 3 and worth == sorted(worth) and r["worth"] == worth[-1] <= 3
        assert r["hypervolume"] == r["curve"][-1][2] >= 0
    assert summary["random_final_hv"] == runs[0]["hypervolume"]
    assert summary["tpe_pareto_asha_hv_median"] == runs[1]["hypervolume"]
    # the fifo search's rung fidelity (one rung below the 2-epoch budget), and the summary's median of one seed
    ranks = runs[0]["rank_to_final"]
    assert set(ranks) == {"psnr", "task_metric"} and all(len(v) == 1 for v in ranks.values())
    assert all(rho is None or -1 <= rho <= 1 for v in ranks.values() for rho in v)  # None: a constant column
    assert summary["random_fifo_rank_to_final_psnr"] == ranks["psnr"]
    assert "rank_to_final" not in runs[1]  # pareto-asha's stopped trials have no final figures to rank
    assert summary["image_size"] == 16 and summary["grace_period"] == 1  # --quick's tiny trials, the default grace
    # per seed: the first point of TPE + pareto-asha's curve at random's (same seed's) final level, read off the
    # printed curves (rounded to 4 decimals, hence the tolerance)
    level, curve = runs[0]["hypervolume"], runs[1]["curve"]
    [reached] = summary["tpe_pareto_asha_worth_to_same_seed_random"]
    if reached is None:
        assert all(hv < level + 1e-4 for _, _, hv in curve)
    else:
        at = [w for w, _, _ in curve].index(reached)
        assert curve[at][2] >= level - 1e-4 and all(hv < level + 1e-4 for _, _, hv in curve[:at])
    # the target is a quarter of --trials (3 here): one seed, so "most seeds" is that seed, and so is the median
    assert summary["target_quarter"] == 0.75
    assert summary["target_met_most_seeds"] == (reached is not None and reached <= 0.75)
    [to_median] = summary["tpe_pareto_asha_worth_to_random_final"]
    assert summary["target_met_median"] == (to_median is not None and to_median <= 0.75)


def test_search_efficiency_summarizes_lines_of_earlier_runs(tmp_path: Path) -> None:
    """--from-lines: random search at 8 trials from one run (the reference: a quarter is 2 trials' worth), GP at 4
    from another, MOASHA on seed 0 only; every figure below is read off the hand-made curves."""
    def line(sampler: str, scheduler: str, seed: int, trials: int, curve: list[list[float]]) -> str:
        return json.dumps({"run": f"{sampler}-{seed}", "sampler": sampler, "scheduler": scheduler, "seed": seed,
                           "trials": trials, "curve": curve})

    first, second = tmp_path / "random.jsonl", tmp_path / "others.jsonl"
    first.write_text("\n".join([line("random", "fifo", 0, 8, [[1, 0, 5.0], [2, 0, 6.0], [4, 0, 7.0], [8, 0, 8.0]]),
                                line("random", "fifo", 1, 8, [[1, 0, 4.0], [8, 0, 6.0]]), '{"benchmark": "x"}']))
    second.write_text("\n".join([line("gp", "fifo", 0, 4, [[1, 0, 7.5], [2, 0, 8.5], [4, 0, 8.6]]),
                                 line("gp", "fifo", 1, 4, [[1, 0, 5.0], [2, 0, 7.2]]),
                                 line("random", "syne-tune-moasha", 0, 4, [[1, 0, 9.0]])]))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--from-lines",
                           str(first), str(second)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (summary,) = [json.loads(x) for x in done.stdout.splitlines()]
    assert summary["random_final_hv"] == 7.0  # the median of 8.0 and 6.0
    assert summary["gp_fifo_worth_to_random_final"] == [1, 2]  # 7.5 ≥ 7 at 1; 7.2 ≥ 7 at 2
    assert summary["gp_fifo_worth_to_same_seed_random"] == [2, 2]  # 8.5 ≥ 8 at 2; 7.2 ≥ 6 at 2
    assert summary["target_quarter"] == 2 and summary["target_met_median"] and summary["target_met_most_seeds"]
    assert summary["best_config"] == "gp_fifo" and summary["gp_fifo_hv_median"] == 7.9  # (8.6 + 7.2) / 2
    assert summary["best_at_or_above_moasha_per_seed"] == [False]  # 8.6 < 9.0 on seed 0; MOASHA ran no seed 1
    assert summary["seeds"] == 2 and summary["trials"] == 8
    # where no configuration reaches the level on the median, the best is the one with the larger median final
    second.write_text("\n".join([line("gp", "fifo", 0, 4, [[1, 0, 6.0]]), line("gp", "fifo", 1, 4, [[1, 0, 5.0]]),
                                 line("tpe", "fifo", 0, 4, [[1, 0, 6.5]]), line("tpe", "fifo", 1, 4, [[1, 0, 4.0]])]))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--from-lines",
                           str(first), str(second)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    (summary,) = [json.loads(x) for x in done.stdout.splitlines()]
    assert summary["gp_fifo_worth_to_random_final"] == summary["tpe_fifo_worth_to_random_final"] == [None, None]
    assert summary["best_config"] == "gp_fifo"  # median 5.5 against TPE's 5.25


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho by hand: Pearson's r of the average ranks (ties share their mean); None for a constant side."""
    import numpy as np

    def ranks(x: list[float]) -> np.ndarray:
        order = sorted(range(len(x)), key=lambda i: x[i])
        out = np.empty(len(x))
        i = 0
        while i < len(x):
            j = i
            while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
                j += 1
            out[[order[k] for k in range(i, j + 1)]] = (i + j) / 2 + 1
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (ra.std() * rb.std()))


def test_fidelity_rank(scripts: Runs) -> None:
    """Each cheaper fidelity's rho is Spearman's over the printed per-setting figures against the full trial's,
    recomputed here by hand; epoch k costs k/epochs; the summary holds the one seed's figures."""
    *lines, summary = run(scripts, "fidelity_rank.py")
    full = next(r for r in lines if r["fidelity"] == "full")
    low = {r["fidelity"]: r for r in lines if r["fidelity"] != "full"}
    assert set(low) == {"epoch_1", "data_quarter", "size_half"} and len(full["settings"]) == 4
    for name, r in low.items():
        for m in ("psnr", "task_metric"):
            mine = spearman(r[m], full[m])
            assert (r[f"rho_{m}"] is None) == (mine is None)
            if mine is not None:
                assert r[f"rho_{m}"] == pytest.approx(mine, abs=2e-3)
            assert summary[f"{name}_rho_{m}"] == r[f"rho_{m}"]
        assert summary[f"{name}_cost"] == r["cost"] > 0
    assert low["epoch_1"]["cost"] == 0.5  # one epoch of two
    trusted = [f for f in low if all((low[f][f"rho_{m}"] or -2) >= 0.7 for m in ("psnr", "task_metric"))]
    assert summary["trusted"] == (min(trusted, key=lambda f: low[f]["cost"]) if trusted else None)
    assert summary["benchmark"] == "fidelity_rank_quick" and summary["image_size"] == 32


def test_model_samplers(scripts: Runs) -> None:
    """Each search's hypervolume share is its printed points' hypervolume (minimised, from (1, 1)), summed here
    rectangle by rectangle, over the front's 2/3; the summary holds the medians over seeds."""
    *lines, summary = run(scripts, "model_samplers.py")
    assert summary["seeds"] == 2 and summary["trials"] == 8
    assert {"random", "tpe", "gp"} <= set(summary["samplers"])  # BoTorch joins only where it is installed
    for r in lines:
        assert len(r["points"]) == 8 and r["ask_s"] >= 0
        for m in (2, 4, 6, 8):
            inside = sorted((f1, f2) for f1, f2 in r["points"][:m] if f1 < 1 and f2 < 1)
            area, best = 0.0, 1.0
            for i, (f1, f2) in enumerate(inside):  # the staircase: each point's strip up to the next f1
                best = min(best, f2)
                right = inside[i + 1][0] if i + 1 < len(inside) else 1.0
                area += (right - f1) * (1 - best)
            assert r[f"hv_share_at_{m}"] == pytest.approx(area / (2 / 3), abs=1e-3)
    for name in summary["samplers"]:
        shares = sorted(r["hv_share_at_8"] for r in lines if r["sampler"] == name)
        assert summary[f"{name}_hv_share_at_8"] == pytest.approx(sum(shares) / 2, abs=1e-4)
