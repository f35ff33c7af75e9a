"""`aggregate`: experiments of mixed schema versions merge; a schema that cannot merge is one line."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gradprom.errors import GradpromError
from gradprom.results.aggregate import aggregate, write_aggregate
from gradprom.results.parquet import SCHEMA_KEY, TRIALS, to_table


def experiment(folder: Path, rows: list[dict], version: int) -> str:
    """An experiment folder holding trials.parquet written under results schema `version`."""
    folder.mkdir(parents=True)
    table = to_table(rows)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, SCHEMA_KEY: str(version).encode()}),
                   folder / TRIALS)
    return str(folder)


def trial(tid: str, **extra: object) -> dict:
    return {"trial_id": tid, "dataset": "synthetic", "space": "lambda_threshold", "strategy": "gradprom",
            "status": "completed", "psnr": 20.0, "task_metric": 0.5, **extra}


def test_mixed_schema_versions_merge_into_todays(tmp_path: Path) -> None:
    old = experiment(tmp_path / "old", [trial("a", gate_on="head", cos_mean=0.4, cos_q50=0.3),
                                        trial("b", gate_on="all", cos_mean=0.2, epochs_done=3)], version=1)
    new = experiment(tmp_path / "new", [trial("c", gate_on="head", cos_mean=math.nan, head_cos_mean=0.1,
                                              acc_ref_clean=0.9, epochs_done=2.0)], version=2)
    out, table = write_aggregate([old, new], tmp_path / "all.parquet")
    rows = {r["trial_id"]: r for r in pq.read_table(out).to_pylist()}
    assert {r["experiment"] for r in rows.values()} == {"old", "new"}
    # schema 1 stored a head gate's cosine as cos_*: read as head_cos_*, and cos_mean is NaN
    assert rows["a"]["head_cos_mean"] == 0.4 and rows["a"]["head_cos_q50"] == 0.3 and math.isnan(rows["a"]["cos_mean"])
    assert rows["b"]["cos_mean"] == 0.2 and rows["b"].get("head_cos_mean") is None
    assert rows["a"]["acc_ref_clean"] is None and rows["c"]["acc_ref_clean"] == 0.9  # never invented
    assert rows["b"]["epochs_done"] == 3 and rows["c"]["epochs_done"] == 2  # int and float columns merge
    assert {r["schema_version"] for r in rows.values()} == {2}
    assert table.schema.metadata[SCHEMA_KEY] == b"2" and len(table) == 3


def test_columns_that_cannot_merge_are_refused_in_one_line(tmp_path: Path) -> None:
    one = experiment(tmp_path / "one", [trial("a", lam=0.5)], version=2)
    two = experiment(tmp_path / "two", [trial("b", lam="half")], version=2)
    with pytest.raises(GradpromError, match="cannot merge column 'lam': double in experiment 'one' but string in "
                                            "'two'"):
        aggregate([one, two])
    with pytest.raises(GradpromError, match="named twice"):
        aggregate([one, one])
    with pytest.raises(GradpromError, match="holds no trials.parquet"):
        aggregate([str(tmp_path)])
    newer = experiment(tmp_path / "newer", [trial("c")], version=99)
    with pytest.raises(GradpromError, match="newer than this gradprom"):
        aggregate([newer])
