"""The verbs that list what a run can name: `spaces`, `protocols`, `strategies`, `pipelines`, `models`,
`settings`."""

from __future__ import annotations

import typer
from rich.table import Table

from gradprom.cli.options import console

app = typer.Typer()


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
def strategies() -> None:
    """List the gradient strategies and their options."""
    from gradprom.strategies import STRATEGIES, strategy_names, strategy_options

    table = Table(title="gradient strategies")
    for col in ("name", "trains recognizer", "options", "rule"):
        table.add_column(col)
    for n in strategy_names():
        cls = STRATEGIES.get(n)
        table.add_row(n, "yes" if cls.trains_recognizer else "no", ", ".join(strategy_options(n)),
                      STRATEGIES.meta(n).help)
    console.print(table)


@app.command()
def pipelines() -> None:
    """List the pipelines (kinds of trial): their search spaces, metrics, default objectives and tasks."""
    from gradprom.datasets import dataset_info, dataset_names
    from gradprom.trainables import pipeline_info, pipeline_names

    table = Table(title="pipelines (gradprom search --pipeline NAME)")
    for col in ("name", "spaces", "metrics", "objectives", "tasks", "datasets", "what it trains"):
        table.add_column(col)
    for n in pipeline_names():
        info = pipeline_info(n)
        datasets = info.datasets or [d for d in dataset_names() if set(dataset_info(d)["tasks"]) & set(info.tasks)
                                     and (info.unpaired or not dataset_info(d)["unpaired"])]
        table.add_row(n, ", ".join(info.spaces), ", ".join(info.metrics), ",".join(info.objectives),
                      ", ".join(info.tasks), ", ".join(datasets), info.help)
    console.print(table)


@app.command()
def models() -> None:
    """List the enhancers and recognizers (--enhancer, --recognizer): role, task, where from, what they are."""
    from gradprom.models import MODELS, model_names

    table = Table(title="models (--enhancer NAME, --recognizer NAME; their own arguments: -p enhancer_args=…, "
                        "-p recognizer_args=…)")
    for col in ("name", "role", "task", "from", "what it is"):
        table.add_column(col, no_wrap=col == "name")
    for n in model_names():
        meta = MODELS.meta(n)
        table.add_row(n, " and ".join(meta.roles), meta.task or "", "MONAI" if n.startswith("monai:") else "gradprom",
                      meta.help)
    console.print(table)


@app.command()
def settings() -> None:
    """List every trial setting (what -p/--param, --set and search spaces may name): type, default, allowed
    values and the part that declared it (a plugin's included)."""
    from gradprom.settings import owner_of
    from gradprom.trainables.config import all_settings

    table = Table(title="trial settings (-p NAME=VALUE, -p NAME=LOW:HIGH, -p NAME=A,B)")
    for col in ("name", "type", "default", "values", "declared by", "what it sets"):
        table.add_column(col)
    for name, s in all_settings().items():
        table.add_row(name, s.kind.__name__, repr(s.default), s.allowed(), owner_of(name), s.help)
    console.print(table)
