"""How fast each search finds the front: hypervolume against trials used and against wall time, per sampler, with
and without `pareto-asha`, over seeds (medians and spreads), on the built-in dataset.

    python benchmarks/search_efficiency.py            # 64 trials; the configurations of DEFAULT_CONFIGS; 3 seeds
    python benchmarks/search_efficiency.py --quick    # 6 tiny trials; random/fifo and tpe/pareto-asha; 1 seed
    python benchmarks/search_efficiency.py --trials 24 --seeds 2 --configs random:fifo,gp:pareto-asha:check
    python benchmarks/search_efficiency.py --from-lines random64.jsonl others24.jsonl   # summarize earlier runs

A configuration is SAMPLER:SCHEDULER, with `:check` for `--fidelity-check` (a quarter of the trials, at least 3, run
fully before the scheduler is trusted).

Each (sampler, scheduler, seed) is one real `gradprom search --space lambda_threshold` on small trials. Compute is
counted in epochs (a trial that `pareto-asha` stops early costs only the epochs it ran), as "trials' worth" =
epochs / budget. The hypervolume (moocore; objectives psnr and task_metric, maximised, fixed reference point
psnr 10 dB, task 0) is that of the completed trials' validation figures after each trial ends, in Optuna's
completion order. Target (issue 27): the best configuration (`best_config`, the fewest trials' worth on the median)
reaches random search's final hypervolume in a quarter of its compute (16 trials' worth of 64); random search may
run more trials than the others when the lines come from separate runs (`--from-lines`).
`--seed` seeds both the sampler and the trials' training (data, initial weights), so the hypervolume a search can
reach differs by seed: the target is read on the median over seeds (against random search's median final level,
`target_met_median`) and seed by seed (against random search with the same seed, on more than half the seeds,
`target_met_most_seeds`). Prints one JSON line per search and a summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402

#: trial sizes. "full": the smallest at which the trained recognizer learns (≈ 0.6 accuracy) and λ moves both PSNR
#: (27 → 21 dB) and accuracy, so the front is a real trade-off; at "quick" (a smoke check) the recognizer sits at
#: chance and the hypervolume is set by PSNR alone
#: 512 validation images: what the searches rank on, with an accuracy's standard error ≈ 0.02 (64 gave 0.06), below
#: the effect λ buys; evaluation is forward passes only
SIZES = {
    "full": {"image_size": 48, "n_train": 512, "n_val": 512, "n_test": 256, "enhancer_blocks": 2,
             "enhancer_channels": 8, "recognizer_width": 8, "batch_size": 32, "pretrain_epochs": 8, "threads": 1},
    "quick": {"image_size": 16, "n_train": 64, "n_val": 32, "n_test": 32, "enhancer_blocks": 1,
              "enhancer_channels": 8, "recognizer_width": 4, "batch_size": 16, "pretrain_epochs": 2, "threads": 1},
}
REF = (10.0, 0.0)  # psnr (dB), task_metric
#: the full benchmark's configurations: random search (the level to reach), TPE, the model-based GP plain and with
#: pareto-asha behind a fidelity check, and NSGA-II (Syne Tune's MOASHA joins with --syne-python)
DEFAULT_CONFIGS = "random:fifo,tpe:fifo,gp:fifo,gp:pareto-asha:check,tpe:pareto-asha,nsga2:fifo"
CHECKPOINTS = (4, 8, 16, 32, 64)  # trials' worth of compute at which the hypervolume is reported


def curve(folder: Path) -> list[tuple[float, float, float]]:
    """(trials' worth of compute, wall seconds, hypervolume) after each trial of one search ends."""
    import moocore
    import numpy as np
    import optuna

    from gradprom.results.parquet import read_rows

    rows = read_rows(folder / "trials.parquet")
    budget = rows[0]["budget"]
    done = {(round(r["lam"], 12), round(r["threshold"], 12)): r for r in rows}
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = [t for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials
              if t.datetime_complete is not None]
    trials.sort(key=lambda t: t.datetime_complete)
    start = min(t.datetime_start for t in trials)
    out, epochs, points = [], 0, []
    for t in trials:
        row = done[round(t.params["lam"], 12), round(t.params["threshold"], 12)]
        epochs += row["epochs_done"]
        if row["status"] == "completed":
            points.append((row["psnr"], row["task_metric"]))
        hv = float(moocore.hypervolume(np.array(points), ref=np.array(REF), maximise=True)) if points else 0.0
        out.append((epochs / budget, (t.datetime_complete - start).total_seconds(), hv))
    return out


def rank_to_final(folder: Path) -> dict[str, list[float]]:
    """Spearman rank correlation, over one search's completed trials, between each objective at epoch k (k = 1 …
    budget − 1: the rungs an early stopper decides at) and at the last epoch: how far a rung's ranking predicts the
    final one. Near 1: stopping early keeps the front; near 0: it stops trials at random on that objective; None:
    the objective did not vary."""
    from gradprom.results.parquet import read_rows
    from gradprom.search.fidelity import rank_agreement

    trials = read_rows(folder / "trials.parquet")
    done = {r["trial_id"] for r in trials if r["status"] == "completed"}
    budget = trials[0]["budget"]
    at = {(r["trial_id"], r["epoch"]): r for r in read_rows(folder / "epochs.parquet") if r["trial_id"] in done}
    ids = sorted(done)

    def rho(metric: str, k: int) -> float | None:  # None where a column is constant (no ranking to compare)
        value = rank_agreement([at[i, k][metric] for i in ids], [at[i, budget][metric] for i in ids])
        return None if value is None else round(value, 3)

    return {m: [rho(m, k) for k in range(1, budget)] for m in ("psnr", "task_metric")}


def hv_at(points: list[tuple[float, float, float]], worth: float) -> float:
    """The hypervolume reached within `worth` trials' worth of compute (0 before the first trial ended)."""
    return max([hv for w, _, hv in points if w <= worth + 1e-9], default=0.0)


def worth_to_reach(points: list[tuple[float, float, float]], level: float) -> float | None:
    """Trials' worth of compute at which the hypervolume first reaches `level` (None: never)."""
    return next((w for w, _, hv in points if hv >= level - 1e-12), None)


def worths(runs: list[list[tuple[float, float, float]]], levels: list[float]) -> list[float | None]:
    """Per run, the trials' worth at which it first reaches its level (rounded; None: never)."""
    reached = (worth_to_reach(r, level) for r, level in zip(runs, levels, strict=True))
    return [None if w is None else round(w, 2) for w in reached]


def median_within(reached: list[float | None], limit: float) -> bool:
    """The target on the median over seeds: the median run reached its level within `limit` trials' worth (a run
    that never reached it counts as infinitely late)."""
    return statistics.median(math.inf if w is None else w for w in reached) <= limit


def most_within(reached: list[float | None], limit: float) -> bool:
    """The target seed by seed: more than half the runs reached their level within `limit` trials' worth."""
    return 2 * sum(w is not None and w <= limit for w in reached) > len(reached)


def run_searches(args: argparse.Namespace, configs: list[tuple[str, str]], trials_n: int, seeds: int,
                 size: dict) -> list[dict]:
    """Run every (configuration, seed) search (and MOASHA per seed with --syne-python); print and return one line
    per search, with its hypervolume curve."""
    lines: list[dict] = []
    params = [a for k, v in size.items() for a in ("-p", f"{k}={v}")]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRADPROM_CACHE": str(Path(tmp) / "cache")}
        for seed in range(seeds):
            for sampler, scheduler in configs:
                name = f"{sampler}-{scheduler.replace(':', '-')}-{seed}"
                stopper, _, check = scheduler.partition(":")
                checked = ["--fidelity-check", str(max(3, trials_n // 4))] if check == "check" else []
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "gradprom.cli", "search", "--space", "lambda_threshold", "--trials",
                     str(trials_n), "--epochs", str(args.epochs), "--sampler", sampler, "--scheduler", stopper,
                     "--seed", str(seed), "--concurrency", str(args.concurrency), "--device", "cpu", "--out", tmp,
                     "--name", name, "--grace-period", str(args.grace_period), *checked, *params],
                    env=env, stdout=sys.stderr, stderr=sys.stderr)
                if done.returncode:
                    raise SystemExit(f"search {name} exited {done.returncode}")
                points = curve(Path(tmp) / name)
                fidelity = rank_to_final(Path(tmp) / name) if scheduler == "fifo" and trials_n > 2 else {}
                lines.append({"run": name, "sampler": sampler, "scheduler": scheduler, "seed": seed,
                              "trials": trials_n, "wall_s": round(time.perf_counter() - started, 1),
                              "worth": round(points[-1][0], 2), "hypervolume": round(points[-1][2], 4),
                              **{f"hv_at_{w}": round(hv_at(points, w), 4) for w in CHECKPOINTS if w <= trials_n},
                              **({"rank_to_final": fidelity} if fidelity else {}),
                              "curve": [[round(w, 2), round(t, 1), round(hv, 4)] for w, t, hv in points]})
                emit(lines[-1])
            if args.syne_python:  # Syne Tune's MOASHA, one trial at a time in one process, same trials and budget;
                # its trial gets the cores the Ray searches spread over --concurrency trials, as threads
                done = subprocess.run([args.syne_python, str(Path(__file__).with_name("moasha_syne_tune.py")),
                                       "--trials", str(trials_n), "--epochs", str(args.epochs), "--seed", str(seed),
                                       "--grace-period", str(args.grace_period),
                                       "--size", json.dumps({**size, "threads": args.concurrency}),
                                       "--cache", env["GRADPROM_CACHE"]], env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"moasha_syne_tune.py exited {done.returncode}: {done.stderr[-2000:]}")
                lines.append(json.loads(done.stdout.splitlines()[-1]))
                emit(lines[-1])
    return lines


def config_key(sampler: str, scheduler: str) -> str:
    """'gp_pareto_asha_check' for gp with pareto-asha:check; 'syne_tune_moasha' for Syne Tune's MOASHA."""
    if scheduler == "syne-tune-moasha":
        return "syne_tune_moasha"
    return f"{sampler}_{scheduler.replace('-', '_').replace(':', '_')}"


def summary(lines: list[dict]) -> dict:
    """The figures of a set of searches (their printed lines): per configuration the final hypervolume's median and
    range; random search's rank_to_final; and against random search's final level (the reference; its trials set
    the target, a quarter of them), the trials' worth each configuration took to reach it (on the median over
    seeds, and seed by seed where random search ran that seed), the best configuration, whether it met the target,
    and whether it ended at or above MOASHA on each seed both ran."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for line in lines:
        runs.setdefault((line["sampler"], line["scheduler"]), {})[line["seed"]] = line
    curves = {c: {seed: [tuple(p) for p in r["curve"]] for seed, r in sorted(found.items())}
              for c, found in runs.items()}
    result: dict = {}
    for (sampler, scheduler), found in curves.items():
        key = config_key(sampler, scheduler)
        finals = [c[-1][2] for c in found.values()]
        result[f"{key}_trials"] = next(iter(runs[sampler, scheduler].values()))["trials"]
        result[f"{key}_hv_median"] = round(statistics.median(finals), 4)
        result[f"{key}_hv_range"] = [round(min(finals), 4), round(max(finals), 4)]
        result[f"{key}_worth_median"] = round(statistics.median(c[-1][0] for c in found.values()), 2)
    ranks = [r["rank_to_final"] for r in runs.get(("random", "fifo"), {}).values() if "rank_to_final" in r]
    for metric in ("psnr", "task_metric") if ranks else ():  # each rung's fidelity, median over seeds
        result[f"random_fifo_rank_to_final_{metric}"] = [
            round(statistics.median(known), 3) if (known := [v for v in column if v is not None]) else None
            for column in zip(*(r[metric] for r in ranks), strict=True)]
    if ("random", "fifo") not in curves or len(curves) < 2:
        return result
    reference = curves["random", "fifo"]
    level = statistics.median(c[-1][2] for c in reference.values())  # random search's final hypervolume
    result["random_final_hv"] = round(level, 4)
    for (sampler, scheduler), found in curves.items():
        if (sampler, scheduler) != ("random", "fifo"):
            key = config_key(sampler, scheduler)
            result[f"{key}_worth_to_random_final"] = worths(list(found.values()), [level] * len(found))
            # against random search on the same seed (the same training data and initial weights)
            same = [seed for seed in found if seed in reference]
            result[f"{key}_worth_to_same_seed_random"] = worths([found[s] for s in same],
                                                                [reference[s][-1][2] for s in same])
    candidates = [k[:-len("_worth_to_random_final")] for k in result
                  if k.endswith("_worth_to_random_final") and not k.startswith("syne_tune")]
    best = min(candidates, key=lambda k: (statistics.median(
        [math.inf if w is None else w for w in result[f"{k}_worth_to_random_final"]]), -result[f"{k}_hv_median"]))
    # the fewest trials' worth to random search's final level, median over seeds; where none reaches it (or on a
    # tie), the largest median final hypervolume
    result["best_config"] = best
    quarter = result["random_fifo_trials"] / 4  # the target: random search's final level in a quarter of its compute
    result["target_quarter"] = quarter
    result["target_met_median"] = median_within(result[f"{best}_worth_to_random_final"], quarter)
    result["target_met_most_seeds"] = most_within(result[f"{best}_worth_to_same_seed_random"], quarter)
    moasha = curves.get(("random", "syne-tune-moasha"))
    if moasha:  # the best configuration's final hypervolume against MOASHA's, on each seed both ran
        mine = next(found for c, found in curves.items() if config_key(*c) == best)
        result["best_at_or_above_moasha_per_seed"] = [mine[s][-1][2] >= moasha[s][-1][2] - 1e-9
                                                     for s in sorted(mine) if s in moasha]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 tiny trials, random/fifo vs tpe/pareto-asha, 1 seed")
    parser.add_argument("--trials", type=int, default=0, help="trials per search (default 6 with --quick, else 64)")
    parser.add_argument("--epochs", type=int, default=4, help="the full budget of a trial, in epochs")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per configuration (default 1 / 3)")
    parser.add_argument("--configs", default="", help="SAMPLER:SCHEDULER[:check],… (default: the quick pair, or "
                                                      "DEFAULT_CONFIGS)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once")
    parser.add_argument("--grace-period", type=int, default=1, help="pareto-asha's (and MOASHA's) first rung, epochs")
    parser.add_argument("--syne-python", default="", metavar="PYTHON",
                        help="a Python with syne-tune installed: also run Syne Tune's MOASHA (moasha_syne_tune.py) on "
                             "the same problem and budget, per seed (development only; not a gradprom dependency)")
    parser.add_argument("--from-lines", nargs="+", type=Path, default=[], metavar="FILE",
                        help="run nothing: summarize the search lines earlier runs printed (e.g. random search at 64 "
                             "trials from one run, the other configurations at 24 from another)")
    args = parse(parser)
    trials_n, seeds = args.trials or (6 if args.quick else 64), args.seeds or (1 if args.quick else 3)
    size = SIZES["quick" if args.quick else "full"]
    if args.from_lines:
        lines = [row for f in args.from_lines for row in read_lines(parser, f)]
    else:
        default = "random:fifo,tpe:pareto-asha" if args.quick else DEFAULT_CONFIGS
        configs = [(c.split(":")[0], ":".join(c.split(":")[1:])) for c in (args.configs or default).split(",")]
        lines = run_searches(args, configs, trials_n, seeds, size)
    result = {"trials": max(r["trials"] for r in lines), "epochs": args.epochs,
              "seeds": len({r["seed"] for r in lines}), "grace_period": args.grace_period,
              "image_size": size["image_size"], "n_train": size["n_train"], "n_val": size["n_val"], **summary(lines)}
    record("search_efficiency_quick" if args.quick else "search_efficiency", result, args)


def read_lines(parser: argparse.ArgumentParser, path: Path) -> list[dict]:
    """The search lines (those with a curve) a run of this script printed to `path`."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        parser.error(f"--from-lines {path}: {exc}; give the stdout of an earlier run of this script")
    return [r for r in rows if "curve" in r and "seed" in r]


if __name__ == "__main__":
    main()
