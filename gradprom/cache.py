"""Where gradprom keeps what it makes once and reuses (reference recognizers, preprocessed data, local copies of
experiments in a store, rendered cluster configs): one folder, $GRADPROM_CACHE or ~/.cache/gradprom."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> str:
    """$GRADPROM_CACHE or ~/.cache/gradprom."""
    return os.environ.get("GRADPROM_CACHE") or str(Path.home() / ".cache" / "gradprom")
