"""Parquet results: flat columns, schema version, atomic writes, clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gradprom import SCHEMA_VERSION
from gradprom.errors import GradpromError
from gradprom.results.parquet import error_line, read_rows, write_rows


def test_round_trip_mixed_rows(tmp_path: Path) -> None:
    rows = [{"trial_id": "a", "psnr": 25.0, "acc": 0.5, "epochs_done": 3},
            {"trial_id": "b", "psnr": 24, "miou": 0.4, "error": "x", "cfg": {"k": 1}}]
    path = write_rows(tmp_path / "t.parquet", rows, ("trial_id",))
    table = pq.read_table(path)
    assert table.column_names[0] == "trial_id"
    assert int(table.schema.metadata[b"gradprom.schema_version"]) == SCHEMA_VERSION
    back = read_rows(path)
    assert back[1]["psnr"] == 24.0 and back[0]["miou"] is None and back[1]["cfg"] == '{"k": 1}'
    assert not list(tmp_path.glob(".*tmp"))


def test_truncated_and_foreign_files_are_reported(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "trials.parquet", [{"a": 1.0}] * 50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GradpromError, match="not a readable Parquet file"):
        read_rows(path)
    pq.write_table(pq.read_table(write_rows(tmp_path / "ok.parquet", [{"a": 1.0}])).replace_schema_metadata({}),
                   tmp_path / "foreign.parquet")
    with pytest.raises(GradpromError, match="not written by gradprom"):
        read_rows(tmp_path / "foreign.parquet")
    with pytest.raises(GradpromError, match="no missing.parquet"):
        read_rows(tmp_path / "missing.parquet")


def test_error_line_digs_out_the_reason() -> None:
    wrapped = ("ray.exceptions.RayTaskError(NonFiniteLossError): ray::tune_trial() (pid=1)\n"
               "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
               "gradprom.errors.NonFiniteLossError: non-finite loss at epoch 2 step 5\n")
    assert error_line(wrapped) == "non-finite loss at epoch 2 step 5"

    class Wrapper(Exception):
        def __init__(self, cause):
            super().__init__("wrapped")
            self.cause = cause

    assert error_line(Wrapper(ValueError("bad value"))) == "bad value"
    assert error_line(None) == ""
