"""Shared fixtures: tiny trial settings and an isolated cache, so tests stay fast and independent."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

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
