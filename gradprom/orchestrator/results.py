"""Results as Parquet: trials.parquet, epochs.parquet, pareto.parquet (flat columns, schema-versioned).

Written atomically (temporary file + rename), so a crash never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gradprom import SCHEMA_VERSION
from gradprom.errors import GradpromError

TRIALS, EPOCHS, PARETO = "trials.parquet", "epochs.parquet", "pareto.parquet"
SCHEMA_KEY = b"gradprom.schema_version"


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
    return table, int(version)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read a results file back as rows (see `read_table` for what is refused)."""
    return read_table(path)[0].to_pylist()


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
