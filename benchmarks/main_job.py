"""Time the README's main job on the built-in dataset, from a cold recognizer cache.

    python benchmarks/main_job.py            # the defaults: 12 trials × 6 epochs
    python benchmarks/main_job.py --quick    # 4 trials × 2 epochs, for a smoke check

Target (issue 2): the defaults finish within 10 minutes on a 2-core CPU and give a front with visible
spread between λ/τ values (not a single point). Prints one JSON line and adds a row to README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.record import record  # noqa: E402
from gradprom.orchestrator.results import read_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 trials × 2 epochs instead of the defaults")
    parser.add_argument("--no-record", action="store_true", help="print the JSON line only")
    args = parser.parse_args()
    extra = ["--trials", "4", "--epochs", "2"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRADPROM_CACHE": str(Path(tmp) / "cache")}
        command = [sys.executable, "-m", "gradprom.cli", "search", "--space", "lambda_threshold", "--dataset",
                   "synthetic", "--out", tmp, "--name", "bench", *extra]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        trials = read_rows(Path(tmp) / "bench" / "trials.parquet")
        front = read_rows(Path(tmp) / "bench" / "pareto.parquet")
    done = [t for t in trials if t["status"] == "completed"]
    result = {
        "trials": len(trials), "completed": len(done), "wall_s": round(wall, 1),
        "front_size": len(front),
        "psnr_range_db": [round(min(t["psnr"] for t in done), 2), round(max(t["psnr"] for t in done), 2)],
        "acc_range": [round(min(t["acc"] for t in done), 3), round(max(t["acc"] for t in done), 3)],
    }
    if args.no_record:
        print(result)
    else:
        record("main_job_quick" if args.quick else "main_job", result)


if __name__ == "__main__":
    main()
