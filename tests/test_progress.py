"""Progress for logs and terminals (lines, ETA, heartbeat) and SIGTERM handled like Ctrl-C, without a search: the
end-to-end forms are in test_search_e2e (a piped driver read line by line, a real SIGTERM and --resume)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from rich.console import Console

from gradprom.search.progress import LogLines, SearchProgress, clock, open_display
from gradprom.search.runtime import RELAYED, TERMINATED, sigterm_as_interrupt
from tests.fixtures.cli import WRAPPER, gone


def test_clock() -> None:
    assert [clock(s) for s in (0, 5, 65, 3725, 7200)] == ["0s", "5s", "1m05s", "1h02m05s", "2h00m00s"]


def trial(trial_id: str, lam: float) -> SimpleNamespace:
    """What the callback reads of Tune's Trial: its id and sampled config."""
    return SimpleNamespace(trial_id=trial_id, config={"lam": lam})


def test_log_lines_say_each_trial_with_its_objectives_and_the_eta() -> None:
    assert isinstance(open_display("x", 1, Console(file=io.StringIO()), ""), LogLines)  # not a terminal: lines
    out = io.StringIO()
    console = Console(file=out, width=200)
    state = SearchProgress(budget=2, base={"strategy": "gradprom"})
    state.setup()
    with LogLines("synthetic · space", 4, console) as display:
        display.started = time.monotonic() - 100  # 100 s into the study
        state.on_trial_start(0, [], trial("a1", 0.1))
        state.on_trial_result(0, [], trial("a1", 0.1), {"psnr": 21.5, "task_metric": 0.625, "epoch": 2})
        state.on_trial_complete(0, [], trial("a1", 0.1))
        state.on_trial_start(0, [], trial("b2", 3.0))
        state.on_trial_error(0, [], trial("b2", 3.0))
        display.every = 0  # a heartbeat at every step of Tune's loop
        state.on_trial_start(0, [], trial("c3", 1.0))
        state.on_step_end(0, [])
    lines = out.getvalue().splitlines()
    assert lines[0] == "[0s] study synthetic · space: 4 trials"
    # 1 of 4 ended after 100 s: 3 more at that pace are 300 s; then 2 of 4 (a failure counts): 2 × 50 s = 100 s
    assert lines[1] == "[1m40s] trial a1 completed psnr=21.5 task_metric=0.625 · 1/4 done · elapsed 1m40s · ETA 5m00s"
    assert lines[2] == "[1m40s] trial b2 failed · 2/4 done · elapsed 1m40s · ETA 1m40s"
    assert lines[3] == "[1m40s] running 1 · 2/4 done · failed 1 · front so far 1 trial(s)"
    assert len(lines) == 4


def test_a_resumed_search_paces_its_eta_on_this_run_only() -> None:
    """Trials that ended before --resume are done, but the pace is this run's: elapsed over the trials it ended."""
    console = Console(file=io.StringIO(), width=200)
    state = SearchProgress(budget=1, base={})
    state.done = {"old1": "completed", "old2": "completed"}
    state.setup()
    display = LogLines("s", 6, console)
    display.started = time.monotonic() - 30
    assert display.eta(state) == "–"  # nothing ended in this run yet
    state.done["new"] = "completed"
    assert display.eta(state) == "1m30s"  # 30 s for one trial, 3 left


def test_sigterm_is_ctrl_c_and_a_second_one_stops_at_once() -> None:
    """The first SIGTERM runs `on_first` and goes to whatever handles Ctrl-C (here one that, like Tune's, asks the
    loop to stop and puts Python's handler back); the second raises KeyboardInterrupt. Outside the block SIGTERM is
    handled as before it."""
    asked: list[str] = []

    def tune_like(signum: int, frame: object) -> None:
        asked.append("stop")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    before_term, before_int = signal.getsignal(signal.SIGTERM), signal.signal(signal.SIGINT, tune_like)
    first: list[int] = []
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt(lambda: first.append(1)):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            assert asked == ["stop"] and first == [1] and TERMINATED.is_set()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2)
        assert first == [1]
        assert signal.getsignal(signal.SIGTERM) == before_term
    finally:
        signal.signal(signal.SIGINT, before_int)


