"""Which cheaper fidelity ranks the final objectives well enough for a scheduler to stop trials on it: early epochs, a
quarter of the training data, or half the image size, each against the full trial, on the built-in dataset.

    python benchmarks/fidelity_rank.py              # 16 settings of lambda_threshold per seed, 3 seeds
    python benchmarks/fidelity_rank.py --quick      # 6 tiny settings, 1 seed (a smoke check of the machinery)

Per seed, `--configs` settings (λ log-uniform 1e-3 … 10, τ uniform −1 … 1: the `lambda_threshold` space) are drawn
with the seed and each is trained by gradprom's `train_trial` (no Ray; two processes, one thread each) at the full
fidelity (`search_efficiency.py`'s trial) and at each cheaper one, all with the same seed (data, initial weights).
A fidelity's figure is Spearman's ρ, over the settings, between its final psnr (task_metric) on the validation split
and the full trial's; its cost is its median wall time over the full trial's (epoch k costs k/epochs of the full
trial). ρ near 1: a stopper deciding there keeps the front; near 0: it stops trials at random on that objective.
Prints one JSON line per (seed, fidelity) with its figures per setting (`psnr`, `task_metric`, in the order of the
full line's `settings`), and a summary with each fidelity's median ρ and cost over seeds, and `trusted`: the cheapest
fidelity whose median ρ is at least 0.7 on both objectives (null: none is).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402
from benchmarks.search_efficiency import SIZES  # noqa: E402

OBJECTIVES = ("psnr", "task_metric")


def cheaper(size: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fidelities beside epochs, each a change to the full trial's sizes: a quarter of the training images, half
    the image side (a quarter of the pixels)."""
    return {"data_quarter": {"n_train": max(size["batch_size"], size["n_train"] // 4)},
            "size_half": {"image_size": size["image_size"] // 2}}


def settings(n: int, seed: int) -> list[dict[str, float]]:
    """`n` settings of the lambda_threshold space, drawn with `seed`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [{"lam": float(10 ** rng.uniform(-3, 1)), "threshold": float(rng.uniform(-1, 1))} for _ in range(n)]


def run(config: dict[str, Any]) -> tuple[list[dict[str, float]], float]:
    """One trial (in a worker process): its per-epoch validation objectives and its wall seconds."""
    from gradprom.trainables import train_trial

    seen: list[dict[str, float]] = []
    started = time.perf_counter()
    train_trial(config, lambda metrics, _checkpoint: seen.append({k: metrics[k] for k in OBJECTIVES}))
    return seen, time.perf_counter() - started


def rho(low: list[float], full: list[float]) -> float | None:
    from gradprom.search.fidelity import rank_agreement

    value = rank_agreement(low, full)
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 tiny settings, 1 seed")
    parser.add_argument("--configs", type=int, default=0, help="settings per seed (default 6 with --quick, else 16)")
    parser.add_argument("--seeds", type=int, default=0, help="seeds (default 1 with --quick, else 3)")
    parser.add_argument("--epochs", type=int, default=4, help="the full trial's epochs")
    parser.add_argument("--workers", type=int, default=2, help="trials at once (one thread each)")
    args = parse(parser)
    n, seeds = args.configs or (6 if args.quick else 16), args.seeds or (1 if args.quick else 3)
    size = {**SIZES["quick"], "image_size": 32} if args.quick else SIZES["full"]  # 32: its half is still >= 16
    fidelities = {"full": {}, **cheaper(size)}
    rhos: dict[str, dict[str, list[float]]] = {}
    costs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        os.environ["GRADPROM_CACHE"] = str(Path(tmp) / "cache")
        for seed in range(seeds):
            points = settings(n, seed)
            base = {**size, "strategy": "threshold", "epochs": args.epochs, "device": "cpu", "seed": seed,
                    "cache_dir": str(Path(tmp) / "cache")}
            # each fidelity's first trial alone (it pretrains and caches that fidelity's reference), then the rest
            first = {f: pool.submit(run, {**base, **change, **points[0]}) for f, change in fidelities.items()}
            done = {f: [job.result()] for f, job in first.items()}
            rest = {f: [pool.submit(run, {**base, **change, **p}) for p in points[1:]] for f, change in
                    fidelities.items()}
            for f, jobs in rest.items():
                done[f] += [job.result() for job in jobs]
            full_wall = statistics.median(wall for _, wall in done["full"][1:] or done["full"])
            final = {m: [seen[-1][m] for seen, _ in done["full"]] for m in OBJECTIVES}
            lows = {f"epoch_{k}": ([{m: seen[k - 1][m] for m in OBJECTIVES} for seen, _ in done["full"]],
                                   k / args.epochs) for k in range(1, args.epochs)}
            for f in cheaper(size):
                wall = statistics.median(w for _, w in done[f][1:] or done[f])
                lows[f] = ([seen[-1] for seen, _ in done[f]], wall / full_wall)
            for f, (low, cost) in lows.items():
                line = {"seed": seed, "fidelity": f, "configs": n, "cost": round(cost, 3),
                        **{f"rho_{m}": rho([x[m] for x in low], final[m]) for m in OBJECTIVES},
                        **{m: [round(x[m], 6) for x in low] for m in OBJECTIVES}}
                emit(line)
                costs.setdefault(f, []).append(cost)
                for m in OBJECTIVES:
                    if line[f"rho_{m}"] is not None:
                        rhos.setdefault(f, {}).setdefault(m, []).append(line[f"rho_{m}"])
            emit({"seed": seed, "fidelity": "full", "configs": n, "wall_s_median": round(full_wall, 1),
                  "settings": points, **{m: [round(v, 6) for v in final[m]] for m in OBJECTIVES}})
    result: dict[str, Any] = {"configs": n, "seeds": seeds, "epochs": args.epochs, "image_size": size["image_size"],
                              "n_train": size["n_train"], "n_val": size["n_val"]}
    for f, spent in costs.items():
        result[f"{f}_cost"] = round(statistics.median(spent), 3)
        for m in OBJECTIVES:
            known = rhos.get(f, {}).get(m, [])
            result[f"{f}_rho_{m}"] = round(statistics.median(known), 3) if known else None
    # the cheapest fidelity whose median ρ is at least 0.7 on every objective (None: none ranks them)
    good = [f for f in costs if all((result[f"{f}_rho_{m}"] or -math.inf) >= 0.7 for m in OBJECTIVES)]
    result["trusted"] = min(good, key=lambda f: result[f"{f}_cost"]) if good else None
    record("fidelity_rank_quick" if args.quick else "fidelity_rank", result, args)


if __name__ == "__main__":
    main()
