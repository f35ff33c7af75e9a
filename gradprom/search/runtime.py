"""The Ray runtime a search drives, and the driver's own process: Ray started locally or reached, GPUs for the
trials, SIGTERM handled like Ctrl-C, and a process group of its own (with a relay left in the first one) where that
costs no job control."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradprom.errors import GradpromError
from gradprom.plugins import runtime_env_vars

#: set once this driver got SIGTERM, or a stop relayed from the group it was started in (exit code 143, not 130)
TERMINATED = threading.Event()
#: seconds a SIGTERM'd driver has to stop its trials before it exits regardless ($GRADPROM_SIGTERM_GRACE_S)
SIGTERM_GRACE_S = 25.0
#: what group_relay.py sends the driver when the process group it was started in is told to stop (not SIGUSR1:
#: Tune takes that as Ctrl-C)
RELAYED = signal.SIGUSR2
#: the signals that stop a search as SIGTERM does
STOPS = (signal.SIGTERM, RELAYED)


def ray_initialized() -> bool:
    """Whether this process is already connected to Ray (a caller's own session, which ray_runtime reuses)."""
    import ray

    return ray.is_initialized()


@contextmanager
def ray_runtime(address: str, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to `address`, or start Ray locally (dashboard off, nothing leaves the machine)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing; Rich shows progress
    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if plugins := runtime_env_vars():  # users' registrations must reach the trial processes
        kwargs["runtime_env"] = {"env_vars": plugins}
    try:
        with handlers_kept():
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise GradpromError(f"could not start or reach {where}: {str(exc).splitlines()[0]}; check --address") from exc
    try:
        yield
    finally:
        shutdown_holding_stops()


def shutdown_holding_stops() -> None:
    """ray.shutdown, with stop signals (SIGTERM, SIGINT, RELAYED) held: one that comes meanwhile is dropped (the
    search has ended or is stopping already) and the driver's handlers are back afterwards. Ray's shutdown sets
    SIGTERM to the C-level default partway (RayLog::UninstallSignalAction), which would kill the driver mid-way
    and leave Ray's agents running, so it runs in a thread while this (main) thread puts the holding handler back
    every 10 ms."""
    import ray

    if threading.current_thread() is not threading.main_thread():  # handlers can be set in the main thread only
        ray.shutdown()
        return

    def hold(signum: int, frame: Any) -> None:
        pass

    held = (*STOPS, signal.SIGINT)
    with handlers_kept(held):
        for s in held:
            signal.signal(s, hold)
        worker = threading.Thread(target=ray.shutdown, name="ray-shutdown")
        worker.start()
        while worker.is_alive():
            for s in held:
                signal.signal(s, hold)
            worker.join(0.01)


@contextmanager
def handlers_kept(signals: tuple[int, ...] = STOPS) -> Iterator[None]:
    """Put back, after the block, the handlers `signals` had before it (the driver's own, sigterm_as_interrupt's):
    ray.init replaces SIGTERM's (Python's with sys.exit, its C++ core's with a stack dump), and
    shutdown_holding_stops holds them while Ray shuts down. Main thread only, where handlers can be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {s: signal.getsignal(s) for s in signals}
    try:
        yield
    finally:
        for s, handler in kept.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(s, handler)


def place_on_gpus(req: Any) -> None:
    """--device auto/cuda: give each trial worker a GPU when the cluster has GPUs and none was asked for."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if req.device == "cuda" and gpus == 0 and not req.address:
        raise GradpromError("--device cuda was asked for but Ray sees no GPU here; use --device cpu or auto")
    if req.gpus_per_trial == 0 and req.device in ("auto", "cuda") and gpus > 0:
        req.gpus_per_trial = 1.0  # a trial without a GPU share sees none (Ray hides them), so auto means CPU


@contextmanager
def sigterm_as_interrupt(on_first: Callable[[], None] = lambda: None) -> Iterator[None]:
    """While the search runs, SIGTERM (timeout, Slurm, Kubernetes, a spot VM's shutdown) does what Ctrl-C does:
    the first stops the trials cleanly and saves what finished, a second stops at once. The signal is handed
    to whatever handles Ctrl-C at that moment (Tune's handler inside its loop, else Python's KeyboardInterrupt).
    A stop relayed from the group the driver was started in (RELAYED) counts as SIGTERM; the first SIGTERM and
    the first relayed stop together count as one, since `timeout` signals both the driver and its group.

    `on_first` runs at the first SIGTERM (the manifest says `interrupted` before anything else can fail: where the
    whole machine is going down, Ray's own processes get the signal too), and a watchdog ends the driver with
    exit code 143 if the orderly stop has not finished within the grace period.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    grace = float(os.environ.get("GRADPROM_SIGTERM_GRACE_S") or SIGTERM_GRACE_S)
    watchdog = threading.Timer(grace, os._exit, args=(143,))
    watchdog.daemon = True
    kinds: list[int] = []  # the first stop's signal, then the other kind once one of it was taken as the same stop

    def on_sigterm(signum: int, frame: Any) -> None:
        if not TERMINATED.is_set():
            TERMINATED.set()
            kinds.append(signum)
            on_first()
            watchdog.start()
        elif len(kinds) == 1 and signum != kinds[0]:  # the same stop, sent to the driver and to its group
            kinds.append(signum)
            return
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    TERMINATED.clear()
    previous = {s: signal.signal(s, on_sigterm) for s in STOPS}
    try:
        yield
    finally:
        watchdog.cancel()
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def own_process_group() -> Iterator[None]:
    """While the block runs (start the local Ray inside it), this driver leads a process group of its own, so a
    signal sent to the group it was started in (`timeout`, a supervisor's killpg, `kill -- -PGID` of a job
    script) does not reach Ray's processes, which would die under the driver. A relay (group_relay.py) stays in
    that group and passes its stop on to the driver, which shuts Ray down in order; SIGKILL to that group ends
    the driver at once, as it would have. Only where no terminal job control is lost (not when this process
    already leads its group, nor when its group is a terminal's foreground group: Ctrl-C must reach it) and in
    the main thread (where sigterm_as_interrupt handles the relayed signal)."""
    started_in = os.getpgrp()
    if started_in == os.getpid() or threading.current_thread() is not threading.main_thread() or foreground():
        yield
        return
    relay = subprocess.Popen([sys.executable, "-I", str(Path(__file__).with_name("group_relay.py")),
                              str(os.getpid()), str(int(RELAYED))], stdin=subprocess.PIPE)
    try:
        os.setpgid(0, 0)
    except OSError:
        relay.stdin.close()
        relay.wait()
        yield
        return
    threading.Thread(target=follow_relay, args=(relay,), daemon=True).start()
    try:
        yield
    finally:
        relay.stdin.close()  # the relay's read ends: it exits 0, and follow_relay with it
        relay.wait()
        with contextlib.suppress(OSError):  # back where it was started (a caller may run more than one search)
            os.setpgid(0, started_in)


def foreground() -> bool:
    """Whether this process's group is the foreground group of the terminal on its stdin."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def follow_relay(relay: subprocess.Popen) -> None:
    """Wait for the relay: killed with SIGKILL (the group told to die at once), the driver ends at once too (Ray's
    processes follow their parent); killed by another signal before it could relay it, the driver stops."""
    code = relay.wait()
    if code == -signal.SIGKILL:
        os._exit(128 + signal.SIGKILL)
    if code < 0:
        os.kill(os.getpid(), RELAYED)
