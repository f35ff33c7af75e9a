"""An experiment folder OUT/NAME: its manifest (what ran, with which versions, finished or not)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from gradprom import SCHEMA_VERSION, __version__
from gradprom.errors import GradpromError
from gradprom.orchestrator.storage import publish

MANIFEST = "manifest.json"
MIN_FREE_BYTES = 200 * 2**20  # checkpoints of small models and a few Parquet files
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)[^/@\s]+@|(?P<key>(?:token|password|secret|key)=)[^&\s]+",
                          re.IGNORECASE)


def redact(value: Any) -> Any:
    """`value` with credentials in URLs (user:password@) and token=… query values masked, recursively:
    what goes into the manifest never carries a secret from --address or the command line."""
    if isinstance(value, str):
        return _CREDENTIALS.sub(lambda m: f"{m['scheme']}***@" if m["scheme"] else f"{m['key']}***", value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GradpromError(f"{path} is unreadable ({type(exc).__name__}); use --overwrite to start over") from exc


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Atomic write, so the manifest is never half there."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(redact(manifest), indent=2, sort_keys=True, default=str))
    tmp.replace(folder / MANIFEST)
    publish(folder, MANIFEST)


def check_name(name: str) -> str:
    """An experiment name is one plain folder name (so OUT/NAME can never point outside OUT)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise GradpromError(f"--name must be a plain folder name (no '/', not '.' or '..'), got '{name}'")
    return name


def prepare_folder(folder: Path, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check OUT/NAME before anything runs; returns the old manifest when resuming.

    A finished experiment is never overwritten silently: --overwrite replaces it, --resume continues it.
    """
    if resume and overwrite:
        raise GradpromError("--resume and --overwrite contradict each other; pick one")
    old = read_manifest(folder) if folder.exists() else None
    if folder.exists() and any(folder.iterdir()):
        if overwrite:
            if old is None:  # never delete a folder gradprom did not make
                raise GradpromError(f"{folder} is not empty and holds no gradprom experiment (no {MANIFEST}); "
                                    "refusing to --overwrite it: pick another --name or --out")
            shutil.rmtree(folder)
            return None
        if old is not None and old.get("status") == "running" and driver_alive(old.get("driver")):
            raise GradpromError(f"{folder} is being searched right now (driver pid {old['driver'].get('pid')} on "
                                f"{old['driver'].get('host')}); wait for it to end, or pick another --name")
        if resume:
            if old is None:
                raise GradpromError(f"{folder} holds no gradprom experiment to resume; drop --resume or pick a --name")
            return old
        state = old.get("status", "unknown") if old else "unknown"
        if state == "running" and driver_alive(old.get("driver")) is False:
            raise GradpromError(f"{folder}: its search stopped without finishing (its driver, pid "
                                f"{old['driver'].get('pid')}, is gone); continue it with: gradprom search --out "
                                f"{folder.parent} --name {folder.name} --resume")
        raise GradpromError(f"{folder} already holds an experiment (status: {state}); "
                            "use --resume to continue it, --overwrite to replace it, or another --name")
    if resume:
        raise GradpromError(f"nothing to resume at {folder}; run without --resume to start it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise GradpromError(f"cannot write to {folder} ({exc.strerror}); choose a writable --out") from exc
    check_free_space(folder)
    return None


def check_free_space(folder: Path, needed: int = MIN_FREE_BYTES) -> None:
    """Refuse to start with less than `needed` bytes free where results and checkpoints go."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise GradpromError(f"only {free / 2**20:.0f} MiB free on the disk of {folder}; a search needs at least "
                            f"{needed / 2**20:.0f} MiB for checkpoints and results: free space or choose another --out")


def new_manifest(request: dict[str, Any]) -> dict[str, Any]:
    """What an experiment was asked and where it ran from: the request, the command line, the versions and the
    checkout's git commit (each trial row adds its device and data fingerprint)."""
    from gradprom.trainables.provenance import git_commit, versions

    return {
        "schema_version": SCHEMA_VERSION, "gradprom_version": __version__, "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "request": request,
        "driver": this_driver(), "versions": json.loads(versions()), "git_commit": git_commit(),
    }


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); '' where unknown.
    With the pid it tells a live driver from an unrelated process that got its pid later."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def this_driver() -> dict[str, Any]:
    """Who is running the search: recorded in the manifest, so a later command can tell whether it died."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid())}


def driver_alive(driver: dict[str, Any] | None) -> bool | None:
    """Whether the recorded driver still runs: True/False on its own host, None where it cannot be told
    (another host, or an old manifest without a driver record)."""
    if not driver or driver.get("host") != socket.gethostname():
        return None
    pid = int(driver.get("pid", 0))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return not driver.get("start") or _process_start(pid) == driver["start"]
