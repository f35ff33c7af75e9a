"""What orchestration costs: the same N trials (a) by `gradprom search`, (b) by a plain Python loop calling the same
training function in one process, (c) by a minimal hand-written Ray Tune + OptunaSearch script, side by side.

    python benchmarks/orchestration_overhead.py            # 6 trials of about 30 s each, concurrency 1
    python benchmarks/orchestration_overhead.py --quick    # 3 trials of a few seconds, for a smoke check

Each runs as its own process, timed from start to exit (Python start, imports and Ray start included), on the
same configs: (a) samples them (random sampler, seeded), (b) and (c) run exactly the configs (a) recorded. The
reference recognizer is pretrained once before any timing, into a cache all three share. (a) and (b) also run
the first config alone, which splits what orchestration costs into a part paid once per search (Python and Ray
start, the first trial process's imports, shutdown) and a part paid per trial: with d_k = (a) − (b) over k trials,
`per_trial_overhead_s` = (d_N − d_1) / (N − 1) and `per_search_overhead_s` = d_1 − per_trial_overhead_s.
Prints one JSON line per run and a summary with `ratio` = (a)/(b), `ratio_vs_tune` = (a)/(c) and both overheads.
Targets (issue 15): (a)/(b) ≤ 1.10 at concurrency 1 with trials of ~30 s; (a) no slower than (c); ≤ 1 s per trial.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import emit, parse, record  # noqa: E402

#: trial sizes: about 30 s per trial on a 2-core CPU for the full form, a few seconds for --quick
FULL = {"image_size": 32, "n_train": 256, "n_val": 64, "n_test": 64, "enhancer_blocks": 2, "enhancer_channels": 16,
        "recognizer_width": 8, "batch_size": 32, "pretrain_epochs": 2, "threads": 1}
QUICK = {"image_size": 16, "n_train": 32, "n_val": 16, "n_test": 16, "enhancer_blocks": 1, "enhancer_channels": 8,
         "recognizer_width": 4, "batch_size": 16, "pretrain_epochs": 1, "threads": 1}

PLAIN_LOOP = """
import json, sys
from gradprom.trainables import train_trial
for config in json.load(open(sys.argv[1])):
    train_trial(config)
"""

#: what a user writes instead of gradprom: Ray Tune, Optuna's TPE through OptunaSearch, the same training function
HAND_TUNE = """
import json, sys
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch
from gradprom.trainables import train_trial

configs = json.load(open(sys.argv[1]))
ray.init(num_cpus=int(sys.argv[2]), include_dashboard=False, log_to_driver=False)

def trainable(config):
    train_trial({**configs[0], "lam": config["lam"]}, lambda metrics, _ckpt: tune.report(
        {k: v for k, v in metrics.items() if isinstance(v, (int, float))}))

# the same λ values as the other two runs, as the points Optuna evaluates first
search = OptunaSearch(space={"lam": tune.loguniform(1e-3, 10.0)}, metric=["psnr", "task_metric"], mode=["max", "max"],
                      points_to_evaluate=[{"lam": c["lam"]} for c in configs])
tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), tune_config=tune.TuneConfig(
    search_alg=search, num_samples=len(configs), max_concurrent_trials=1),
    run_config=tune.RunConfig(storage_path=sys.argv[3], name="hand", verbose=0))
grid = tuner.fit()
assert not grid.errors, grid.errors
ray.shutdown()
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} … exited {done.returncode}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 trials of a few seconds")
    parser.add_argument("--trials", type=int, default=0, help="trials per run (default 3 with --quick, else 6)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per trial (default 2 with --quick, else 3)")
    args = parse(parser)
    if args.trials == 1 or args.trials < 0:
        parser.error("--trials must be at least 2: the per-trial overhead is the slope between 1 and N trials")
    n, epochs = args.trials or (3 if args.quick else 6), args.epochs or (2 if args.quick else 3)
    settings = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRADPROM_CACHE": str(Path(tmp) / "cache")}
        base = {**settings, "epochs": epochs, "device": "cpu", "strategy": "gradprom",
                "cache_dir": env["GRADPROM_CACHE"]}
        warm = Path(tmp) / "warm.json"  # the reference recognizer, pretrained once into the shared cache
        warm.write_text(json.dumps([{**base, "epochs": 1, "max_steps_per_epoch": 1}]))
        subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(warm)], env=env, check=True, stdout=sys.stderr)

        # (a) gradprom search: λ sampled (random, seeded), one trial at a time; then its first trial alone
        params = [a for k, v in settings.items() for a in ("-p", f"{k}={v}")]
        search_args = [sys.executable, "-m", "gradprom.cli", "search", "--space", "gradprom_lambda", "--epochs",
                       str(epochs), "--concurrency", "1", "--sampler", "random", "--device", "cpu", "--out", tmp,
                       *params]
        search = timed([*search_args, "--trials", str(n), "--name", "a"], env)
        search_1 = timed([*search_args, "--trials", "1", "--name", "a1"], env)  # seeded: the same first λ
        trials = [json.loads(r["config_json"]) for r in _rows(Path(tmp) / "a" / "trials.parquet")]
        configs = [{**c, "cache_dir": env["GRADPROM_CACHE"]} for c in trials]
        listed, first = Path(tmp) / "configs.json", Path(tmp) / "first.json"
        listed.write_text(json.dumps(configs))
        first.write_text(json.dumps(configs[:1]))
        emit({"run": "gradprom_search", "trials": len(configs), "wall_s": round(search, 2)})
        emit({"run": "gradprom_search_1", "trials": 1, "wall_s": round(search_1, 2)})
        # (b) the same configs in a plain loop, one process; then the first one alone
        loop = timed([sys.executable, "-c", PLAIN_LOOP, str(listed)], env)
        loop_1 = timed([sys.executable, "-c", PLAIN_LOOP, str(first)], env)
        emit({"run": "plain_loop", "trials": len(configs), "wall_s": round(loop, 2)})
        emit({"run": "plain_loop_1", "trials": 1, "wall_s": round(loop_1, 2)})
        # (c) the same λ values through a hand-written Ray Tune + OptunaSearch script
        hand = timed([sys.executable, "-c", HAND_TUNE, str(listed), "1", str(Path(tmp) / "hand")], env)
        emit({"run": "hand_ray_tune", "trials": len(configs), "wall_s": round(hand, 2)})
    per_trial = ((search - loop) - (search_1 - loop_1)) / (n - 1)
    result = {"trials": n, "epochs": epochs, "search_s": round(search, 1), "loop_s": round(loop, 1),
              "hand_tune_s": round(hand, 1), "trial_s": round(loop / n, 1), "ratio": round(search / loop, 3),
              "ratio_vs_tune": round(search / hand, 3), "per_trial_overhead_s": round(per_trial, 2),
              "per_search_overhead_s": round(search_1 - loop_1 - per_trial, 2)}
    record("orchestration_overhead_quick" if args.quick else "orchestration_overhead", result, args)


def _rows(path: Path) -> list[dict]:
    from gradprom.results.parquet import read_rows

    return read_rows(path)


if __name__ == "__main__":
    main()
