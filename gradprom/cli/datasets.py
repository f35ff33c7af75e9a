"""`gradprom datasets`: list the datasets and degradations; `datasets check` validates one on disk."""

from __future__ import annotations

import typer
from rich.table import Table

from gradprom.cli.options import DATA_OPTION, DATA_ROOT, console
from gradprom.errors import GradpromError

app = typer.Typer(help="List the datasets (built-in and real).", invoke_without_command=True)


@app.callback()
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


@app.command("check")
def datasets_check(
    name: str = typer.Argument(..., help="Dataset name (see `gradprom datasets`)."),
    data_root: str = DATA_ROOT,
    task: str = typer.Option("", help="Check this task only; default every task whose files are present."),
    image_size: int = typer.Option(48, help="Size the samples are decoded at (as trials would)."),
    seed: int = typer.Option(0, help="Seed of the carved splits."),
    data_option: list[str] = DATA_OPTION,
) -> None:
    """Validate a dataset's layout and every file; print counts per split and class; list each bad file.

    Exits 0 only when every file is good."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from gradprom.datasets import parse_dataset_options
    from gradprom.datasets.check import check_dataset

    options = parse_dataset_options(name, list(data_option))

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        bars: dict[str, object] = {}

        def step(t: str, done: int, total: int) -> None:
            if t not in bars:
                bars[t] = progress.add_task(f"checking {name}/{t}", total=total)
            progress.update(bars[t], completed=done)

        report = check_dataset(name, data_root=data_root, task=task, image_size=image_size, seed=seed, step=step,
                               options=options)
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
