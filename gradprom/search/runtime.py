"""The Ray runtime a search drives, and the driver's own process: Ray started locally or reached, GPUs for the
trials, SIGTERM handled like Ctrl-C, and a process group of its own where that costs no job control."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gradprom.errors import GradpromError
from gradprom.plugins import runtime_env_vars


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
    # ray.init replaces the driver's SIGTERM handling (Python's with sys.exit, then its C++ core's with a stack
    # dump): the caller's own handler (sigterm_as_interrupt) is put back once Ray is up
    main = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise GradpromError(f"could not start or reach {where}: {str(exc).splitlines()[0]}; check --address") from exc
    finally:
        if callable(on_sigterm):
            signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        ray.shutdown()


def place_on_gpus(req: Any) -> None:
    """--device auto/cuda: give each trial worker a GPU when the cluster has GPUs and none was asked for."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if req.device == "cuda" and gpus == 0 and not req.address:
        raise GradpromError("--device cuda was asked for but Ray sees no GPU here; use --device cpu or auto")
    if req.gpus_per_trial == 0 and req.device in ("auto", "cuda") and gpus > 0:
        req.gpus_per_trial = 1.0  # a trial without a GPU share sees none (Ray hides them), so auto means CPU


#: set once this driver got SIGTERM (so the exit code says 143, not 130)
TERMINATED = threading.Event()
#: seconds a SIGTERM'd driver has to stop its trials before it exits regardless ($GRADPROM_SIGTERM_GRACE_S)
SIGTERM_GRACE_S = 25.0


@contextmanager
def sigterm_as_interrupt(on_first: Callable[[], None] = lambda: None) -> Iterator[None]:
    """While the search runs, SIGTERM (timeout, Slurm, Kubernetes, a spot VM's shutdown) does what Ctrl-C does:
    the first stops the trials cleanly and saves what finished, a second stops at once. The signal is handed
    to whatever handles Ctrl-C at that moment (Tune's handler inside its loop, else Python's KeyboardInterrupt).

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

    def on_sigterm(signum: int, frame: Any) -> None:
        if not TERMINATED.is_set():
            TERMINATED.set()
            on_first()
            watchdog.start()
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        watchdog.cancel()
        signal.signal(signal.SIGTERM, previous)


def own_process_group() -> None:
    """Move this driver into a process group of its own before it starts Ray locally, so a signal sent to the group
    it was started in (`timeout`, a supervisor's killpg) reaches the driver, which stops the trials and Ray in order,
    and not Ray's processes, which would die under it. Only where no terminal job control is lost: not when this
    process already leads its group, nor when its group is a terminal's foreground group (Ctrl-C must reach it)."""
    if os.getpgrp() == os.getpid():
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp():
            return
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
