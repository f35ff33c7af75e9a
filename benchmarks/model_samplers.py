"""Which model-based sampler `--sampler gp` should be: Optuna's GPSampler (log EHVI, in Optuna itself) against
BoTorch's qLogNEHVI through optuna-integration, with TPE and random search beside them, on a problem whose front is
known (development only: botorch and optuna-integration are not gradprom dependencies; run this with a Python that
has them, e.g. a venv with `pip install botorch optuna-integration`; without them the BoTorch arm is left out).

    VENV/bin/python benchmarks/model_samplers.py                 # 10 seeds, 16 trials, two asked at a time
    python benchmarks/model_samplers.py --quick                  # 2 seeds, 8 trials

The problem: ZDT1 in three dimensions, both objectives minimised (f1 = x1, g = 1 + 9·(x2 + x3)/2, f2 = g·(1 −
√(f1/g))), whose front (x2 = x3 = 0, f2 = 1 − √f1) has hypervolume 2/3 from the reference point (1, 1); each told
value carries Gaussian noise (`--noise`, 0.02), as a trial's validation figures do. Every sampler runs through
gradprom's own `StudySearcher` (Optuna's ask/tell, as a search uses it), two trials asked before either is told
(as `--concurrency 2` runs them), and the model-based two start as `--sampler gp` does: the space's anchors, then
scrambled Sobol points, a quarter of the trials (at least 4). Figures: the noise-free hypervolume of the points
asked, as a share of the front's, after each quarter of the trials (median over seeds), and the seconds per ask;
each search's line also lists its points (noise-free f1, f2, in the order asked).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402

FRONT_HV = 2 / 3  # ∫₀¹ √f1 df1: the area the front dominates inside the reference box (1, 1)
PARAMS = {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in (1, 2, 3)}
ANCHORS = [{"x1": "low", "x2": "low", "x3": "low"}, {"x1": "high", "x2": "low", "x3": "low"}]


def zdt1(point: dict[str, float]) -> tuple[float, float]:
    g = 1 + 9 * (point["x2"] + point["x3"]) / 2
    return point["x1"], g * (1 - math.sqrt(point["x1"] / g))


def botorch_sampler(seed: int) -> Any:
    """BoTorch's qLogNEHVI through optuna-integration, aware of running trials; None where it is not installed."""
    try:
        from optuna_integration import BoTorchSampler
        from optuna_integration.botorch import qnehvi_candidates_func
    except ImportError:
        return None
    return BoTorchSampler(candidates_func=qnehvi_candidates_func, n_startup_trials=2, seed=seed,
                          consider_running_trials=True)


def search(name: str, seed: int, trials: int, noise: float) -> tuple[list[tuple[float, float]], float]:
    """One search: the noise-free objectives of every point asked, in order, and the mean seconds per ask."""
    import numpy as np

    from gradprom.search.searcher import StudySearcher, make_sampler
    from gradprom.search.seeding import startup_points
    from gradprom.search_spaces import SearchSpace

    space = SearchSpace("zdt1", "", {}, PARAMS, anchors=ANCHORS)
    sampler = botorch_sampler(seed) if name == "botorch" else make_sampler(name, seed, trials)
    start = startup_points(space, max(4, trials // 4), seed) if name in ("gp", "botorch") else None
    study = StudySearcher(space.distributions(), ["f1", "f2"], ["min", "min"], sampler, 1, points_to_evaluate=start)
    rng = np.random.default_rng(10_000 + seed)
    found, asking, running = [], 0.0, []
    for i in range(trials):
        started = time.perf_counter()
        point = study.suggest(str(i))
        asking += time.perf_counter() - started
        running.append((str(i), point))
        found.append(zdt1(point))
        if len(running) == 2 or i == trials - 1:  # two at a time: the second was asked while the first ran
            for trial_id, asked in running:
                f1, f2 = zdt1(asked)
                study.on_trial_complete(trial_id, {"f1": f1 + rng.normal(0, noise), "f2": f2 + rng.normal(0, noise),
                                                   "epoch": 1})
            running = []
    return found, asking / trials


def share(points: list[tuple[float, float]]) -> float:
    """The points' hypervolume from (1, 1), minimised, as a share of the front's."""
    import moocore
    import numpy as np

    inside = [p for p in points if p[0] < 1 and p[1] < 1]
    return float(moocore.hypervolume(np.array(inside), ref=np.array([1.0, 1.0]))) / FRONT_HV if inside else 0.0


def main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 8 trials")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per sampler (default 2 with --quick, else 10)")
    parser.add_argument("--trials", type=int, default=0, help="trials per search (default 8 with --quick, else 16)")
    parser.add_argument("--noise", type=float, default=0.02, help="std of the noise on each told value")
    args = parse(parser)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeds, trials = args.seeds or (2 if args.quick else 10), args.trials or (8 if args.quick else 16)
    names = ["random", "tpe", "gp"] + (["botorch"] if botorch_sampler(0) is not None else [])
    marks = sorted({max(1, trials * k // 4) for k in (1, 2, 3, 4)})
    result: dict[str, Any] = {"seeds": seeds, "trials": trials, "noise": args.noise, "samplers": names}
    for name in names:
        shares: dict[int, list[float]] = {m: [] for m in marks}
        asks = []
        for seed in range(seeds):
            found, per_ask = search(name, seed, trials, args.noise)
            line = {"sampler": name, "seed": seed, "ask_s": round(per_ask, 4),
                    **{f"hv_share_at_{m}": round(share(found[:m]), 4) for m in marks},
                    "points": [[round(f1, 6), round(f2, 6)] for f1, f2 in found]}
            emit(line)
            asks.append(per_ask)
            for m in marks:
                shares[m].append(line[f"hv_share_at_{m}"])
        for m in marks:
            result[f"{name}_hv_share_at_{m}"] = round(statistics.median(shares[m]), 4)
        result[f"{name}_ask_s"] = round(statistics.median(asks), 4)
    record("model_samplers_quick" if args.quick else "model_samplers", result, args)


if __name__ == "__main__":
    main()
