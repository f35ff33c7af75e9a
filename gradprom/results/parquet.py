"""Results as Parquet: trials.parquet, epochs.parquet, pareto.parquet (flat columns, schema-versioned).

Written atomically (temporary file + rename), so a crash never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gradprom import SCHEMA_VERSION
from gradprom.errors import GradpromError

TRIALS, EPOCHS, PARETO = "trials.parquet", "epochs.parquet", "pareto.parquet"
SCHEMA_KEY = b"gradprom.schema_version"
#: what each results file must hold, whatever schema key it carries: (columns it needs, columns it must lack);
#: a trial row has a status, an epoch row has an epoch and no status
KINDS = {TRIALS: ("trials", {"trial_id", "status"}, set()), PARETO: ("trials", {"trial_id", "status"}, set()),
         EPOCHS: ("epochs", {"trial_id", "epoch"}, {"status"})}


def _clean(value: Any) -> Any:
    """Parquet-friendly scalar: numpy scalars to Python, containers to JSON text."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return value


def to_table(rows: list[dict[str, Any]], first: tuple[str, ...] = ()) -> pa.Table:
    """Rows (dicts with possibly different keys) as one table; `first` columns lead, the rest sorted."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    ordered = [k for k in first if k in keys] + sorted(k for k in keys if k not in first)
    columns = {}
    for key in ordered:
        values = [_clean(row.get(key)) for row in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds == {int, float} or kinds == {float, int}:
            values = [None if v is None else float(v) for v in values]
        elif len(kinds) > 1:
            values = [None if v is None else str(v) for v in values]
        columns[key] = pa.array(values)
    table = pa.table(columns) if columns else pa.table({})
    meta = dict(table.schema.metadata or {})
    meta[SCHEMA_KEY] = str(SCHEMA_VERSION).encode()
    return table.replace_schema_metadata(meta)


def write_rows(path: Path, rows: list[dict[str, Any]], first: tuple[str, ...] = ()) -> Path:
    """Write rows as Parquet atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(to_table(rows, first), tmp)
        tmp.replace(path)
    except OSError as exc:  # disk full, folder gone or read-only: the previous file stays whole
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise GradpromError(f"cannot write {path} ({exc.strerror or exc}); the previous version is kept: free "
                            "space or fix permissions, then --resume") from exc
    return path


def read_table(path: Path) -> tuple[pa.Table, int]:
    """A results file and the schema version it was written under; a missing, truncated, foreign or newer file
    gives one clear line."""
    if not path.is_file():
        raise GradpromError(f"no {path.name} in {path.parent}; is this an experiment folder (OUT/NAME)?")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise GradpromError(f"{path} is not a readable Parquet file ({type(exc).__name__}); rerun or --resume") from exc
    version = (table.schema.metadata or {}).get(SCHEMA_KEY)
    if version is None:
        raise GradpromError(f"{path} was not written by gradprom (no schema version)")
    if int(version) > SCHEMA_VERSION:
        raise GradpromError(f"{path} has results schema {int(version)}, newer than this gradprom "
                            f"({SCHEMA_VERSION}); upgrade gradprom")
    check_kind(path, table.column_names)
    return table, int(version)


def check_kind(path: Path, columns: list[str]) -> None:
    """A results file must be the table its name says (an epochs table copied in as trials.parquet is not one)."""
    if path.name not in KINDS:
        return
    kind, needs, lacks = KINDS[path.name]
    missing, extra = sorted(needs - set(columns)), sorted(lacks & set(columns))
    if missing or extra:
        what = f"no column '{missing[0]}'" if missing else f"a column '{extra[0]}'"
        looks = next((f"; it looks like {name}" for name, (k, n, lack) in KINDS.items()
                      if k != kind and n <= set(columns) and not lack & set(columns)), "")
        raise GradpromError(f"{path} is not a gradprom {kind} table (it has {what}{looks}); give the experiment "
                            "folder gradprom wrote, or rerun the search")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read a results file back as rows (see `read_table` for what is refused)."""
    return read_table(path)[0].to_pylist()


def writable_file(path: Path | str, option: str, suffix: str = "") -> Path:
    """`path` checked before any work as a file `option` can write: not a folder, in a folder that exists or can
    be made, writable, ending in `suffix` where one is required. One line otherwise."""
    path = Path(path).expanduser()
    if suffix and path.suffix != suffix:
        raise GradpromError(f"{option} must name a {suffix} file, got {path}")
    if path.is_dir():
        raise GradpromError(f"{option} {path} is a folder; give the path of the file to write")
    _writable(path.parent, option, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise GradpromError(f"{option} {path} exists and is not writable; choose another path")
    return path


def writable_folder(path: Path | str, option: str) -> Path:
    """`path` checked before any work as a folder `option` can write into (made if missing). One line otherwise."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise GradpromError(f"{option} {path} is a file, not a folder; give a folder to write into")
    return _writable(path, option, path)


def _writable(folder: Path, option: str, given: Path) -> Path:
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise GradpromError(f"{option} {given}: {existing} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GradpromError(f"{option} {given}: cannot create the folder {folder} ({exc.strerror or exc}); choose a "
                            "writable path") from None
    if not os.access(folder, os.W_OK):
        raise GradpromError(f"{option} {given}: the folder {folder} is not writable; choose a writable path")
    return folder


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception))\s*:\s*(.+?)\s*$")


def error_line(error: BaseException | str | None) -> str:
    """The one line that says why a trial failed, dug out of Ray's wrapped exceptions and tracebacks."""
    if error is None:
        return ""
    cause = error
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:
        cause = cause.cause
    if isinstance(cause, BaseException) and not type(cause).__name__.startswith(("RayTaskError", "TuneError")):
        text = str(cause).strip().splitlines()
        if text and "Traceback" not in text[0]:
            return text[0]
    lines = [m.group(2) for m in map(_ERROR_LINE.match, str(error).splitlines()) if m]
    return lines[-1] if lines else str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