def test_a_sigterm_and_the_same_stop_relayed_from_the_group_count_as_one() -> None:
    """`timeout` signals the driver and the group it was started in: the SIGTERM and the stop the group's relay
    passes on are one stop (no stop-at-once); a further signal of either kind is the second."""
    asked: list[str] = []
    one_stop: list[bool] = []

    def tune_like(signum: int, frame: object) -> None:
        asked.append("stop")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    before_term, before_relayed = signal.getsignal(signal.SIGTERM), signal.getsignal(RELAYED)
    before_int = signal.signal(signal.SIGINT, tune_like)
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            os.kill(os.getpid(), RELAYED)
            time.sleep(0.5)
            assert asked == ["stop"] and TERMINATED.is_set()
            one_stop.append(True)  # reached: the relayed stop raised no KeyboardInterrupt
            os.kill(os.getpid(), RELAYED)
            time.sleep(2)
        assert one_stop
        assert signal.getsignal(signal.SIGTERM) == before_term and signal.getsignal(RELAYED) == before_relayed
    finally:
        signal.signal(signal.SIGINT, before_int)


#: what a driver does around its local Ray: prints its pid and process group, then waits to be stopped
DRIVER = """
import os, signal, time
from gradprom.search.runtime import own_process_group, sigterm_as_interrupt
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    with sigterm_as_interrupt(lambda: print("first stop", flush=True)), own_process_group():
        print(os.getpid(), os.getpgrp(), flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    print("stopped in group", os.getpgrp(), flush=True)
"""


def start_wrapped_driver() -> tuple[subprocess.Popen, int, int]:
    """The DRIVER under the WRAPPER, which leads a session of its own: (wrapper, driver pid, driver's group)."""
    wrapper = subprocess.Popen([sys.executable, "-c", WRAPPER, sys.executable, "-c", DRIVER], stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    pid, group = (int(v) for v in wrapper.stdout.readline().split())
    return wrapper, pid, group


def test_a_stop_sent_to_the_group_the_driver_started_in_reaches_it() -> None:
    """The driver moved into a group of its own (where Ray's processes will be); a SIGTERM to the group it was
    started in (a supervisor's killpg) still stops it, in order, through the relay; it ends back in that group."""
    wrapper, pid, group = start_wrapped_driver()
    try:
        assert group == pid != wrapper.pid  # a group of its own, away from the one a signal will be sent to
        os.killpg(wrapper.pid, signal.SIGTERM)
        out, _ = wrapper.communicate(timeout=30)
        assert out.splitlines() == ["first stop", f"stopped in group {wrapper.pid}"], out
        assert wrapper.returncode == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(wrapper.pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)


def test_sigkill_to_the_group_the_driver_started_in_ends_it_too() -> None:
    """`kill -9 -- -PGID` of a job script: the relay dies with the group, and the driver (in its own group, which
    the signal did not reach) ends at once instead of running on as an orphan."""
    wrapper, pid, _ = start_wrapped_driver()
    try:
        os.killpg(wrapper.pid, signal.SIGKILL)
        assert gone(pid), f"driver {pid} still running after SIGKILL to the group it was started in"
        assert wrapper.stdout.read() == ""  # it printed nothing more: no orderly stop
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_the_callback_state_tune_checkpoints_restores_which_trials_ended() -> None:
    """Tune restores a resumed search's callbacks as they were created, then hands them their checkpointed state:
    which trials ended (and how) survives, and counts as before this run for the pace."""
    first = SearchProgress(budget=2, base={})
    first.on_trial_result(0, [], trial("a1", 0.1), {"psnr": 20.0, "task_metric": 0.5, "epoch": 2})
    first.on_trial_complete(0, [], trial("a1", 0.1))
    first.on_trial_error(0, [], trial("b2", 0.2))
    restored = SearchProgress(budget=2, base={})
    restored.set_state(first.get_state())
    restored.setup()
    assert restored.done == {"a1": "completed", "b2": "failed"} and restored.before == 2
    assert restored.last["a1"]["psnr"] == 20.0


@pytest.mark.parametrize(("final", "ended", "error", "status"), [
    ({"epoch": 3}, True, None, "completed"),
    ({"epoch": 1}, True, None, "stopped_early"),
    ({"epoch": 1}, False, None, "interrupted"),
    ({"epoch": 3}, False, None, "interrupted"),  # a stop that came as its last epoch was being reported
    ({"epoch": 1}, True, RuntimeError("worker died"), "failed"),
    ({"last_epoch": 0, "failed": "non-finite loss at epoch 1 step 2"}, True, None, "failed"),
])
def test_one_function_decides_how_a_trial_ended(final: dict, ended: bool, error: object, status: str) -> None:
    from gradprom.results.rows import trial_status
    from gradprom.trainables.pipeline import FAILED_KEY

    final = {FAILED_KEY if k == "failed" else k: v for k, v in final.items()}
    assert trial_status(final, budget=3, ended=ended, error=error) == status
