"""Experiments in shared storage: `--out` as a pyarrow filesystem URI, written by the search (Tune's trials
included) and read back by `gradprom pareto` from the URI alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.fs
import pytest

from gradprom.errors import GradpromError
from gradprom.results.parquet import read_rows
from gradprom.results.storage import Store, local_folder, publish, store_of
from gradprom.trainables.checkpoint import CHECKPOINT_FILE
from tests.fixtures.cli import cli, gradprom
from tests.fixtures.settings import TINY_PARAMS


def test_store_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file:// store: pull fills a fresh local copy (Tune's ray/ tree left in place), publish writes back."""
    monkeypatch.setenv("GRADPROM_CACHE", str(tmp_path / "cache"))  # the local copy lives in the cache
    remote = tmp_path / "bucket" / "exp"
    (remote / "ray" / "synthetic").mkdir(parents=True)
    (remote / "manifest.json").write_text("{}")
    (remote / "ray" / "synthetic" / "state.json").write_text("{}")
    uri = f"file://{tmp_path}/bucket"
    local = local_folder(uri, "exp")
    assert local != remote and sorted(p.name for p in local.iterdir()) == ["manifest.json"]
    assert store_of(local) == Store.open(uri).child("exp")
    (local / "trials.parquet").write_bytes(b"PAR1")
    publish(local, "trials.parquet")
    assert (remote / "trials.parquet").read_bytes() == b"PAR1"
    assert isinstance(store_of(local).fs, pyarrow.fs.LocalFileSystem)


def test_plain_folders_are_not_mirrored(tmp_path: Path) -> None:
    local = local_folder(str(tmp_path), "exp")
    assert local == tmp_path.resolve() / "exp" and store_of(local) is None


def test_bad_uri_is_one_line() -> None:
    with pytest.raises(GradpromError, match="cannot open --out nosuch://x"):
        Store.open("nosuch://x/y")


@pytest.mark.slow
def test_search_to_a_storage_uri_then_pareto_from_it(tmp_path: Path, shared_cache: str, ray_session: None) -> None:
    """Trials (through Tune's storage_path) and the driver's Parquet land in the store; the local copy is not
    needed to read them back."""
    store = tmp_path / "store"
    uri = f"file://{store}"
    run = cli("search", "--dataset", "synthetic", "--trials", "2", "--epochs", "1", "--concurrency", "1", "--out", uri,
                   "--name", "shared", "--device", "cpu", *TINY_PARAMS, cache=shared_cache)
    assert run.returncode == 0, run.stderr[-3000:]
    folder = store / "shared"
    trials = read_rows(folder / "trials.parquet")
    assert len(trials) == 2 and {t["status"] for t in trials} == {"completed"}
    assert (folder / "manifest.json").is_file() and (folder / "pareto.parquet").is_file()
    checkpoints = list((folder / "ray").rglob(CHECKPOINT_FILE))
    assert checkpoints, "Tune wrote no trial checkpoint to the store"

    shutil.rmtree(Path(shared_cache) / "stores")  # no local copy left: pareto must read the store
    plot = tmp_path / "front.png"
    # a process of its own, as a reader on another machine: it has no local copy of the store either
    shown = gradprom("pareto", f"{uri}/shared", "--plot", str(plot), "--telemetry", "front", cache=shared_cache)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "Pareto front" in shown.stdout and plot.stat().st_size > 0
    assert (folder / "telemetry.png").stat().st_size > 0  # written back to the store
    assert not os.path.exists(tmp_path / "shared")
