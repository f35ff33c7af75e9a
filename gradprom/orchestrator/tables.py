"""Result tables for the terminal (Rich), shared by `search` and `pareto`; no Ray here."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from gradprom.metrics import task_metric_name


def front_table(rows: list[dict[str, Any]], title: str, metric_names: tuple[str, ...] = ("psnr", "task_metric"),
                limit: int = 20) -> Table:
    """A compact table of front rows that fits 80 columns: trial, strategy, λ, τ, PSNR, SSIM, task, ref, promoted.

    `task` is the trial's own recognizer on the enhanced images, `ref` the fixed clean-trained one; the
    dataset column appears only when rows come from several datasets.
    """
    prefix = "test_" if metric_names[0].startswith("test_") else ""
    several = len({r.get("dataset") for r in rows}) > 1
    metric = "acc" if all(r.get("task", "classification") == "classification" for r in rows) else "task"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = (["dataset"] if several else []) + ["trial", "strategy", "λ", "τ", "PSNR", "SSIM", metric, "ref",
                                                  "prom."]
    for col in columns:
        table.add_column(col, justify="left" if col in ("dataset", "trial", "strategy") else "right", no_wrap=True)
    for r in rows[:limit]:
        task_metric = task_metric_name(r.get("task", "classification"))
        tau = r.get("threshold") if r.get("strategy") == "threshold" else None
        cells = [str(r.get("trial_id", ""))[-5:], str(r.get("strategy", "")), _fmt(r.get("lam"), "{:.3g}"),
                 _fmt(tau, "{:+.2f}"), _fmt(r.get(metric_names[0]), "{:.2f}"), _fmt(r.get(f"{prefix}ssim"), "{:.3f}"),
                 _fmt(r.get(metric_names[1]), "{:.3f}"), _fmt(r.get(f"{prefix}{task_metric}_ref"), "{:.3f}"),
                 _fmt(r.get("promoted_frac"), "{:.0%}")]
        table.add_row(*([str(r.get("dataset", ""))] if several else []), *cells)
    if len(rows) > limit:
        table.caption = f"… and {len(rows) - limit} more"
    return table


def _fmt(value: Any, pattern: str) -> str:
    return "–" if value is None or (isinstance(value, float) and value != value) else pattern.format(value)
