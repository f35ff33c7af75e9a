"""Progress of a search: a live Rich display in a terminal, plain lines in a log.

Two parts, because Tune pickles its callbacks with the experiment state: `SearchProgress` (the Tune
callback) holds only plain counters and pushes them to whichever display is open in this process, so a
callback restored by `--resume` drives the new display too. Where stdout is not a terminal (a CI log,
`nohup`, a Ray Job's log that `gradprom cluster logs --follow` reads) `LogLines` prints one line when a
study starts, one per trial as it ends and a heartbeat while trials run, each flushed at once.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gradprom.analysis.pareto import OBJECTIVES, as_objectives, front_rows
from gradprom.analysis.tables import front_table
from gradprom.results.rows import trial_status

#: seconds between heartbeat lines in a log ($GRADPROM_HEARTBEAT_S overrides it)
HEARTBEAT_S = 60.0

_active: Display | None = None
_ledger: SearchProgress | None = None  # the callback the running Tune loop uses (after --resume, its restored copy)


class Display:
    """What both displays share: the study's label and size, its clock, and the ETA from the trials that ended."""

    def __init__(self, label: str, total: int, console: Console) -> None:
        self.label, self.total, self.console = label, total, console
        self.started = time.monotonic()

    def __enter__(self) -> Display:
        global _active
        _active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active
        _active = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self, state: SearchProgress) -> str:
        """Time left at the pace so far: this run's elapsed time over the trials that ended in it, times the
        trials left ('–' until one has ended)."""
        left, ended_here = self.total - len(state.done), len(state.done) - state.before
        if left <= 0:
            return "0s"
        return clock(self.elapsed() / ended_here * left) if ended_here > 0 else "–"

    def show(self, state: SearchProgress) -> None:
        """Redraw after any change."""

    def ended(self, state: SearchProgress, trial_id: str) -> None:
        """One trial ended (its status is in `state.done`)."""
        self.show(state)

    def beat(self, state: SearchProgress) -> None:
        """Called on every step of Tune's loop; a display decides whether it is time to say something."""


class LiveDisplay(Display):
    """A progress bar (done/total, running, failed, elapsed, ETA) and the front so far, redrawn as results arrive."""

    def __init__(self, label: str, total: int, console: Console, status: str = "starting trials…") -> None:
        super().__init__(label, total, console)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task(label, total=total, status=status)
        # once a second is enough for trials that take minutes (the elapsed clock); results redraw on arrival
        self.live = Live(Group(self.progress), console=console, refresh_per_second=1, transient=True)

    def __enter__(self) -> LiveDisplay:
        super().__enter__()
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self.live.__exit__(*exc)

    def show(self, state: SearchProgress) -> None:
        self.progress.update(self.task, completed=len(state.done), status=f"running {len(state.running)} · failed "
                             f"{state.failed()} · ETA {self.eta(state)}")
        front = state.front()
        parts: list[Any] = [self.progress]
        if front:
            parts.append(front_table(front, f"front so far ({len(front)} trials)", state.objectives, limit=8))
        self.live.update(Group(*parts))


class LogLines(Display):
    """Plain lines for a log: the study's start, each trial's end with its objectives, a heartbeat."""

    def __init__(self, label: str, total: int, console: Console, status: str = "") -> None:
        super().__init__(label, total, console)
        self.every = float(os.environ.get("GRADPROM_HEARTBEAT_S") or HEARTBEAT_S)
        self.last_line = time.monotonic()
        self.say(f"study {label}: {total} trials" + (f" · {status}" if status else ""))

    def say(self, text: str) -> None:
        self.console.print(f"[{clock(self.elapsed())}] {text}", highlight=False, markup=False, soft_wrap=True)
        self.console.file.flush()
        self.last_line = time.monotonic()

    def ended(self, state: SearchProgress, trial_id: str) -> None:
        last = state.last.get(trial_id, {})
        figures = " ".join(f"{name}={_number(last.get(name))}" for name, _ in state.objectives)
        done = len(state.done)
        self.say(f"trial {trial_id} {state.done[trial_id]}" + (f" {figures}" if last else "") +
                 f" · {done}/{self.total} done · elapsed {clock(self.elapsed())} · ETA {self.eta(state)}")

    def beat(self, state: SearchProgress) -> None:
        if time.monotonic() - self.last_line >= self.every:
            self.say(f"running {len(state.running)} · {len(state.done)}/{self.total} done · failed {state.failed()} · "
                     f"front so far {len(state.front())} trial(s)")


def open_display(label: str, total: int, console: Console, status: str) -> Display:
    """The live display in a terminal, plain lines anywhere else."""
    kind = LiveDisplay if console.is_terminal else LogLines
    return kind(label, total, console, status=status)


def clock(seconds: float) -> str:
    """3725 → '1h02m05s'; 65 → '1m05s'; 5 → '5s'."""
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


class SearchProgress(Callback):
    """A Tune callback that only reads results (never changes the search) and keeps plain state."""

    def __init__(self, budget: int, base: dict[str, Any],
                 objectives: tuple[tuple[str, str], ...] = as_objectives(OBJECTIVES)) -> None:
        self.budget, self.base, self.objectives = budget, dict(base), tuple(objectives)
        self.last: dict[str, dict[str, Any]] = {}
        self.done: dict[str, str] = {}
        self.running: set[str] = set()
        self.before = 0  # trials that had ended before this run (a resumed search): not part of its pace
        global _ledger
        _ledger = None  # a new study's callback: the last study's is done with

    def setup(self, **info: Any) -> None:
        global _ledger
        self.before = len(self.done)
        _ledger = self

    def get_state(self) -> dict[str, Any]:
        """What Tune checkpoints with the experiment (a resumed run restores it): which trials ended, and how."""
        return {"done": dict(self.done), "last": dict(self.last)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.done, self.last = dict(state["done"]), dict(state["last"])
        self.before = len(self.done)

    def failed(self) -> int:
        return sum(1 for s in self.done.values() if s == "failed")

    def front(self) -> list[dict[str, Any]]:
        rows = [{**r, "status": "completed" if self.done.get(t) == "completed" else "partial"}
                for t, r in self.last.items()]
        return front_rows(rows, self.objectives)

    def _push(self, ended: str = "") -> None:
        if _active is not None:
            _active.ended(self, ended) if ended else _active.show(self)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if _active is not None:
            _active.beat(self)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._push()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last[trial.trial_id] = {**self.base, **trial.config, **result, "trial_id": trial.trial_id}
        self._push()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done[trial.trial_id] = trial_status(self.last.get(trial.trial_id, {}), self.budget)
        self._push(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done[trial.trial_id] = "failed"
        self._push(trial.trial_id)


def ended_trials(fallback: SearchProgress) -> dict[str, str]:
    """Trial id -> how it ended, for every trial of the study that ended, this run or before a --resume: kept by the
    callback Tune ran (Tune pickles callbacks with the experiment, so a resumed run uses a restored copy)."""
    return dict((_ledger or fallback).done)
