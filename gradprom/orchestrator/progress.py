"""Live progress of a search (Rich): trials done / running / failed and the best front so far.

Two parts, because Tune pickles its callbacks with the experiment state: `SearchProgress` (the Tune
callback) holds only plain counters and pushes them to whichever `LiveDisplay` is open in this
process, so a callback restored by `--resume` drives the new display too.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gradprom.orchestrator.pareto import OBJECTIVES, as_objectives, front_rows
from gradprom.orchestrator.rows import end_status
from gradprom.orchestrator.tables import front_table

_active: LiveDisplay | None = None


class LiveDisplay:
    """A progress bar and the front so far, redrawn as results arrive; a context manager."""

    def __init__(self, label: str, total: int, console: Console, status: str = "starting trials…") -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task(label, total=total, status=status)
        # once a second is enough for trials that take minutes (the elapsed clock); results redraw on arrival
        self.live = Live(Group(self.progress), console=console, refresh_per_second=1, transient=True)

    def __enter__(self) -> LiveDisplay:
        global _active
        self.live.__enter__()
        _active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active
        _active = None
        self.live.__exit__(*exc)

    def show(self, state: SearchProgress) -> None:
        failed = sum(1 for s in state.done.values() if s == "failed")
        self.progress.update(self.task, completed=len(state.done),
                             status=f"running {len(state.running)} · failed {failed}")
        rows = [{**r, "status": "completed" if state.done.get(t) == "completed" else "partial"}
                for t, r in state.last.items()]
        front = front_rows(rows, state.objectives)
        parts: list[Any] = [self.progress]
        if front:
            parts.append(front_table(front, f"front so far ({len(front)} trials)", state.objectives, limit=8))
        self.live.update(Group(*parts))


class SearchProgress(Callback):
    """A Tune callback that only reads results (never changes the search) and keeps plain state."""

    def __init__(self, budget: int, base: dict[str, Any],
                 objectives: tuple[tuple[str, str], ...] = as_objectives(OBJECTIVES)) -> None:
        self.budget, self.base, self.objectives = budget, dict(base), tuple(objectives)
        self.last: dict[str, dict[str, Any]] = {}
        self.done: dict[str, str] = {}
        self.running: set[str] = set()

    def _push(self) -> None:
        if _active is not None:
            _active.show(self)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._push()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last[trial.trial_id] = {**self.base, **trial.config, **result, "trial_id": trial.trial_id}
        self._push()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        last = self.last.get(trial.trial_id, {})
        self.done[trial.trial_id] = end_status(last, self.budget)
        self._push()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done[trial.trial_id] = "failed"
        self._push()
