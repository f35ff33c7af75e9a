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
from gradprom.results.storage import publish

MANIFEST = "manifest.json"
#: the manifest's signature: only a folder whose manifest carries it is one gradprom may replace
SIGNATURE = "gradprom experiment"
#: what gradprom writes in OUT/NAME (the search, protocol and pareto --telemetry); --overwrite removes only these
OWNED = frozenset({MANIFEST, "trials.parquet", "epochs.parquet", "pareto.parquet", "optuna.journal", "ray",
                   "telemetry.png", "protocol.parquet", "protocol.md", "protocol.png", "fronts"})
#: a run stopped before its first trial (bad input found late, or a signal): its rerun reuses the folder as it is
NOT_STARTED = "not_started"
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
    """The experiment's manifest; None where there is none. One that is not JSON is one line."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GradpromError(f"{path} is unreadable ({type(exc).__name__}), so gradprom cannot tell whether it made "
                            f"{folder}; move it away or pick another --name") from exc
    return manifest if isinstance(manifest, dict) else {}


def is_ours(manifest: dict[str, Any] | None) -> bool:
    """Whether a manifest is gradprom's own: its signature, or (written before the signature existed) the
    versions, request and driver records every gradprom manifest has carried."""
    if not manifest:
        return False
    if manifest.get("made_by") == SIGNATURE:
        return True
    return isinstance(manifest.get("request"), dict) and isinstance(manifest.get("driver"), dict) and \
        {"gradprom_version", "schema_version", "status", "argv"} <= set(manifest)


def owned_entries(folder: Path) -> list[Path]:
    """What `--overwrite` may remove from `folder`: every entry, once the folder is proven gradprom's (its
    manifest's signature, nothing in it that gradprom does not write); otherwise one line, nothing removed."""
    manifest = read_manifest(folder)
    if not is_ours(manifest):
        why = f"no {MANIFEST}" if manifest is None else f"its {MANIFEST} is not a gradprom manifest"
        raise GradpromError(f"{folder} is not empty and is not a gradprom experiment ({why}); refusing to replace "
                            "it: pick another --name or --out")
    entries = sorted(folder.iterdir())
    foreign = [e.name for e in entries if e.name not in OWNED and not _temporary(e.name)]
    if foreign:
        raise GradpromError(f"{folder} holds '{foreign[0]}'" + (f" and {len(foreign) - 1} more" if len(foreign) > 1
                            else "") + ", which gradprom did not write; refusing to replace it: move that away, "
                            "or pick another --name or --out")
    return entries


def _temporary(name: str) -> bool:
    """gradprom's own transient files: atomic writes' `.NAME.tmp`, the journal's lock, the write probe."""
    return (name.startswith(".") and name.endswith(".tmp") and name[1:-4] in OWNED) or \
        name.startswith("optuna.journal.lock") or name == ".write-test"


def remove_experiment(folder: Path) -> None:
    """Empty an experiment folder gradprom made (see `owned_entries`: all is checked before anything goes)."""
    for entry in owned_entries(folder):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Atomic write, so the manifest is never half there."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(redact(manifest), indent=2, sort_keys=True, default=str))
    tmp.replace(folder / MANIFEST)
    publish(folder, MANIFEST)


def check_name(name: str) -> str:
    """An experiment name is one plain, printable folder name (so OUT/NAME never points outside OUT, and every
    listing and shell shows it as typed)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or not name.isprintable() or \
            name != name.strip() or name.startswith("-") or len(name.encode()) > 200:
        raise GradpromError(f"--name must be a plain folder name: printable, no '/' or '\\', no leading '-' or "
                            f"surrounding spaces, not '.' or '..', at most 200 bytes; got {name!r}")
    return name


def prepare_folder(folder: Path, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check OUT/NAME before anything runs; returns the old manifest when resuming.

    A finished experiment is never overwritten silently: --overwrite replaces it (only one gradprom made, see
    `owned_entries`), --resume continues it. One refused for bad input before its first trial is reused as is.
    """
    if resume and overwrite:
        raise GradpromError("--resume and --overwrite contradict each other; pick one")
    if folder.exists() and not folder.is_dir():
        raise GradpromError(f"{folder} is a file, not an experiment folder; pick another --name or --out")
    if folder.exists() and any(folder.iterdir()):
        old = read_manifest(folder)
        state = (old or {}).get("status", "unknown")
        if state == "running" and driver_alive(old.get("driver")):
            raise GradpromError(f"{folder} is being searched right now (driver pid {old['driver'].get('pid')} on "
                                f"{old['driver'].get('host')}); wait for it to end, or pick another --name")
        if resume:
            if not is_ours(old) or state == NOT_STARTED:
                raise GradpromError(f"{folder} holds no gradprom experiment that ran, so nothing to resume; drop "
                                    "--resume or pick another --name")
            return old
        if not overwrite and not (state == NOT_STARTED and is_ours(old)):
            if state == "running" and driver_alive(old.get("driver")) is False:
                raise GradpromError(f"{folder}: its search stopped without finishing (its driver, pid "
                                    f"{old['driver'].get('pid')}, is gone); continue it with: gradprom search --out "
                                    f"{folder.parent} --name {folder.name} --resume")
            raise GradpromError(f"{folder} already holds an experiment (status: {state}); "
                                "use --resume to continue it, --overwrite to replace it, or another --name")
        remove_experiment(folder)  # never a folder gradprom did not make, nor a file it did not write
    elif resume:
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
        "made_by": SIGNATURE, "schema_version": SCHEMA_VERSION, "gradprom_version": __version__, "status": "running",
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
