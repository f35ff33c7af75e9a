"""Shared fixtures (the helpers they use live in tests/fixtures/): tiny trial settings with an isolated cache, one
recognizer cache for the end-to-end runs, and one local Ray runtime shared by the in-process searches, so tests stay
fast and independent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# every Ray runtime the tests start (in this process, the CLI's children, the clusters) skips the idle workers Ray
# starts ahead for a new driver: trials run in actors of their own, so these only cost a second of CPU each
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
os.environ["COLUMNS"] = "120"  # Rich's width for the CLI's console, in this process as in the children

from tests.fixtures.processes import shared_ray  # noqa: E402
from tests.fixtures.settings import TINY  # noqa: E402


@pytest.fixture()
def ray_session(shared_cache: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """One local Ray runtime (2 CPUs, dashboard off) in this process, started by the first test that needs it and
    shared by every later in-process search (`cli`): a search reuses a runtime its caller started, so each one
    saves Python's and Ray's start and Ray's shutdown. Its trial processes use the session's recognizer cache.
    Tests that need no Ray in this process use `no_ray_session` (it stops the runtime; the next user starts it)."""
    shared_ray(shared_cache, request)
    yield


@pytest.fixture()
def no_ray_session() -> None:
    """No Ray runtime in this process (stops the shared one, if a test before started it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture()
def tiny(tmp_path: Path) -> dict:
    """TINY settings with a per-test recognizer cache."""
    return {**TINY, "cache_dir": str(tmp_path / "cache")}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One recognizer cache for the session's end-to-end runs (the cache is part of what they exercise)."""
    return str(tmp_path_factory.mktemp("gradprom-cache"))


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made (MLflow's migrations take seconds), copied by `mlflow_store`."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "empty.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture()
def mlflow_store(empty_mlflow_store: Path, tmp_path: Path) -> str:
    """A fresh MLflow tracking URI for one test: a copy of the migrated empty store."""
    import shutil

    shutil.copy(empty_mlflow_store, tmp_path / "mlruns.db")
    return f"sqlite:///{tmp_path / 'mlruns.db'}"
