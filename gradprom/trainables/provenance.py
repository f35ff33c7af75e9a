"""Where a trial's figures came from: package versions, the project's git commit, the device, and a
fingerprint of the exact data it trained and was scored on, recorded on every trial's result (so `rerun`
can say whether it reran the same thing)."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from pathlib import Path

import torch

from gradprom import __version__
from gradprom.datasets import TaskData


@functools.lru_cache(maxsize=1)
def versions() -> str:
    """JSON of the versions that decide the numbers (Python, gradprom, torch, numpy)."""
    import numpy

    return json.dumps({"python": platform.python_version(), "gradprom": __version__, "torch": torch.__version__,
                       "numpy": numpy.__version__}, sort_keys=True)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the gradprom checkout this code runs from ('' when it is not a git checkout), read from
    .git without running git (a Ray worker may have no git binary)."""
    root = Path(__file__).resolve().parents[2] / ".git"
    try:
        head = (root / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = root / ref
        if loose.is_file():
            return loose.read_text().strip()
        for line in (root / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return ""


def device_name(device: torch.device) -> str:
    """'cpu (x86_64)' or 'cuda:0 (NVIDIA H200)'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({platform.machine()})"


def data_fingerprint(data: TaskData) -> str:
    """SHA-1 over every split's images, targets and observed scans (shape, dtype and bytes): equal only for the same
    data."""
    digest = hashlib.sha1()
    for split in (data.train, data.val, data.test):
        for tensor in (split.images, split.targets, *(() if split.observed is None else (split.observed,))):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
            digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def provenance(data: TaskData, device: torch.device) -> dict[str, str]:
    """The provenance columns of a trial's results."""
    return {"run_versions": versions(), "run_git_commit": git_commit(), "run_device": device_name(device),
            "data_fingerprint": data_fingerprint(data)}
