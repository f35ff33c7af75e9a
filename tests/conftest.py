"""Shared fixtures: tiny trial settings, an isolated cache, the CLI in this process or in a child, and one local
Ray runtime shared by the in-process searches, so tests stay fast and independent."""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# every Ray runtime the tests start (in this process, the CLI's children, the clusters) skips the idle workers Ray
# starts ahead for a new driver: trials run in actors of their own, so these only cost a second of CPU each
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
os.environ["COLUMNS"] = "120"  # Rich's width for the CLI's console, in this process as in the children

#: a trial small enough for a 2-core CPU in about a second per epoch
TINY = {
    "image_size": 32, "n_train": 64, "n_val": 32, "n_test": 32, "enhancer_blocks": 1, "enhancer_channels": 8,
    "recognizer_width": 4, "batch_size": 16, "pretrain_epochs": 1, "epochs": 1, "device": "cpu", "threads": 1,
}


#: TINY as `gradprom search -p KEY=VALUE` arguments (epochs and device are options of their own)
TINY_PARAMS = [arg for key, value in TINY.items() if key not in ("epochs", "device")
               for arg in ("-p", f"{key}={value}")]


def gradprom(*args: str, cache: str, timeout: int = 400, **env_vars: str) -> subprocess.CompletedProcess:
    """The real CLI in a child process (`python -m gradprom.cli ARGS`), with its own recognizer cache."""
    env = {**os.environ, "GRADPROM_CACHE": cache, "COLUMNS": "120", **env_vars}
    return subprocess.run([sys.executable, "-m", "gradprom.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@dataclass
class Ran:
    """What a CLI run left: its exit code and what it printed (as subprocess.CompletedProcess names them)."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cache: str, width: int = 120) -> Ran:
    """The real CLI in this process (`gradprom.cli.main(ARGS)`, exactly what `gradprom ARGS` runs after Python has
    started), output captured, `width` columns wide. A search in here runs on the session's local Ray runtime
    (`ray_session`), whose trial processes read the recognizer cache `cache`, which must be the session's
    `shared_cache`."""
    import torch

    from gradprom.cli import main
    from gradprom.cli.options import console

    out, err = io.StringIO(), io.StringIO()
    previous, threads = os.environ.get("GRADPROM_CACHE"), torch.get_num_threads()
    os.environ["GRADPROM_CACHE"] = cache
    console.width = width
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:  # what a command sets for its own process (`rerun` and `train` pin torch's threads) is put back
        console.width = 120
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop("GRADPROM_CACHE", None)
        else:
            os.environ["GRADPROM_CACHE"] = previous
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture()
def ray_session(shared_cache: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """One local Ray runtime (2 CPUs, dashboard off) in this process, started by the first test that needs it and
    shared by every later in-process search (`cli`): a search reuses a runtime its caller started, so each one
    saves Python's and Ray's start and Ray's shutdown. Its trial processes use the session's recognizer cache.
    Tests that need no Ray in this process use `no_ray_session` (it stops the runtime; the next user starts it)."""
    shared_ray(shared_cache, request)
    yield


def shared_ray(cache: str, request: pytest.FixtureRequest) -> None:
    """Start the shared local Ray runtime unless it runs (for fixtures of any scope); it stops with the session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env={"env_vars": {"GRADPROM_CACHE": cache}})
        request.session.config.add_cleanup(ray.shutdown)


@pytest.fixture()
def no_ray_session() -> None:
    """No Ray runtime in this process (stops the shared one, if a test before started it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture()
def tiny(tmp_path: Path) -> dict:
    """TINY settings with a per-test recognizer cache."""
    return {**TINY, "cache_dir": str(tmp_path / "cache")}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One recognizer cache for the session's end-to-end runs (the cache is part of what they exercise)."""
    return str(tmp_path_factory.mktemp("gradprom-cache"))


def record_decodes(monkeypatch: pytest.MonkeyPatch, masks: bool = False) -> list[Path]:
    """From now on, every image file decoded through `files.read_image` (and with `masks`, every mask through
    `files.read_mask`) is appended to the returned list: the real-dataset loaders all decode through them."""
    from gradprom.datasets import files

    seen: list[Path] = []
    read_image, read_mask = files.read_image, files.read_mask
    monkeypatch.setattr(files, "read_image", lambda path, channels: seen.append(path) or read_image(path, channels))
    if masks:
        monkeypatch.setattr(files, "read_mask", lambda path: seen.append(path) or read_mask(path))
    return seen


def _run_child(func: Callable[..., object], args: tuple, results: Any) -> None:
    try:
        results.put(("ok", func(*args)))
    except BaseException:  # noqa: BLE001 - everything the child raised goes back to the test, as text
        results.put(("raised", traceback.format_exc()))


def run_isolated(func: Callable[..., object], *args: object, timeout: float = 240.0) -> object:
    """Run `func(*args)` (a module-level function) in a fresh spawned process and return its result.

    For kernels that may hang or abort the interpreter on some CPUs (the fast path): a hang becomes a failed
    test after `timeout` seconds and a crash a failed test naming the signal, instead of a dead test run.
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_run_child, args=(func, args, results), daemon=True)
    child.start()
    deadline = time.monotonic() + timeout
    kind, value = "hung", None
    while time.monotonic() < deadline:
        try:
            kind, value = results.get(timeout=0.2)
            break
        except queue.Empty:
            if not child.is_alive():  # gone without a result (its last put is flushed before it exits)
                try:
                    kind, value = results.get(timeout=1)
                except queue.Empty:
                    kind = "died"
                break
    child.join(timeout=0 if kind == "hung" else 30)
    if child.is_alive():
        child.kill()
        child.join()
    if kind == "hung":
        pytest.fail(f"{func.__name__} hung: no result after {timeout:.0f} s (killed)", pytrace=False)
    if kind == "died":
        code = child.exitcode or 0
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        pytest.fail(f"{func.__name__} killed its process with {how}", pytrace=False)
    if kind == "raised":
        pytest.fail(f"{func.__name__} raised in its isolated process:\n{value}", pytrace=False)
    return value
