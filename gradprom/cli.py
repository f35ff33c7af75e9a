"""The `gradprom` command line: thin; parses, validates, calls one function per command.

Bad input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gradprom.errors import GradpromError

try:  # typer ≥ 0.20 vendors its own click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException, NoArgsIsHelpError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Task-driven medical image enhancement experiments: gradient strategies searched on Ray.")
datasets_app = typer.Typer(help="List the datasets (built-in and real).", invoke_without_command=True)
app.add_typer(datasets_app, name="datasets")
cluster_app = typer.Typer(help="Ray clusters: launch them (Ray's cluster launcher), submit searches as Ray Jobs.",
                          no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
console = Console()


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def command_names() -> set[str]:
    """The gradprom commands and command groups (what may follow `gradprom`)."""
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return names | {g.name for g in app.registered_groups if g.name}


def _echo(text: str) -> None:
    """Text that is not ours (logs, rendered configs): printed as is, never wrapped or styled."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command()
def search(
    space: str = typer.Option("", help="Search space name (see `gradprom spaces`); default lambda_threshold."),
    dataset: str = typer.Option("", help="Dataset name, or several comma-separated (one study each); "
                                         "default synthetic."),
    task: str = typer.Option("classification", help="classification or segmentation."),
    trials: int = typer.Option(12, help="Trials per dataset."),
    epochs: int = typer.Option(6, help="Epochs per trial (the full budget)."),
    out: str = typer.Option("results", help="Folder that holds experiments (OUT/NAME)."),
    name: str = typer.Option("", help="Experiment name; default SPACE-DATASET-TIMESTAMP."),
    seed: int = typer.Option(0, help="Seed of data, models and the Optuna sampler."),
    address: str = typer.Option("", help="Ray cluster: the head's GCS address HEAD:6379, ray://HEAD:10001 (Ray "
                                         "Client) or auto; checked first, with bounded waits. Empty starts Ray "
                                         "locally."),
    degradation: str = typer.Option("", help="Degradation, e.g. gaussian:sigma=0.15 (default of the trial)."),
    data_root: str = typer.Option("", help="Folder holding the real datasets (one folder each); default "
                                           "$GRADPROM_DATA."),
    param: list[str] = typer.Option([], "--param", "-p",
                                    help="Override a setting: KEY=VALUE fixes, KEY=LOW:HIGH ranges, KEY=A,B choices."),
    data_option: list[str] = typer.Option([], "--data-option", "-o",
                                          help="A dataset's own option, KEY=VALUE (e.g. views=4CH, patch_size=256)."),
    skip_bad: bool = typer.Option(False, help="Leave unreadable or inconsistent data files out (and say how many) "
                                              "instead of stopping at the first."),
    eval_dataset: str = typer.Option("", help="Also score each trial's final enhancer on this dataset's test "
                                              "split (eval_* columns)."),
    sampler: str = typer.Option("tpe", help="Optuna sampler: tpe, nsga2 or random."),
    scheduler: str = typer.Option("fifo", help="fifo, or asha to stop weak trials early."),
    metric: str = typer.Option("psnr", help="Metric the ASHA scheduler stops on: psnr, ssim or task_metric."),
    objectives: str = typer.Option("psnr,task_metric", help="What Optuna, the front, the table and the plot "
                                   "optimise: two or more result columns, each NAME or NAME:max/NAME:min, e.g. "
                                   "psnr,acc_ref (the fixed clean-trained reference) or psnr,task_metric (the "
                                   "trial's own recognizer, the paper's protocol)."),
    concurrency: int = typer.Option(0, help="Trials at once; 0 fills the local CPUs (or lets Ray decide)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs per trial worker (fractions allowed)."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs per trial worker (fractions pack trials on a GPU)."),
    workers_per_trial: int = typer.Option(1, help="Data-parallel workers per trial (>1 runs a Ray Train DDP run)."),
    trial_resource: list[str] = typer.Option([], "--trial-resource", help="A custom Ray resource each trial "
                                             "worker needs, NAME=AMOUNT (repeatable), e.g. a node label A100=1."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", help="Forward passes: auto (bf16 autocast on a CUDA GPU, fp32 on the "
                                               "CPU), fp32 or bf16; gradients and the gate stay fp32."),
    compile_: str = typer.Option("off", "--compile", help="torch.compile the models: off, inductor or aot_eager."),
    max_failures: int = typer.Option(1, help="Retry a trial whose process or node died up to N times, from its "
                                             "last checkpoint (a NaN loss or bad data is not retried)."),
    nan_policy: str = typer.Option("fail", help="fail: a NaN/inf loss or gradient fails the trial; skip-step: "
                                                "skip such steps and count them (nan_skips)."),
    resume: bool = typer.Option(False, help="Continue the experiment OUT/NAME."),
    overwrite: bool = typer.Option(False, help="Replace the experiment OUT/NAME."),
) -> None:
    """Search λ, thresholds, strategies or architectures with Optuna on Ray Tune; write Parquet and a front."""
    from gradprom.orchestrator.search import SearchRequest, run_search

    params = list(param) + ([f"degradation={degradation}"] if degradation else []) \
        + ([f"nan_policy={nan_policy}"] if nan_policy != "fail" else []) \
        + ([f"precision={precision}"] if precision != "auto" else []) \
        + ([f"compile={compile_}"] if compile_ != "off" else []) \
        + ([f"data_root={Path(data_root).expanduser().resolve()}"] if data_root else [])
    request = SearchRequest(
        space=space, datasets=_split(dataset), task=task, trials=trials, epochs=epochs, out=out, name=name,
        seed=seed, address=address, concurrency=concurrency, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, workers_per_trial=workers_per_trial, scheduler=scheduler, metric=metric,
        sampler=sampler, params=params, data_options=list(data_option), skip_bad=skip_bad, eval_dataset=eval_dataset,
        device=device, max_failures=max_failures, resume=resume, overwrite=overwrite,
        trial_resources=list(trial_resource), objectives=objectives)
    run_search(request, console)


@app.command()
def protocol(
    name: str = typer.Argument(..., help="Protocol name (see `gradprom protocols`) or your protocol file (.json)."),
    dataset: str = typer.Option("synthetic", help="Dataset name."),
    seeds: int = typer.Option(0, help="Seeds per cell, 0…K−1 (default: the protocol's own, 5 for the shipped "
                                      "ones)."),
    quick: bool = typer.Option(False, help="The protocol's small form (2 strategies, 2 seeds, tiny models)."),
    epochs: int = typer.Option(6, help="Epochs per trial (the quick forms fix their own)."),
    out: str = typer.Option("results", help="Folder that holds experiments (OUT/NAME)."),
    name_: str = typer.Option("", "--name", help="Experiment name; default protocol-NAME-DATASET-TIMESTAMP."),
    eval_dataset: str = typer.Option("", help="The second dataset a cross-domain protocol scores (eval_*)."),
    data_root: str = typer.Option("", help="Folder holding the real datasets; default $GRADPROM_DATA."),
    param: list[str] = typer.Option([], "--param", "-p", help="Fix a setting the grid leaves alone, KEY=VALUE."),
    address: str = typer.Option("", help="Ray cluster address (as for search); empty starts Ray locally."),
    concurrency: int = typer.Option(0, help="Trials at once; 0 fills the local CPUs (or lets Ray decide)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs per trial worker."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue the protocol run OUT/NAME."),
    overwrite: bool = typer.Option(False, help="Replace the experiment OUT/NAME."),
) -> None:
    """Run a fixed grid (strategies × degradations × auxiliaries × seeds) and read it as evidence: mean ± std
    and 95 % CI over seeds, paired t and Wilcoxon tests against the baselines, one verdict per comparison."""
    from gradprom.orchestrator.protocols import run_protocol
    from gradprom.orchestrator.search import SearchRequest

    if seeds < 0:
        raise GradpromError(f"--seeds must be ≥ 1 (or 0 for the protocol's own), got {seeds}")
    params = list(param) + ([f"data_root={Path(data_root).expanduser().resolve()}"] if data_root else [])
    request = SearchRequest(datasets=_split(dataset), epochs=epochs, out=out, name=name_, address=address,
                            concurrency=concurrency, cpus_per_trial=cpus_per_trial, eval_dataset=eval_dataset,
                            device=device, resume=resume, overwrite=overwrite, params=params)
    run_protocol(name, request, console, quick=quick, seeds=seeds)


@app.command()
def protocols() -> None:
    """List the shipped protocols: their grids, seeds and baselines."""
    from gradprom.search_spaces.protocol import load_protocol, protocol_names

    table = Table(title="protocols (gradprom protocol NAME)")
    for col in ("name", "trials", "grid", "seeds", "baselines", "description"):
        table.add_column(col)
    for n in protocol_names():
        p = load_protocol(n)
        grid = "; ".join(f"{axis}: {len(values)}" for axis, values in p.grid.items())
        table.add_row(n, str(len(p.cells())), grid, str(p.seeds), ", ".join(p.baselines), p.description)
    console.print(table)


@app.command()
def train(
    strategy: str = typer.Option("gradprom", help="Gradient strategy (see `gradprom strategies`)."),
    lam: float = typer.Option(1.0, "--lam", help="λ, the weight of the recognition gradient (> 0)."),
    threshold: float = typer.Option(0.0, help="τ of the threshold strategy, in [-1, 1]."),
    dataset: str = typer.Option("synthetic", help="Dataset name."),
    task: str = typer.Option("classification", help="classification or segmentation."),
    epochs: int = typer.Option(6, help="Epochs."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    data_root: str = typer.Option("", help="Folder holding the real datasets; default $GRADPROM_DATA."),
    data_option: list[str] = typer.Option([], "--data-option", "-o", help="A dataset's own option, KEY=VALUE."),
    skip_bad: bool = typer.Option(False, help="Leave bad data files out instead of stopping at the first."),
    eval_dataset: str = typer.Option("", help="Also score the final enhancer on this dataset's test split."),
    nan_policy: str = typer.Option("fail", help="fail, or skip-step: skip steps with a NaN/inf loss or gradient."),
    precision: str = typer.Option("auto", help="auto (bf16 autocast on a CUDA GPU, fp32 on the CPU), fp32 or bf16."),
    compile_: str = typer.Option("off", "--compile", help="torch.compile the models: off, inductor or aot_eager."),
    set_: list[str] = typer.Option([], "--set", help="Any other trial setting, KEY=VALUE (e.g. --set image_size=32)."),
) -> None:
    """Train one trial in a plain loop (no Ray) and print its epochs: for debugging and quick checks."""

    from gradprom.datasets import dataset_options_json
    from gradprom.metrics import task_metric_name
    from gradprom.search_spaces import parse_value
    from gradprom.trainables.config import TrialConfig
    from gradprom.trainables.loop import train_trial

    values: dict[str, object] = {"strategy": strategy, "lam": lam, "threshold": threshold, "dataset": dataset,
                                 "task": task, "epochs": epochs, "seed": seed, "device": device,
                                 "data_root": data_root, "skip_bad": skip_bad, "eval_dataset": eval_dataset,
                                 "nan_policy": nan_policy, "precision": precision, "compile": compile_}
    if data_option:
        values["data_options"] = dataset_options_json(dataset, list(data_option))
    for item in set_:
        key, sep, text = item.partition("=")
        if not sep:
            raise GradpromError(f"--set '{item}' is not KEY=VALUE")
        values[key.strip()] = parse_value(text)
    cfg = TrialConfig.from_dict(values).check_names()
    table = Table(title=f"{cfg.build_strategy().describe()} on {cfg.dataset}/{cfg.task}")
    columns = ("epoch", "psnr", "ssim", "task_metric", "loss_ip", "loss_vr", "promoted_frac", "cos_mean", "step_ms")
    for col in columns:
        table.add_column(col, justify="right")

    def report(metrics: dict, _checkpoint: str | None) -> None:
        table.add_row(*(f"{metrics[c]:.4g}" if isinstance(metrics[c], float) else str(metrics[c]) for c in columns))
        console.print(f"epoch {metrics['epoch']}/{cfg.epochs}: psnr {metrics['psnr']:.2f} "
                      f"task {metrics['task_metric']:.3f}")

    final = train_trial(cfg, report)
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


@app.command()
def pareto(
    experiment_at: str = typer.Argument(..., metavar="EXPERIMENT", help="An experiment folder OUT/NAME, or its "
                                        "storage URI (s3://…, gs://…, file://…)."),
    plot: Path | None = typer.Option(None, help="Write the PSNR-vs-task scatter with the front drawn to this PNG."),
    on: str = typer.Option("val", help="Front on the validation (val, what the search optimised) or test split."),
    telemetry: str = typer.Option("", help="Trial ids (comma-separated, or 'front') whose gate telemetry to plot: "
                                           "cosine per step, promoted fraction per epoch (OUT/NAME/telemetry.png)."),
) -> None:
    """Print the Pareto front of an experiment (PSNR vs task metric) and optionally plot it."""
    from gradprom.metrics import task_metric_name
    from gradprom.orchestrator.pareto import front_rows
    from gradprom.orchestrator.plots import plot_front
    from gradprom.orchestrator.results import TRIALS, read_rows
    from gradprom.orchestrator.storage import is_uri, local_folder, publish
    from gradprom.orchestrator.tables import front_table

    if on not in ("val", "test"):
        raise GradpromError(f"--on must be val or test, got '{on}'")
    experiment = local_folder(experiment_at)
    rows = read_rows(experiment / TRIALS)
    if on == "test":
        for r in rows:
            r["test_task_metric"] = r.get(f"test_{task_metric_name(r.get('task', 'classification'))}")
    objectives = ("psnr", "task_metric") if on == "val" else ("test_psnr", "test_task_metric")
    front = front_rows(rows, objectives)
    console.print(front_table(front, f"Pareto front ({on}): {len(front)} of {len(rows)} trials", objectives))
    if plot is not None:
        console.print(f"plot written to {plot_front(rows, plot, objectives, title=experiment.name)}")
    if telemetry:
        from gradprom.orchestrator.plots import plot_telemetry
        from gradprom.orchestrator.results import EPOCHS

        wanted = [r["trial_id"] for r in front] if telemetry == "front" else _split(telemetry)
        chosen = [next((r for r in rows if r["trial_id"] == tid), None) for tid in wanted]
        missing = [tid for tid, r in zip(wanted, chosen, strict=True) if r is None]
        if missing:
            raise GradpromError(f"no trial '{missing[0]}' in {experiment.name}; its trials: "
                                f"{', '.join(r['trial_id'] for r in rows)}")
        path = plot_telemetry(read_rows(experiment / EPOCHS), chosen, experiment / "telemetry.png",
                              title=f"gate telemetry · {experiment.name}")
        publish(experiment, path.name)
        console.print(f"telemetry plot written to {path}" + (f" and {experiment_at}/{path.name}"
                                                              if is_uri(experiment_at) else ""))


@app.command()
def spaces() -> None:
    """List the named search spaces."""
    from gradprom.search_spaces import load_space, space_names

    table = Table(title="search spaces")
    for col in ("name", "fixed", "searched", "description"):
        table.add_column(col)
    for n in space_names():
        s = load_space(n)
        fixed = ", ".join(f"{k}={v}" for k, v in s.fixed.items())
        table.add_row(n, fixed, ", ".join(s.params), s.description)
    console.print(table)


@app.command()
def strategies() -> None:
    """List the gradient strategies and their options."""
    from gradprom.strategies import STRATEGIES, strategy_names, strategy_options

    table = Table(title="gradient strategies")
    for col in ("name", "trains recognizer", "options", "rule"):
        table.add_column(col)
    for n in strategy_names():
        cls = STRATEGIES.get(n)
        table.add_row(n, "yes" if cls.trains_recognizer else "no", ", ".join(strategy_options(n)),
                      STRATEGIES.meta(n).get("help", ""))
    console.print(table)


@datasets_app.callback()
def datasets(ctx: typer.Context) -> None:
    """List the datasets, their tasks and options, and the degradations."""
    if ctx.invoked_subcommand is not None:
        return
    from gradprom.datasets import dataset_info, dataset_names, degradation_names
    from gradprom.datasets.base import MANAGED_OPTIONS

    table = Table(title="datasets")
    for col in ("name", "tasks", "options (-o KEY=VALUE)", "description"):
        table.add_column(col)
    for n in dataset_names():
        info = dataset_info(n)
        options = "; ".join(f"{k}={v}" for k, v in info["options"].items() if k not in MANAGED_OPTIONS)
        table.add_row(n, ", ".join(info["tasks"]), options, str(info.get("help", "")))
    console.print(table)
    console.print(f"degradations: {', '.join(degradation_names())} (e.g. --degradation gaussian:sigma=0.15)")


@datasets_app.command("check")
def datasets_check(
    name: str = typer.Argument(..., help="Dataset name (see `gradprom datasets`)."),
    data_root: str = typer.Option("", help="Folder holding the real datasets; default $GRADPROM_DATA."),
    task: str = typer.Option("", help="Check this task only; default every task whose files are present."),
    image_size: int = typer.Option(48, help="Size the samples are decoded at (as trials would)."),
    seed: int = typer.Option(0, help="Seed of the carved splits."),
) -> None:
    """Validate a dataset's layout and every file; print counts per split and class; list each bad file.

    Exits 0 only when every file is good."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from gradprom.datasets.check import check_dataset

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        bars: dict[str, object] = {}

        def step(t: str, done: int, total: int) -> None:
            if t not in bars:
                bars[t] = progress.add_task(f"checking {name}/{t}", total=total)
            progress.update(bars[t], completed=done)

        report = check_dataset(name, data_root=data_root, task=task, image_size=image_size, seed=seed, step=step)
    for counts in report.counts:
        table = Table(title=f"{name} / {counts.task}", caption="images per class" if counts.task == "classification"
                      else "images showing each label")
        for col in ("class", "train", "val", "test", "total"):
            table.add_column(col, justify="left" if col == "class" else "right")
        splits = ("train", "val", "test")
        for i, cls in enumerate(counts.class_names):
            row = [counts.per_class.get(s, [0] * len(counts.class_names))[i] for s in splits]
            table.add_row(cls, *map(str, row), str(sum(row)))
        table.add_row("[bold]samples[/bold]", *(str(counts.samples[s]) for s in splits),
                      str(sum(counts.samples.values())))
        console.print(table)
    for task_name, why in report.absent:
        console.print(f"{task_name}: not checked, its files are not there ({why})", highlight=False, soft_wrap=True)
    for problem in report.problems:
        console.print(f"[red]layout:[/red] {problem}", highlight=False, soft_wrap=True)
    if report.bad:
        console.print(f"[red]{len(report.bad)} bad file(s):[/red]")
        for line in report.bad:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    if not report.ok:
        what = [f"{len(report.bad)} bad file(s)"] if report.bad else []
        what += [f"{len(report.problems)} layout problem(s)"] if report.problems else []
        raise GradpromError(f"{name}: {' and '.join(what)} (listed above); re-download or fix them, or search with "
                            "--skip-bad to leave bad files out")
    console.print(f"[green]{name}: all {report.total} samples are good[/green]")


# --- gradprom cluster ---------------------------------------------------------------------------------------

_CONFIG_HELP = "Cluster config: a shipped template name (see `gradprom cluster templates`) or your YAML file."
_SOURCE_HELP = "The gradprom checkout the nodes install; default the one this gradprom runs from."


def _launcher_command(verb: list[str], config: str, source: str, dry_run: bool, tail: list[str] = ()) -> None:
    from gradprom.cluster.launcher import ray_command, rendered_config

    _, path = rendered_config(config, source, create_token=not dry_run and verb[0] == "up")
    if dry_run:
        _echo(f"rendered and validated by Ray: {path}")
        _echo(path.read_text())
    ray_command([*verb, str(path), *tail], dry_run, _echo)


@cluster_app.command("up")
def cluster_up(config: str = typer.Argument(..., help=_CONFIG_HELP),
               source: str = typer.Option("", help=_SOURCE_HELP),
               dry_run: bool = typer.Option(False, "--dry-run", help="Render, validate and print; start nothing.")
               ) -> None:
    """Start or update a cluster with Ray's launcher (`ray up`), gradprom installed on every node."""
    _launcher_command(["up", "-y"], config, source, dry_run)


@cluster_app.command("down")
def cluster_down(config: str = typer.Argument(..., help=_CONFIG_HELP),
                 source: str = typer.Option("", help=_SOURCE_HELP),
                 dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run.")) -> None:
    """Tear a cluster down (`ray down`)."""
    _launcher_command(["down", "-y"], config, source, dry_run)


@cluster_app.command("status")
def cluster_status(config: str = typer.Argument(..., help=_CONFIG_HELP),
                   source: str = typer.Option("", help=_SOURCE_HELP),
                   dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run.")) -> None:
    """Nodes, resources and pending demands of a cluster (`ray status`, run on its head over SSH)."""
    _launcher_command(["exec"], config, source, dry_run,
                      ["RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$HOME/.ray/auth_token ray status"])


@cluster_app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cluster_submit(
    ctx: typer.Context,
    address: str = typer.Option("", help="The cluster's Jobs API, http://HEAD:8265 (default $RAY_ADDRESS when "
                                         "it is an http address); or give a cluster config before `--`."),
    source: str = typer.Option("", help=_SOURCE_HELP),
    wait: bool = typer.Option(False, help="Follow the job's log until it ends; exit 0 only if it succeeded."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the job (entrypoint, runtime env); submit nothing."),
) -> None:
    """Run a gradprom command on a cluster as a Ray Job: `gradprom cluster submit [CONFIG] -- search …`.

    The gradprom package travels with the job (its runtime env), so the nodes run this very code."""
    from gradprom.cluster.launcher import (
        JobFailed,
        follow_job,
        job_entrypoint,
        job_runtime_env,
        submit_job,
        submit_target,
    )
    from gradprom.orchestrator.storage import is_uri

    config, args = submit_target(list(ctx.args), address or _env_jobs_address())
    if config and address:
        raise GradpromError(f"give a cluster config ({config}) or --address, not both")
    entrypoint = job_entrypoint(args)
    out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"), "")
    if args[0] == "search" and not (is_uri(out) or Path(out).is_absolute()):
        console.print("[yellow]--out is not an absolute path or a storage URI: results land on the head node's "
                      "disk, in the job's working folder; use shared storage (s3://…, gs://…, an NFS path)[/yellow]")
    address = address or ("" if config else _env_jobs_address())
    if not config and not address:
        raise GradpromError("where should the job run? pass --address http://HEAD:8265 or a cluster config "
                            "before `--` (e.g. gradprom cluster submit aws-gpu -- search …)")
    if dry_run:
        _echo(f"would submit to {address or f'{config} (through `ray dashboard`)'}:\n  entrypoint: {entrypoint}\n"
              f"  runtime_env: {job_runtime_env()}")
        return

    with _job_address(address, config, source) as at:
        job_id = submit_job(at, entrypoint)
        console.print(f"submitted job [bold]{job_id}[/bold] to {at}")
        if not wait:
            where = f"--address {address}" if address else config
            console.print(f"follow it: gradprom cluster logs {job_id} {where} --follow · stop it: "
                          f"gradprom cluster stop {job_id} {where}", highlight=False)
            return
        status = follow_job(at, job_id, _echo)
    if status != "SUCCEEDED":
        raise JobFailed(f"job {job_id} ended {status} (its log is above)")
    console.print(f"[green]job {job_id} succeeded[/green]")


def _env_jobs_address() -> str:
    """$RAY_API_SERVER_ADDRESS or $RAY_ADDRESS when it is a Jobs API (http) address, else ''."""
    env = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith("http") else ""


def _job_address(address: str, config: str, source: str) -> Any:
    """The Jobs API address for the block: through the SSH tunnel for a cluster config, else `address` (or the
    environment's)."""
    from contextlib import nullcontext

    from gradprom.cluster.launcher import dashboard_tunnel, rendered_config

    if config:
        return dashboard_tunnel(rendered_config(config, source)[1])
    address = address or _env_jobs_address()
    if not address:
        raise GradpromError("pass --address http://HEAD:8265 (or a cluster config) to reach the job")
    return nullcontext(address)


@cluster_app.command("logs")
def cluster_logs(job: str = typer.Argument(..., help="Job id (from `submit`)."),
                 config: str = typer.Argument("", help=_CONFIG_HELP + " Or --address."),
                 address: str = typer.Option("", help="The cluster's Jobs API, http://HEAD:8265."),
                 source: str = typer.Option("", help=_SOURCE_HELP),
                 follow: bool = typer.Option(False, "--follow", "-f", help="Print until the job ends.")) -> None:
    """Print a job's log."""
    from gradprom.cluster.launcher import follow_job, jobs_client

    with _job_address(address, config, source) as at:
        if follow:
            status = follow_job(at, job, _echo)
            console.print(f"job {job}: {status}")
        else:
            _echo(jobs_client(at).get_job_logs(job))


@cluster_app.command("stop")
def cluster_stop(job: str = typer.Argument(..., help="Job id (from `submit`)."),
                 config: str = typer.Argument("", help=_CONFIG_HELP + " Or --address."),
                 address: str = typer.Option("", help="The cluster's Jobs API, http://HEAD:8265."),
                 source: str = typer.Option("", help=_SOURCE_HELP)) -> None:
    """Stop a running job; the trials it finished stay saved, and `search --resume` continues it."""
    from gradprom.cluster.launcher import jobs_client

    with _job_address(address, config, source) as at:
        stopped = jobs_client(at).stop_job(job)
    console.print(f"job {job}: {'stop requested' if stopped else 'was not running'}")


@cluster_app.command("templates")
def cluster_templates(
    write: str = typer.Option("", help="Write this template out to edit (see the list)."),
    dest: Path = typer.Option(Path("."), help="Folder (or file) to write it to."),
    overwrite: bool = typer.Option(False, help="Replace an existing file."),
) -> None:
    """List the shipped cluster configs, or write one out to edit."""
    from gradprom.cluster.templates import TEMPLATES, write_template

    if write:
        path = write_template(write, dest, overwrite=overwrite)
        console.print(f"wrote {path}; edit it, then: gradprom cluster up {path} --dry-run")
        return
    table = Table(title="shipped cluster configs")
    for col in ("name", "kind", "file", "what"):
        table.add_column(col)
    for name, (file, what, kind) in TEMPLATES.items():
        table.add_row(name, kind, file, what)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors become one line and exit code 2."""
    from gradprom.plugins import load_plugins

    try:
        load_plugins()
        app(args=argv, prog_name="gradprom", standalone_mode=False)  # `gradprom …` however it was started
    except GradpromError as exc:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        return getattr(exc, "exit_code", 2)
    except NoArgsIsHelpError as exc:
        Console(stderr=True).print(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except ClickException as exc:  # bad option, missing value, wrong type: one line, not a usage box
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path if ctx is not None else 'gradprom'} --help"  # the (sub)command that refused
        message = " ".join(exc.format_message().split())
        Console(stderr=True).print(f"[bold red]error:[/bold red] {message} (see `{where}`)", highlight=False,
                                   soft_wrap=True)
        return 2
    except typer.Abort:
        Console(stderr=True).print("aborted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
