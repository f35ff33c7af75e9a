"""Syne Tune's MOASHA on search_efficiency.py's problem, for a side-by-side comparison (development only: syne-tune is
not a dependency of gradprom; run this with a Python that has it, e.g. a venv with `pip install syne-tune`).

    VENV/bin/python benchmarks/moasha_syne_tune.py --trials 64 --epochs 4 --seed 0 --cache DIR

MOASHA (random configurations, rungs ranked by non-dominated sorting) decides at every epoch of the same
`lambda_threshold` space's trials, trained by gradprom's own `train_trial` in this one process (no Ray), one trial
at a time; a trial it stops ends there. Prints one JSON line: the curve `[trials' worth, seconds, hypervolume]` as
search_efficiency.py computes it (completed trials only, reference point 10 dB / 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout
from benchmarks.search_efficiency import REF, SIZES  # noqa: E402


class Stopped(Exception):
    """MOASHA said STOP: end the trial after this epoch."""


def main() -> None:
    import moocore
    import numpy as np
    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import loguniform, uniform
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    from gradprom.trainables import train_trial

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--size", default=json.dumps(SIZES["full"]), help="the trials' sizes, a JSON object")
    parser.add_argument("--cache", required=True, help="gradprom's recognizer cache (shared with the other runs)")
    args = parser.parse_args()
    np.random.seed(args.seed)  # MOASHA's bracket choice draws from numpy's global generator
    space = {"lam": loguniform(1e-3, 10.0), "threshold": uniform(-1.0, 1.0)}  # the lambda_threshold space
    scheduler = MOASHA(space, metrics=["psnr", "task_metric"], do_minimize=False, time_attr="epoch",
                       max_t=args.epochs, grace_period=args.grace_period, reduction_factor=2, random_seed=args.seed)
    base = {**json.loads(args.size), "strategy": "threshold", "epochs": args.epochs, "device": "cpu", "seed": args.seed,
            "cache_dir": args.cache}
    start, epochs, points, curve = time.perf_counter(), 0, [], []
    for i in range(args.trials):
        config = scheduler.suggest().config
        trial = Trial(trial_id=i, config=config, creation_time=datetime.now())
        scheduler.on_trial_add(trial)
        seen: list[dict] = []

        def report(metrics: dict, _checkpoint: str | None, trial: Trial = trial, seen: list = seen) -> None:
            seen.append(metrics)
            decision = scheduler.on_trial_result(trial, {k: metrics[k] for k in ("epoch", "psnr", "task_metric")})
            if decision == SchedulerDecision.STOP and metrics["epoch"] < args.epochs:
                raise Stopped

        with contextlib.suppress(Stopped):  # MOASHA ended it early
            train_trial({**base, "lam": config["lam"], "threshold": config["threshold"]}, report)
        epochs += len(seen)
        if len(seen) == args.epochs:
            points.append((seen[-1]["psnr"], seen[-1]["task_metric"]))
        hv = float(moocore.hypervolume(np.array(points), ref=np.array(REF), maximise=True)) if points else 0.0
        curve.append([round(epochs / args.epochs, 2), round(time.perf_counter() - start, 1), round(hv, 4)])
    print(json.dumps({"run": f"syne_tune_moasha-{args.seed}", "sampler": "random", "scheduler": "syne-tune-moasha",
                      "seed": args.seed, "trials": args.trials, "worth": curve[-1][0], "hypervolume": curve[-1][2],
                      "curve": curve}))


if __name__ == "__main__":
    main()
