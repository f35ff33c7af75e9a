"""`gradprom protocol`: a fixed grid run through the search's own orchestrator, then read as evidence.

The protocol's cells are enqueued into the study (see `search_spaces.protocol`), so the run is a search in
every other respect: the same Ray runtime, trials, Parquet results, retries and `--resume`. Afterwards the
completed trials are read as means, spreads and paired tests (`evidence`) and written beside the usual
files as protocol.parquet (kind = summary | paired), protocol.md and protocol.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from gradprom.errors import GradpromError
from gradprom.orchestrator import evidence
from gradprom.orchestrator.results import TRIALS, read_rows, write_rows
from gradprom.orchestrator.search import SearchRequest, run_search
from gradprom.orchestrator.storage import publish
from gradprom.search_spaces.protocol import Protocol, load_protocol

PROTOCOL_TABLE, PROTOCOL_PAGE, PROTOCOL_FIGURE = "protocol.parquet", "protocol.md", "protocol.png"


def protocol_request(name: str, req: SearchRequest, quick: bool = False, seeds: int = 0) -> tuple[Protocol,
                                                                                                 SearchRequest]:
    """The protocol and the search request that runs it (trials = its cells); checks what it needs."""
    if name.endswith(".json"):  # a user's protocol file: kept by absolute path, so --resume finds it
        name = str(Path(name).expanduser().resolve())
    protocol = load_protocol(name, quick=quick, seeds=seeds)
    if "eval_dataset" in protocol.needs and not req.eval_dataset:
        raise GradpromError(f"protocol {protocol.name} scores a second dataset: pass --eval-dataset NAME")
    req.protocol, req.quick, req.protocol_seeds = name, quick, seeds
    req.space = f"protocol-{Path(name).stem}" + ("-quick" if quick else "")
    req.trials = len(protocol.cells())
    return protocol, req


def run_protocol(name: str, req: SearchRequest, console: Console, quick: bool = False, seeds: int = 0) -> Path:
    """Run (or, with req.resume, continue) the protocol, then write and print its evidence."""
    protocol, req = protocol_request(name, req, quick, seeds)
    folder = run_search(req, console)
    write_evidence(protocol, folder, console)
    return folder


def write_evidence(protocol: Protocol, folder: Path, console: Console) -> list[str]:
    """protocol.parquet/.md/.png from the experiment's trials, and the tables and verdicts on the console."""
    rows = read_rows(folder / TRIALS)
    summary, comparisons, verdicts = evidence.analyse(protocol, rows)
    table: list[dict[str, Any]] = [{"kind": "summary", **r} for r in summary] + \
        [{"kind": "paired", **r} for r in comparisons]
    write_rows(folder / PROTOCOL_TABLE, table, ("kind", "group", "strategy", "baseline", "metric"))
    (folder / PROTOCOL_PAGE).write_text(evidence.markdown(protocol, summary, comparisons, verdicts))
    evidence.plot(protocol, summary, folder / PROTOCOL_FIGURE)
    publish(folder, PROTOCOL_TABLE, PROTOCOL_PAGE, PROTOCOL_FIGURE)
    show(summary, verdicts, console)
    console.print(f"protocol tables in {folder / PROTOCOL_PAGE}, figure {folder / PROTOCOL_FIGURE}")
    return verdicts


def show(summary: list[dict], verdicts: list[str], console: Console) -> None:
    """One Rich table per group (mean ± std over seeds per strategy and metric), then the verdicts."""
    for group in dict.fromkeys(r["group"] for r in summary):
        mine = [r for r in summary if r["group"] == group]
        metrics = list(dict.fromkeys(r["metric"] for r in mine))
        table = Table(title=f"{group}: mean ± std over seeds", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("strategy", "n", *(m.removeprefix("test_") for m in metrics)):
            table.add_column(col, justify="left" if col == "strategy" else "right")
        for strategy in dict.fromkeys(r["strategy"] for r in mine):
            cells = {r["metric"]: r for r in mine if r["strategy"] == strategy}
            table.add_row(strategy, str(max(c["n"] for c in cells.values())),
                          *(_mean_std(cells[m]) for m in metrics))
        console.print(table)
    for line in verdicts:
        console.print(f"• {line}", highlight=False, markup=False, soft_wrap=True)


def _mean_std(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "–"
    return f"{r['mean']:.4g}" if r["n"] < 2 else f"{r['mean']:.4g} ± {r['std']:.2g}"
