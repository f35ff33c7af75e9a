"""The verbs that run trials: `search` (Optuna on Ray Tune), `protocol` (a fixed grid, read as evidence) and
`train` (one trial in a plain loop, no Ray)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gradprom.cli.options import (
    ADDRESS,
    COMPILE,
    CONCURRENCY,
    CPUS_PER_TRIAL,
    DATA_OPTION,
    DATA_ROOT,
    DATASET,
    DEGRADATION,
    DEVICE,
    ENHANCER,
    EPOCHS,
    EVAL_DATASET,
    MLFLOW,
    NAN_POLICY,
    OUT,
    OVERWRITE,
    PIPELINE,
    PRECISION,
    RECOGNIZER,
    RESUME,
    SEED,
    SKIP_BAD,
    TASK,
    console,
    split_names,
    trial_settings,
)
from gradprom.errors import GradpromError

app = typer.Typer()

#: `ctx.obj` of a command that should only check its options (no data, no Ray, nothing written): what
#: `gradprom cluster submit` asks before it submits the command as a job
CHECK_ONLY = "check-only"


@app.command()
def search(
    ctx: typer.Context,
    space: str = typer.Option("", help="Search space name (see `gradprom spaces`); default the pipeline's first "
                                       "(lambda_threshold for task_driven, r2c_weights for r2c_gan)."),
    pipeline: str = PIPELINE,
    enhancer: str = ENHANCER,
    recognizer: str = RECOGNIZER,
    dataset: str = typer.Option("", help="Dataset name, or several comma-separated (one study each); "
                                         "default synthetic."),
    task: str = TASK,
    trials: int = typer.Option(12, help="Trials per dataset."),
    epochs: int = EPOCHS,
    out: str = OUT,
    name: str = typer.Option("", help="Experiment name; default SPACE-DATASET-TIMESTAMP."),
    seed: int = SEED,
    address: str = ADDRESS,
    degradation: str = DEGRADATION,
    data_root: str = DATA_ROOT,
    param: list[str] = typer.Option([], "--param", "-p",
                                    help="Override a setting: KEY=VALUE fixes, KEY=LOW:HIGH ranges, KEY=A,B choices."),
    data_option: list[str] = DATA_OPTION,
    skip_bad: bool = SKIP_BAD,
    eval_dataset: str = EVAL_DATASET,
    sampler: str = typer.Option("gp", help="Optuna sampler, seeded by --seed: gp (Gaussian process, started at the "
                                           "space's anchors), tpe, nsga2 or random; auto (OptunaHub) is not "
                                           "offered."),
    scheduler: str = typer.Option("fifo", help="fifo; asha (stops weak trials early on --metric alone); or "
                                             "pareto-asha (stops them on all --objectives: non-dominated sorting at "
                                             "each rung)."),
    metric: str = typer.Option("psnr", help="Metric the ASHA scheduler stops on: psnr, ssim or task_metric."),
    grace_period: int = typer.Option(1, help="asha/pareto-asha: epochs before the first rung."),
    reduction_factor: float = typer.Option(2.0, help="asha/pareto-asha: η; each rung keeps the best 1/η."),
    max_t: int = typer.Option(0, help="asha/pareto-asha: the budget the rungs lead to (0: --epochs)."),
    tiebreak: str = typer.Option("crowding", help="pareto-asha: order within a front by crowding distance or "
                                                  "an ε-net (epsnet)."),
    fidelity_check: int = typer.Option(0, help="asha/pareto-asha: first run N trials fully and trust the first rung "
                                               "only if it ranks each final objective with ρ ≥ --min-rho; else run "
                                               "every trial fully (0: off)."),
    min_rho: float = typer.Option(0.5, help="--fidelity-check: the rank correlation the first rung needs."),
    objectives: str = typer.Option("", help="What Optuna, the front, the table and the plot optimise: two or more "
                                   "result columns, each NAME or NAME:max/NAME:min, e.g. psnr,acc_ref (the fixed "
                                   "clean-trained reference) or psnr,task_metric (the trial's own recognizer, the "
                                   "paper's protocol); default the pipeline's own (psnr,task_metric)."),
    storage: str = typer.Option("", help="Optuna storage for the studies: an RDB URL (sqlite:///f.db, "
                                "postgresql://…); default a journal file OUT/NAME/optuna.journal "
                                "(optuna-dashboard reads both)."),
    warm_start: str = typer.Option("", help="An earlier experiment (OUT/NAME or URI) whose finished trials seed "
                                   "each study's sampler."),
    concurrency: int = CONCURRENCY,
    cpus_per_trial: float = CPUS_PER_TRIAL,
    gpus_per_trial: float = typer.Option(0.0, help="GPUs per trial worker (fractions pack trials on a GPU)."),
    workers_per_trial: int = typer.Option(1, help="Data-parallel workers per trial (>1 runs a Ray Train DDP run)."),
    trial_resource: list[str] = typer.Option([], "--trial-resource", help="A custom Ray resource each trial "
                                             "worker needs, NAME=AMOUNT (repeatable), e.g. a node label A100=1."),
    device: str = DEVICE,
    precision: str = PRECISION,
    compile_: str = COMPILE,
    max_failures: int = typer.Option(1, help="Retry a trial whose process or node died up to N times, from its "
                                             "last checkpoint (a NaN loss or bad data is not retried)."),
    nan_policy: str = NAN_POLICY,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    mlflow: str = MLFLOW,
) -> None:
    """Search λ, thresholds, strategies or architectures with Optuna on Ray Tune; write Parquet and a front."""
    from gradprom.search.driver import run_search
    from gradprom.search.request import SearchRequest

    settings = trial_settings(degradation=degradation, nan_policy=nan_policy, precision=precision,
                              compile=compile_, data_root=data_root, enhancer=enhancer, recognizer=recognizer)
    request = SearchRequest(
        space=space, pipeline=pipeline, datasets=split_names(dataset), task=task, trials=trials, epochs=epochs,
        out=out, name=name, seed=seed, address=address, concurrency=concurrency, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, workers_per_trial=workers_per_trial, scheduler=scheduler, metric=metric,
        grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_t, tiebreak=tiebreak,
        fidelity_check=fidelity_check, min_rho=min_rho,
        sampler=sampler, params=list(param), settings=settings, data_options=list(data_option), skip_bad=skip_bad,
        eval_dataset=eval_dataset, device=device, max_failures=max_failures, resume=resume, overwrite=overwrite,
        trial_resources=list(trial_resource), objectives=objectives, storage=storage, warm_start=warm_start,
        mlflow=mlflow)
    if ctx.obj == CHECK_ONLY:
        from gradprom.search.request import check_offline

        return check_offline(request)
    run_search(request, console)


@app.command()
def protocol(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Protocol name (see `gradprom protocols`) or your protocol file (.json)."),
    dataset: str = DATASET,
    seeds: int = typer.Option(0, help="Seeds per cell, 0…K−1 (default: the protocol's own, 5 for the shipped "
                                      "ones)."),
    quick: bool = typer.Option(False, help="The protocol's small form (2 strategies, 2 seeds, tiny models)."),
    epochs: int = EPOCHS,
    out: str = OUT,
    name_: str = typer.Option("", "--name", help="Experiment name; default protocol-NAME-DATASET-TIMESTAMP."),
    eval_dataset: str = EVAL_DATASET,
    data_root: str = DATA_ROOT,
    param: list[str] = typer.Option([], "--param", "-p", help="Fix a setting the grid leaves alone, KEY=VALUE."),
    address: str = ADDRESS,
    concurrency: int = CONCURRENCY,
    cpus_per_trial: float = CPUS_PER_TRIAL,
    device: str = DEVICE,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    mlflow: str = MLFLOW,
) -> None:
    """Run a fixed grid (strategies × degradations × auxiliaries × seeds) and read it as evidence: mean ± std
    and 95 % CI over seeds, paired t and Wilcoxon tests against the baselines, one verdict per comparison."""
    from gradprom.search.driver import run_protocol
    from gradprom.search.request import SearchRequest

    if seeds < 0:
        raise GradpromError(f"--seeds must be ≥ 1 (or 0 for the protocol's own), got {seeds}")
    request = SearchRequest(datasets=split_names(dataset), epochs=epochs, out=out, name=name_, address=address,
                            concurrency=concurrency, cpus_per_trial=cpus_per_trial, eval_dataset=eval_dataset,
                            device=device, resume=resume, overwrite=overwrite, params=list(param),
                            settings=trial_settings(data_root=data_root), mlflow=mlflow)
    if ctx.obj == CHECK_ONLY:
        from gradprom.search.driver import protocol_request
        from gradprom.search.request import check_offline

        return check_offline(protocol_request(name, request, quick, seeds)[1])
    run_protocol(name, request, console, quick=quick, seeds=seeds)


@app.command()
def train(
    ctx: typer.Context,
    pipeline: str = PIPELINE,
    enhancer: str = ENHANCER,
    recognizer: str = RECOGNIZER,
    strategy: str = typer.Option("gradprom", help="Gradient strategy (see `gradprom strategies`)."),
    lam: float = typer.Option(1.0, "--lam", help="λ, the weight of the recognition gradient (> 0)."),
    threshold: float = typer.Option(0.0, help="τ of the threshold strategy, in [-1, 1]."),
    dataset: str = DATASET,
    task: str = TASK,
    epochs: int = EPOCHS,
    seed: int = SEED,
    device: str = DEVICE,
    data_root: str = DATA_ROOT,
    data_option: list[str] = DATA_OPTION,
    skip_bad: bool = SKIP_BAD,
    eval_dataset: str = EVAL_DATASET,
    nan_policy: str = NAN_POLICY,
    precision: str = PRECISION,
    compile_: str = COMPILE,
    set_: list[str] = typer.Option([], "--set", help="Any other trial setting, KEY=VALUE (e.g. --set image_size=32)."),
    mlflow: str = MLFLOW,
) -> None:
    """Train one trial in a plain loop (no Ray) and print its epochs: for debugging and quick checks."""
    from gradprom.datasets import dataset_options_json
    from gradprom.keyvalue import parse_value, split_pair
    from gradprom.metrics import task_metric_name
    from gradprom.trainables.checks import check_config
    from gradprom.trainables.config import TrialConfig
    from gradprom.trainables.pipeline import train_trial

    values: dict[str, object] = {"strategy": strategy, "lam": lam, "threshold": threshold, "dataset": dataset,
                                 "task": task, "epochs": epochs, "seed": seed, "device": device, "skip_bad": skip_bad,
                                 "eval_dataset": eval_dataset,
                                 **({"pipeline": pipeline} if pipeline else {}),
                                 **trial_settings(nan_policy=nan_policy, precision=precision, compile=compile_,
                                                  data_root=data_root, enhancer=enhancer, recognizer=recognizer)}
    if data_option:
        values["data_options"] = dataset_options_json(dataset, list(data_option))
    for item in set_:
        key, text = split_pair(item, f"--set '{item}' is not KEY=VALUE")
        values[key] = parse_value(text)
    cfg = check_config(TrialConfig.from_dict(values))
    tracker = train_tracker(mlflow, cfg)
    if ctx.obj == CHECK_ONLY:
        return
    table = Table(title=f"{cfg.build_strategy().describe()} on {cfg.dataset}/{cfg.task}")
    columns = ("epoch", "psnr", "ssim", "task_metric", "loss_ip", "loss_vr", "promoted_frac", "cos_mean", "step_ms")
    for col in columns:
        table.add_column(col, justify="right")

    row = {"trial_id": "train", "dataset": cfg.dataset, "config_json": json.dumps(cfg.to_dict(), sort_keys=True)}

    def report(metrics: dict, _checkpoint: str | None) -> None:
        if tracker is not None:
            tracker.epoch(row, metrics)
        table.add_row(*(f"{metrics[c]:.4g}" if isinstance(metrics[c], float) else str(metrics[c]) for c in columns))
        console.print(f"epoch {metrics['epoch']}/{cfg.epochs}: psnr {metrics['psnr']:.2f} "
                      f"task {metrics['task_metric']:.3f}")

    final = train_trial(cfg, report)
    if tracker is not None:
        ended = {**row, **final, "status": "completed", "error": "", "epochs_done": cfg.epochs}
        tracker.end(ended)
        tracker.finish("FINISHED", [], [ended])
    console.print(table)
    metric = task_metric_name(cfg.task)
    if final.get("n_skipped"):
        console.print(f"[yellow]left out {final['n_skipped']} bad file(s) of {cfg.dataset} (--skip-bad); "
                      f"`gradprom datasets check {cfg.dataset}` lists them[/yellow]")
    for prefix, label in (("test_", "test"), ("eval_", f"eval on {cfg.eval_dataset}")):
        if f"{prefix}psnr" not in final:
            continue
        scores = " · ".join(f"{name} {final[prefix + name]:.3f}" for name in (metric, f"{metric}_ref")
                            if prefix + name in final)
        console.print(f"{label}: psnr {final[prefix + 'psnr']:.2f} dB · ssim {final[prefix + 'ssim']:.3f} · "
                      f"{scores} (input psnr {final[prefix + 'psnr_input']:.2f} dB)")


def train_tracker(given: str, cfg: Any) -> Any:
    """`train`'s MLflow runs (--mlflow or $MLFLOW_TRACKING_URI), checked now; None without a URI. One parent per
    run of the command (MLflow experiment `gradprom-train`), its trial nested as a search's are."""
    from gradprom.results.tracking import Tracker, check_store, tracking_uri
    from gradprom.trainables.provenance import versions

    uri = tracking_uri(given)
    if not uri:
        return None
    check_store(uri)
    tracker = Tracker(uri, "gradprom-train", Path(f"train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"))
    tracker.start({"command": "train", **cfg.to_dict()}, versions())
    return tracker
