"""Live progress of a search (Rich): trials done / running / failed and the best front so far."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gradprom.orchestrator.pareto import front_rows


def front_table(rows: list[dict[str, Any]], title: str, metric_names: tuple[str, ...] = ("psnr", "task_metric"),
                limit: int = 20) -> Table:
    """A compact table of front rows that fits 80 columns: trial, strategy, λ, τ, PSNR, SSIM, task, ref, promoted.

    `task` is the trial's own recognizer on the enhanced images, `ref` the fixed clean-trained one; the
    dataset column appears only when rows come from several datasets.
    """
    prefix = "test_" if metric_names[0].startswith("test_") else ""
    several = len({r.get("dataset") for r in rows}) > 1
    metric = "acc" if all(r.get("task", "classification") == "classification" for r in rows) else "miou"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = (["dataset"] if several else []) + ["trial", "strategy", "λ", "τ", "PSNR", "SSIM", metric, "ref",
                                                  "prom."]
    for col in columns:
        table.add_column(col, justify="left" if col in ("dataset", "trial", "strategy") else "right", no_wrap=True)
    for r in rows[:limit]:
        task_metric = "acc" if r.get("task") == "classification" else "miou"
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


class SearchProgress(Callback):
    """A Tune callback driving a Rich live display; it only reads results, never changes the search."""

    def __init__(self, total: int, label: str, console: Console, budget: int, base: dict[str, Any]) -> None:
        self.total, self.budget, self.base = total, budget, dict(base)
        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task(label, total=total, status="starting Ray…")
        self.last: dict[str, dict[str, Any]] = {}
        self.done: dict[str, str] = {}
        self.running: set[str] = set()
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=True)

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment state; the live display stays behind."""
        state = dict(self.__dict__)
        for key in ("console", "progress", "live"):
            state[key] = None
        return state

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def __enter__(self) -> SearchProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._refresh()
        self.live.__exit__(*exc)

    def _render(self) -> Group:
        failed = sum(1 for s in self.done.values() if s == "failed")
        status = f"running {len(self.running)} · failed {failed}"
        self.progress.update(self.task, completed=len(self.done), status=status)
        rows = [{**r, "status": "completed" if self.done.get(t) == "completed" else "partial"}
                for t, r in self.last.items()]
        front = front_rows(rows)
        parts: list[Any] = [self.progress]
        if front:
            parts.append(front_table(front, f"front so far ({len(front)} trials)", limit=8))
        return Group(*parts)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._refresh()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last[trial.trial_id] = {**self.base, **trial.config, **result, "trial_id": trial.trial_id}
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        epoch = self.last.get(trial.trial_id, {}).get("epoch", 0)
        self.done[trial.trial_id] = "completed" if epoch >= self.budget else "stopped"
        self._refresh()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done[trial.trial_id] = "failed"
        self._refresh()
