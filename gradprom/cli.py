"""The `gradprom` command line: thin; parses, validates, calls one function per command.

Bad input ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
console = Console()


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


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
    address: str = typer.Option("", help="Ray cluster address (ray://… or HOST:PORT); empty starts Ray locally."),
    degradation: str = typer.Option("", help="Degradation, e.g. gaussian:sigma=0.15 (default of the trial)."),
    data_root: str = typer.Option("", help="Folder holding the real datasets (one folder each); default "
                                           "$GRADPROM_DATA."),
    param: list[str] = typer.Option([], "--param", "-p",
                                    help="Override a setting: KEY=VALUE fixes, KEY=LOW:HIGH ranges, KEY=A,B choices."),
    sampler: str = typer.Option("tpe", help="Optuna sampler: tpe, nsga2 or random."),
    scheduler: str = typer.Option("fifo", help="fifo, or asha to stop weak trials early."),
    metric: str = typer.Option("psnr", help="Metric the ASHA scheduler stops on: psnr, ssim or task_metric."),
    concurrency: int = typer.Option(0, help="Trials at once; 0 fills the local CPUs (or lets Ray decide)."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs per trial worker (fractions allowed)."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs per trial worker (fractions pack trials on a GPU)."),
    workers_per_trial: int = typer.Option(1, help="Data-parallel workers per trial (>1 runs a Ray Train DDP run)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue the experiment OUT/NAME."),
    overwrite: bool = typer.Option(False, help="Replace the experiment OUT/NAME."),
) -> None:
    """Search λ, thresholds, strategies or architectures with Optuna on Ray Tune; write Parquet and a front."""
    from gradprom.orchestrator.search import SearchRequest, run_search

    params = list(param) + ([f"degradation={degradation}"] if degradation else []) \
        + ([f"data_root={Path(data_root).expanduser().resolve()}"] if data_root else [])
    request = SearchRequest(
        space=space, datasets=_split(dataset), task=task, trials=trials, epochs=epochs, out=out, name=name,
        seed=seed, address=address, concurrency=concurrency, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, workers_per_trial=workers_per_trial, scheduler=scheduler, metric=metric,
        sampler=sampler, params=params, device=device, resume=resume, overwrite=overwrite)
    run_search(request, console)


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
    set_: list[str] = typer.Option([], "--set", help="Any other trial setting, KEY=VALUE (e.g. --set image_size=32)."),
) -> None:
    """Train one trial in a plain loop (no Ray) and print its epochs: for debugging and quick checks."""
    from gradprom.metrics import task_metric_name
    from gradprom.search_spaces import parse_value
    from gradprom.trainables.config import TrialConfig
    from gradprom.trainables.loop import train_trial

    values: dict[str, object] = {"strategy": strategy, "lam": lam, "threshold": threshold, "dataset": dataset,
                                 "task": task, "epochs": epochs, "seed": seed, "device": device,
                                 "data_root": data_root}
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
    console.print(f"test: psnr {final['test_psnr']:.2f} dB · ssim {final['test_ssim']:.3f} · {metric} "
                  f"{final[f'test_{metric}']:.3f} · {metric}_ref {final[f'test_{metric}_ref']:.3f} "
                  f"(input psnr {final['test_psnr_input']:.2f} dB)")


@app.command()
def pareto(
    experiment: Path = typer.Argument(..., help="An experiment folder OUT/NAME."),
    plot: Path | None = typer.Option(None, help="Write the PSNR-vs-task scatter with the front drawn to this PNG."),
    on: str = typer.Option("val", help="Front on the validation (val, what the search optimised) or test split."),
) -> None:
    """Print the Pareto front of an experiment (PSNR vs task metric) and optionally plot it."""
    from gradprom.metrics import task_metric_name
    from gradprom.orchestrator.pareto import front_rows
    from gradprom.orchestrator.plots import plot_front
    from gradprom.orchestrator.results import TRIALS, read_rows
    from gradprom.orchestrator.tables import front_table

    if on not in ("val", "test"):
        raise GradpromError(f"--on must be val or test, got '{on}'")
    rows = read_rows(experiment / TRIALS)
    if on == "test":
        for r in rows:
            r["test_task_metric"] = r.get(f"test_{task_metric_name(r.get('task', 'classification'))}")
    objectives = ("psnr", "task_metric") if on == "val" else ("test_psnr", "test_task_metric")
    front = front_rows(rows, objectives)
    console.print(front_table(front, f"Pareto front ({on}): {len(front)} of {len(rows)} trials", objectives))
    if plot is not None:
        console.print(f"plot written to {plot_front(rows, plot, objectives, title=experiment.name)}")


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
    """List the datasets, their tasks, and the degradations."""
    if ctx.invoked_subcommand is not None:
        return
    from gradprom.datasets import dataset_info, dataset_names, degradation_names

    table = Table(title="datasets")
    for col in ("name", "tasks", "description"):
        table.add_column(col)
    for n in dataset_names():
        info = dataset_info(n)
        table.add_row(n, ", ".join(info["tasks"]), str(info.get("help", "")))
    console.print(table)
    console.print(f"degradations: {', '.join(degradation_names())} (e.g. --degradation gaussian:sigma=0.15)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors become one line and exit code 2."""
    from gradprom.plugins import load_plugins

    try:
        load_plugins()
        app(args=argv, standalone_mode=False)
    except GradpromError as exc:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        return getattr(exc, "exit_code", 2)
    except NoArgsIsHelpError as exc:
        Console(stderr=True).print(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except ClickException as exc:  # bad option, missing value, wrong type: one line, not a usage box
        where = f"gradprom {exc.ctx.info_name} --help" if getattr(exc, "ctx", None) else "gradprom --help"
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
