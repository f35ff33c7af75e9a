"""Shared fixtures: tiny trial settings and an isolated cache, so tests stay fast and independent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

#: a trial small enough for a 2-core CPU in about a second per epoch
TINY = {
    "image_size": 32, "n_train": 64, "n_val": 32, "n_test": 32, "enhancer_blocks": 1, "enhancer_channels": 8,
    "recognizer_width": 4, "batch_size": 16, "pretrain_epochs": 1, "epochs": 1, "device": "cpu", "threads": 1,
}


@pytest.fixture()
def tiny(tmp_path: Path) -> dict:
    """TINY settings with a per-test recognizer cache."""
    return {**TINY, "cache_dir": str(tmp_path / "cache")}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One recognizer cache for the session's end-to-end runs (the cache is part of what they exercise)."""
    return str(tmp_path_factory.mktemp("gradprom-cache"))


def record_decodes(monkeypatch: pytest.MonkeyPatch, masks: bool = False) -> list[Path]:
    """From now on, every image file decoded through `files.read_image` (and with `masks`, every mask through
    `files.read_mask`) is appended to the returned list: the real-dataset loaders all decode through them."""
    from gradprom.datasets import files

    seen: list[Path] = []
    read_image, read_mask = files.read_image, files.read_mask
    monkeypatch.setattr(files, "read_image", lambda path, channels: seen.append(path) or read_image(path, channels))
    if masks:
        monkeypatch.setattr(files, "read_mask", lambda path: seen.append(path) or read_mask(path))
    return seen
