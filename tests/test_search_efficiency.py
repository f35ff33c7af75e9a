"""search_efficiency.py's rung-fidelity figure on hand-made results: Spearman's rho by the textbook formula."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.search_efficiency import rank_to_final
from gradprom import SCHEMA_VERSION
from gradprom.results.parquet import SCHEMA_KEY


def write(path: Path, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows).replace_schema_metadata({SCHEMA_KEY: str(SCHEMA_VERSION)})
    pq.write_table(table, path)


def test_rank_to_final_uses_completed_trials_and_each_rung(tmp_path: Path) -> None:
    # four completed trials (final psnr and task_metric rank a < b < c < d) and one a scheduler stopped, whose
    # figures would change every correlation if it were counted
    final = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    rung1_task = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}  # reversed: rho = -1
    rung2_task = {"a": 2.0, "b": 1.0, "c": 3.0, "d": 4.0}  # a and b swapped: rho = 1 - 6·2 / (4·15) = 0.8
    trials = [{"trial_id": t, "status": "completed", "budget": 3} for t in final]
    trials.append({"trial_id": "e", "status": "stopped_early", "budget": 3})
    epochs = []
    for t in final:
        epochs += [{"trial_id": t, "epoch": 1, "psnr": final[t], "task_metric": rung1_task[t]},
                   {"trial_id": t, "epoch": 2, "psnr": final[t] * 10, "task_metric": rung2_task[t]},
                   {"trial_id": t, "epoch": 3, "psnr": final[t] + 20, "task_metric": final[t]}]
    epochs.append({"trial_id": "e", "epoch": 1, "psnr": 99.0, "task_metric": 99.0})
    write(tmp_path / "trials.parquet", trials)
    write(tmp_path / "epochs.parquet", epochs)
    assert rank_to_final(tmp_path) == {"psnr": [1.0, 1.0], "task_metric": [-1.0, 0.8]}


def test_rank_to_final_is_none_where_an_objective_did_not_vary(tmp_path: Path) -> None:
    write(tmp_path / "trials.parquet", [{"trial_id": t, "status": "completed", "budget": 2} for t in "abc"])
    write(tmp_path / "epochs.parquet", [{"trial_id": t, "epoch": e, "psnr": float(i + e), "task_metric": 0.5}
                                        for i, t in enumerate("abc") for e in (1, 2)])
    assert rank_to_final(tmp_path) == {"psnr": [1.0], "task_metric": [None]}
