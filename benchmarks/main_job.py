"""Time the README's main job on the built-in dataset, from a cold recognizer cache.

    python benchmarks/main_job.py            # the defaults: 12 trials × 6 epochs
    python benchmarks/main_job.py --quick    # 4 trials × 2 epochs, for a smoke check
    python benchmarks/main_job.py --quick --record   # also add the row to benchmarks/README.md

Target (issue 2): the defaults finish within 10 minutes on a 2-core CPU and give a front with visible
spread between λ/τ values (not a single point). Prints one JSON line (the search's own output goes to
stderr); `--record` also adds it as a row to benchmarks/README.md (or `--readme PATH`). `--trials`,
`--epochs` and `--param KEY=VALUE` (passed to `gradprom search -p`) change the job; the row's note says how.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import parse, record  # noqa: E402
from gradprom.results.parquet import read_rows  # noqa: E402


def value_range(rows: list[dict], key: str, digits: int) -> list[float] | None:
    """[min, max] of a metric over the completed trials (None when none completed)."""
    return [round(min(t[key] for t in rows), digits), round(max(t[key] for t in rows), digits)] if rows else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (Linux /proc), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 trials × 2 epochs instead of the defaults")
    parser.add_argument("--trials", type=int, default=0, help="trials (default 4 with --quick, else 12)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per trial (default 2 with --quick, else 6)")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="a trial setting passed to `gradprom search -p` (repeatable), e.g. image_size=16")
    args = parse(parser)
    if args.trials < 0 or args.epochs < 0:
        parser.error("--trials and --epochs must not be negative")
    trials_n, epochs = args.trials or (4 if args.quick else 12), args.epochs or (2 if args.quick else 6)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRADPROM_CACHE": str(Path(tmp) / "cache")}
        command = [sys.executable, "-m", "gradprom.cli", "search", "--space", "lambda_threshold", "--dataset",
                   "synthetic", "--out", tmp, "--name", "bench", "--trials", str(trials_n), "--epochs", str(epochs),
                   *(a for p in args.param for a in ("-p", p))]
        start = time.perf_counter()
        driver = subprocess.Popen(command, env=env, stdout=sys.stderr)  # its progress is not a result line
        driver_cpu = 0.0
        while driver.poll() is None:  # the driver's own CPU time (not its Ray workers'), read until it exits
            driver_cpu = cpu_seconds(driver.pid) or driver_cpu
            time.sleep(0.5)
        wall = time.perf_counter() - start
        if driver.returncode:
            raise SystemExit(f"gradprom search exited {driver.returncode}")
        trials = read_rows(Path(tmp) / "bench" / "trials.parquet")
        front = read_rows(Path(tmp) / "bench" / "pareto.parquet")
    done = [t for t in trials if t["status"] == "completed"]
    result = {"trials": len(trials), "completed": len(done), "wall_s": round(wall, 1), "front_size": len(front),
              "driver_cpu_s": round(driver_cpu, 1), "driver_cpu_share": round(driver_cpu / wall, 3),
              "psnr_range_db": value_range(done, "psnr", 2), "acc_range": value_range(done, "acc", 3)}
    changed = [f"{k}={v}" for k, v in (("trials", args.trials), ("epochs", args.epochs)) if v] + args.param
    record("main_job_quick" if args.quick else "main_job", result, args,
           note=f"changed: {', '.join(changed)}" if changed else "")


if __name__ == "__main__":
    main()
