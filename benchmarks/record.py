"""Shared by the benchmark scripts: their `--record`/`--readme` options, one JSON object per stdout line, the
machine a figure was measured on, and the results tables in README.md (written only with `--record`)."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

TABLE_FILE = Path(__file__).with_name("README.md")


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add the options every benchmark takes (`--record`: add the summary row to the table; `--readme PATH`: which
    table file), parse the command line, and refuse `--readme` without `--record` before any work is done."""
    parser.add_argument("--record", action="store_true",
                        help="also add the summary row under this benchmark's heading in the README table")
    parser.add_argument("--readme", type=Path, default=None, metavar="PATH",
                        help=f"the table file --record adds the row to (default {TABLE_FILE})")
    args = parser.parse_args()
    if args.readme is not None and not args.record:
        parser.error("--readme only applies with --record")  # it would be ignored
    return args


def _plain(value: Any) -> Any:
    """`value` with non-finite floats as None (JSON has no NaN or infinity) and numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy or torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit(row: dict) -> None:
    """Print `row` as one JSON object on its own stdout line (NaN and infinities as null)."""
    print(json.dumps(_plain(row), allow_nan=False), flush=True)


def cpu_model() -> str:
    """'Intel(R) Xeon(R) Processor': /proc/cpuinfo's model name, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """'2-core Intel(R) Xeon(R) …, 23 GiB' — the machine a figure was measured on."""
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    except OSError:
        mem = 0.0
    found = f"{os.cpu_count()}-core {cpu_model()}, {mem:.0f} GiB"
    try:
        import torch

        if torch.cuda.is_available():
            found += f", GPU {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return found


def record(benchmark: str, result: dict, args: argparse.Namespace, note: str = "") -> None:
    """Print the summary as one JSON line; with `--record`, also add it as a row under `<!-- rows:BENCHMARK -->`
    in the README (or `--readme PATH`). The row's figures are `key=value` cells, as the tables have them."""
    row = {"benchmark": benchmark, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **result}
    emit({**row, "note": note} if note else row)
    if not args.record:
        return
    table = args.readme or TABLE_FILE
    cells = "; ".join(f"{k}={v}" for k, v in result.items())
    line = f"| {row['date']} | {row['machine']} | {cells} | {note} |"
    text = table.read_text()
    marker = f"<!-- rows:{benchmark} -->"
    if marker not in text:
        raise SystemExit(f"{table} has no '{marker}' line to add the row under")
    table.write_text(text.replace(marker, f"{marker}\n{line}", 1))
