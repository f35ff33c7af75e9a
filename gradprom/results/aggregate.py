"""`gradprom aggregate`: many experiments as one table, every older results schema read as today's.

Each experiment's trials.parquet is upgraded to the current schema (`upgrade`), tagged with the experiment it
came from, and concatenated; a column whose types cannot be reconciled across experiments (text in one,
numbers in another) is refused in one line naming the column and both experiments, instead of a table in
which half the values silently turned into strings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gradprom import SCHEMA_VERSION
from gradprom.errors import GradpromError
from gradprom.results.parquet import SCHEMA_KEY, TRIALS, read_table, to_table
from gradprom.results.storage import local_folder

#: what every aggregated row is tagged with (experiment: its folder name when the row lacks one)
TAGS = ("experiment", "dataset", "space", "strategy")


def upgrade(row: dict[str, Any], version: int) -> dict[str, Any]:
    """A row written under results schema `version`, in today's columns.

    1 → 2: a `gate_on=head` trial's `cos_*` figures were the head cosine; they move to `head_cos_*` and
    `cos_mean` becomes NaN (the full gradients' cosine was never measured). *_ref_clean / *_ref_input did not
    exist: left missing, not invented. Rows from before pipelines existed were all `task_driven` trials.
    """
    row = dict(row)
    row.setdefault("pipeline", "task_driven")
    if version < 2 and row.get("gate_on") == "head":
        for key in [k for k in row if k.startswith("cos_")]:
            row["head_" + key] = row.pop(key)
        row["cos_mean"] = math.nan
    row["schema_version"] = SCHEMA_VERSION
    return row


def read_experiment(at: str) -> tuple[str, pa.Table]:
    """(experiment name, its trials upgraded to today's schema) for a folder or a storage URI."""
    folder = local_folder(at)
    if not (folder / TRIALS).is_file():
        raise GradpromError(f"{at} holds no {TRIALS}: is it an experiment folder (OUT/NAME) or its storage URI?")
    table, version = read_table(folder / TRIALS)
    name = Path(folder).name
    rows = [upgrade({**r, "experiment": r.get("experiment") or name}, version) for r in table.to_pylist()]
    return name, to_table(rows)


def aggregate(experiments: list[str]) -> pa.Table:
    """One table of every trial of `experiments` (folders or URIs), tagged by experiment, dataset, space and
    strategy; refuses duplicates and columns whose types cannot be merged."""
    if not experiments:
        raise GradpromError("name at least one experiment folder (OUT/NAME) to aggregate")
    tables: list[tuple[str, pa.Table]] = []
    for at in experiments:
        name, table = read_experiment(at)
        if any(name == seen for seen, _ in tables):
            raise GradpromError(f"experiment '{name}' is named twice; aggregate each experiment once")
        tables.append((name, table))
    types: dict[str, tuple[pa.DataType, str]] = {}
    for name, table in tables:
        for f in table.schema:
            if pa.types.is_null(f.type):
                continue
            seen = types.setdefault(f.name, (f.type, name))
            if not _compatible(seen[0], f.type):
                raise GradpromError(f"cannot merge column '{f.name}': {seen[0]} in experiment '{seen[1]}' but "
                                    f"{f.type} in '{name}'; aggregate them separately or fix the column")
    merged = pa.concat_tables([t for _, t in tables], promote_options="permissive")
    meta = dict(merged.schema.metadata or {})
    meta[SCHEMA_KEY] = str(SCHEMA_VERSION).encode()
    return merged.replace_schema_metadata(meta)


def _compatible(a: pa.DataType, b: pa.DataType) -> bool:
    """Same type, or both numeric (ints widen to floats)."""
    numeric = (pa.types.is_integer, pa.types.is_floating)
    return a == b or (any(f(a) for f in numeric) and any(f(b) for f in numeric))


def write_aggregate(experiments: list[str], out: Path) -> tuple[Path, pa.Table]:
    """Aggregate and write `out` (Parquet, atomically); returns it and the table."""
    table = aggregate(experiments)
    out = Path(out)
    if out.suffix != ".parquet":
        raise GradpromError(f"--out must name a .parquet file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return out, table
