"""Result tables for the terminal (Rich), shared by `search` and `pareto`; no Ray here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table

from gradprom.analysis.pareto import OBJECTIVES, Objective, as_objectives
from gradprom.metrics import task_metric_name


def front_table(rows: list[dict[str, Any]], title: str, objectives: Sequence[str | Objective] = OBJECTIVES,
                limit: int = 20) -> Table:
    """A compact table of front rows: trial, strategy, λ, τ, each objective (↑ maximised, ↓ minimised), and
    the promoted share; the dataset column appears only when rows come from several datasets."""
    pairs = as_objectives(objectives)
    several = len({r.get("dataset") for r in rows}) > 1
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = (["dataset"] if several else []) + ["trial", "strategy", "λ", "τ"] + \
        [f"{_header(name, rows)} {'↑' if d == 'max' else '↓'}" for name, d in pairs] + ["prom."]
    for col in columns:
        table.add_column(col, justify="left" if col in ("dataset", "trial", "strategy") else "right", no_wrap=True)
    for r in rows[:limit]:
        tau = r.get("threshold") if r.get("strategy") == "threshold" else None
        cells = [str(r.get("trial_id", ""))[-5:], str(r.get("strategy", "")), _fmt(r.get("lam"), "{:.3g}"),
                 _fmt(tau, "{:+.2f}")] + [_fmt(r.get(name), "{:.2f}" if "psnr" in name else "{:.3f}")
                                          for name, _ in pairs] + [_fmt(r.get("promoted_frac"), "{:.0%}")]
        table.add_row(*([str(r.get("dataset", ""))] if several else []), *cells)
    if len(rows) > limit:
        table.caption = f"… and {len(rows) - limit} more"
    return table


def _header(name: str, rows: list[dict[str, Any]]) -> str:
    """`task_metric` shown as the metric it copies when every row has the same one: the pipeline's own (r2c_gan:
    f1), else the task's (acc / miou)."""
    from gradprom.trainables import pipeline_info, pipeline_names

    if not name.endswith("task_metric"):
        return name
    pipelines = {str(r.get("pipeline") or "task_driven") for r in rows}
    named = {pipeline_info(p).task_metric if p in pipeline_names() else "" for p in pipelines}
    if len(named) == 1 and (only := named.pop()):
        return name.replace("task_metric", only)
    tasks = {r.get("task", "classification") for r in rows}
    return name.replace("task_metric", task_metric_name(tasks.pop())) if len(tasks) == 1 else name


def _fmt(value: Any, pattern: str) -> str:
    return "–" if value is None or (isinstance(value, float) and value != value) else pattern.format(value)
