"""What packing small trials onto one device buys: the same trials run 1, 2 and 4 at a time on one GPU (each
process bounded to its share of the GPU's memory, as `--gpus-per-trial 1/k` makes them) or, on a CPU, on its
cores (each trial with cores/k torch threads, at least one: more trials than cores oversubscribes them).

    python benchmarks/packing.py                 # 8 trials per level, on a GPU if there is one
    python benchmarks/packing.py --quick         # 4 tiny trials per level, a few minutes on 2 CPU cores

Each level runs its trials in fresh processes (spawned, `k` at a time) calling the training function directly, so
it needs no Ray (the GPU machines have none) and measures the device, not orchestration. The reference recognizer
is pretrained once beforehand into a shared cache. Prints one JSON line per level (wall time, trials per hour,
peak GPU memory per trial) and a summary with each level's throughput relative to one trial at a time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402

FULL = {"image_size": 64, "n_train": 256, "n_val": 64, "n_test": 64, "enhancer_blocks": 4, "enhancer_channels": 32,
        "recognizer_width": 16, "batch_size": 32, "pretrain_epochs": 2, "epochs": 3}
QUICK = {"image_size": 16, "n_train": 32, "n_val": 16, "n_test": 16, "enhancer_blocks": 1, "enhancer_channels": 8,
         "recognizer_width": 4, "batch_size": 16, "pretrain_epochs": 1, "epochs": 1}


def one_trial(config: dict) -> float:
    """Train one trial in this (fresh) process; its peak GPU memory in MiB (0 on the CPU)."""
    import torch

    from gradprom.trainables import train_trial

    train_trial(config)
    return torch.cuda.max_memory_allocated() / 2**20 if config["device"] == "cuda" else 0.0


def run_level(configs: list[dict], at_once: int) -> tuple[float, list[float]]:
    """Wall time of running `configs` `at_once` at a time, each in its own spawned process, and their peaks."""
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with ctx.Pool(at_once, maxtasksperchild=1) as pool:
        peaks = pool.map(one_trial, configs, chunksize=1)
    return time.perf_counter() - start, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 tiny trials per level")
    parser.add_argument("--trials", type=int, default=0, help="trials per level (default 4 with --quick, else 8)")
    parser.add_argument("--levels", default="1,2,4", help="trials at once, comma-separated (default 1,2,4)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parse(parser)
    levels = [int(v) for v in args.levels.split(",") if v.strip()]
    n = args.trials or (4 if args.quick else 8)
    if n < 1 or not levels or min(levels) < 1:
        parser.error("--trials and every level of --levels must be at least 1")
    from gradprom.errors import GradpromError
    from gradprom.trainables.build import resolve_device

    try:
        device = resolve_device(args.device).type
    except GradpromError as exc:
        parser.error(str(exc))
    cores = os.cpu_count() or 1
    settings = QUICK if args.quick else FULL
    rows = {}
    with tempfile.TemporaryDirectory() as cache:
        base = {**settings, "device": device, "strategy": "gradprom", "cache_dir": cache}
        run_level([{**base, "epochs": 1, "max_steps_per_epoch": 1, "threads": 1}], 1)  # pretrain the reference
        for k in levels:
            bound = {"gpu_memory_fraction": round(1 / k, 4)} if device == "cuda" and k > 1 else {}
            configs = [{**base, **bound, "seed": i, "threads": max(1, cores // k) if device == "cpu" else 1}
                       for i in range(n)]
            wall, peaks = run_level(configs, k)
            rows[k] = {"at_once": k, "trials": n, "wall_s": round(wall, 2),
                       "trials_per_hour": round(3600 * n / wall, 1),
                       "threads_per_trial": configs[0]["threads"], "peak_mib_per_trial": round(max(peaks), 1),
                       **bound}
            emit({"device": device, **rows[k]})
    first = rows[levels[0]]["trials_per_hour"]
    result = {"device": device, "trials": n, **{f"tph_{k}": r["trials_per_hour"] for k, r in rows.items()},
              **{f"speedup_{k}": round(r["trials_per_hour"] / first, 3) for k, r in rows.items()}}
    if device == "cpu":
        result.update({f"trials_per_core_{k}": round(k / cores, 2) for k in rows})
    record("packing_quick" if args.quick else "packing", result, args)


if __name__ == "__main__":
    main()
