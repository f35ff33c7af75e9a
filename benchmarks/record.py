"""Shared by the benchmark scripts: describe this machine and keep a results table in README.md."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("README.md")


def machine() -> str:
    """'2-core Intel(R) Xeon(R) …, 23 GiB' — the machine a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    except OSError:
        mem = 0.0
    found = f"{os.cpu_count()}-core {cpu}, {mem:.0f} GiB"
    try:
        import torch

        if torch.cuda.is_available():
            found += f", GPU {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return found


def record(benchmark: str, result: dict, note: str = "") -> None:
    """Print one JSON line and add a row under the benchmark's heading in benchmarks/README.md."""
    row = {"benchmark": benchmark, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **result}
    print(json.dumps(row))
    cells = "; ".join(f"{k}={v}" for k, v in result.items())
    line = f"| {row['date']} | {row['machine']} | {cells} | {note} |"
    text = TABLE_FILE.read_text()
    marker = f"<!-- rows:{benchmark} -->"
    if marker not in text:
        raise SystemExit(f"{TABLE_FILE} has no '{marker}' line to add the row under")
    TABLE_FILE.write_text(text.replace(marker, f"{marker}\n{line}", 1))
