"""An experiment folder OUT/NAME: its manifest (what ran, with which versions, finished or not)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from gradprom import SCHEMA_VERSION, __version__
from gradprom.errors import GradpromError

MANIFEST = "manifest.json"


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
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    tmp.replace(folder / MANIFEST)


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
        if resume:
            if old is None:
                raise GradpromError(f"{folder} holds no gradprom experiment to resume; drop --resume or pick a --name")
            return old
        state = old.get("status", "unknown") if old else "unknown"
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
    return None


def new_manifest(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION, "gradprom_version": __version__, "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "request": request,
    }
