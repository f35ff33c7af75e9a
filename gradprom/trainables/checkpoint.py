"""Trial checkpoints: plain state dicts, loaded with `weights_only=True` (no pickled code runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gradprom.errors import GradpromError

CHECKPOINT_FILE = "trial.pt"
FORMAT = "gradprom-trial-v2"  # v2: with the gates' state (v1 resumed would gate differently)


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically (temporary file + rename) into `directory`."""
    path = Path(directory) / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; anything else is refused with one line."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise GradpromError(f"no gradprom checkpoint at {path}; point at a trial checkpoint folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not ours
        raise GradpromError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to start over") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GradpromError(f"{path} is not a gradprom trial checkpoint (format {FORMAT} expected)")
    return state
