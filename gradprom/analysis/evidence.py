"""What a protocol's trials say: per cell mean ± std and 95 % CI over seeds, paired tests of every strategy
against each baseline on the same seeds, and one verdict sentence per comparison — whichever way it went.

Figures are the final test-split ones (`test_*`; `eval_*` for a cross-domain run). The reference levels
(`*_ref_clean`, `*_ref_input`) are summarised but not compared: they do not depend on the strategy.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from gradprom.analysis import fronts
from gradprom.analysis.stats import LEVEL, UNITS, paired, short, spread, spread_text, starred, verdict
from gradprom.metrics import task_metric_name
from gradprom.results.parquet import TRIALS, read_rows, write_rows
from gradprom.results.rows import settings_view
from gradprom.results.storage import publish
from gradprom.search_spaces.protocol import SEED, STRATEGY, Protocol


def compared_metrics(task: str, row: dict[str, Any]) -> list[str]:
    """The columns a comparison tests, for a row of `task`: image quality, then the task figures."""
    m = task_metric_name(task)
    names = ["test_psnr", "test_ssim", f"test_{m}", f"test_{m}_ref"]
    names += [k for k in ("eval_psnr", f"eval_{m}_ref") if k in row]
    return names


def level_metrics(task: str) -> list[str]:
    """The fixed reference's levels on clean and degraded test images (summarised, never compared)."""
    m = task_metric_name(task)
    return [f"test_{m}_ref_clean", f"test_{m}_ref_input"]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _label(protocol: Protocol, key: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(protocol.group_keys(), key, strict=True) if v != "") or "all"


def analyse(protocol: Protocol, rows: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[str]]:
    """(summary rows, paired rows, verdicts) from the completed trials' rows of `protocol`."""
    done = [settings_view(r) for r in rows if r.get("status") == "completed"]
    groups: dict[tuple, list[dict]] = {}
    for r in done:  # a strategy that does not run over a front axis (enhancer_only over λ) joins every value of it
        values = [[r.get(k)] if k not in protocol.front or protocol.takes(str(r.get(STRATEGY)), k)
                  else protocol.front[k] for k in protocol.group_keys()]
        for key in itertools.product(*values):
            groups.setdefault(key, []).append(r)
    summary, comparisons, verdicts = [], [], []
    for key, members in groups.items():
        tags = dict(zip(protocol.group_keys(), key, strict=True))
        task = str(members[0].get("task", "classification"))
        by_strategy = {s: {int(r[SEED]): r for r in members if r.get(STRATEGY) == s} for s in protocol.grid[STRATEGY]}
        metrics = compared_metrics(task, members[0])
        for strategy, runs in by_strategy.items():
            for metric in metrics + level_metrics(task):
                found = spread([_number(r.get(metric)) for r in runs.values()])
                summary.append({**tags, "group": _label(protocol, key), STRATEGY: strategy, "metric": metric,
                                **found.as_dict()})
        for baseline in protocol.baselines:
            for strategy, runs in by_strategy.items():
                if strategy == baseline or not runs or not by_strategy[baseline]:
                    continue  # nothing to compare (a strategy with no finished trial here yet)
                seeds = sorted(set(runs) & set(by_strategy[baseline]))
                tested = []
                for metric in metrics:
                    test = paired([_number(runs[s].get(metric)) for s in seeds],
                                  [_number(by_strategy[baseline][s].get(metric)) for s in seeds])
                    sig_t, sig_w = test.significant()
                    comparisons.append({**tags, "group": _label(protocol, key), STRATEGY: strategy,
                                        "baseline": baseline, "metric": metric, **test.as_dict(),
                                        "significant_t": sig_t, "significant_wilcoxon": sig_w})
                    tested.append((metric, test))
                verdicts.append(verdict(strategy, baseline, _label(protocol, key), tested))
    return summary, comparisons, verdicts


def markdown(protocol: Protocol, summary: list[dict], comparisons: list[dict], verdicts: list[str]) -> str:
    """The protocol's tables (mean ± std [95 % CI] per group and strategy; paired tests) and its verdicts."""
    lines = [f"## Protocol {protocol.name}", "", protocol.description, ""]
    groups = list(dict.fromkeys(r["group"] for r in summary))
    for group in groups:
        mine = [r for r in summary if r["group"] == group]
        metrics = list(dict.fromkeys(r["metric"] for r in mine))
        lines += [f"### {group}: mean ± std [95 % CI] over seeds", "",
                  "| strategy | n | " + " | ".join(short(m) for m in metrics) + " |",
                  "|---|---|" + "---|" * len(metrics)]
        for strategy in dict.fromkeys(r[STRATEGY] for r in mine):
            cells = {r["metric"]: r for r in mine if r[STRATEGY] == strategy}
            n = max(r["n"] for r in cells.values())
            lines.append(f"| {strategy} | {n} | " + " | ".join(spread_text(cells[m]) for m in metrics) + " |")
        lines.append("")
    if comparisons:
        lines += ["### Paired comparisons (difference = strategy − baseline, same seeds)", "",
                  "| group | strategy | baseline | metric | n | mean diff | t | p (t) | W | p (Wilcoxon) | d_z |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['group']} | {c[STRATEGY]} | {c['baseline']} | {short(c['metric'])} | {c['n']} | "
                         f"{c['mean_diff']:+.4g} | {c['t']:.3g} | {starred(c['p_t'])} | {c['w']:.3g} | "
                         f"{starred(c['p_wilcoxon'])} | {c['d_z']:.3g} |")
        lines += ["", f"\\* significant at α = {LEVEL:g} (two-sided).", ""]
    lines += ["### Verdicts", ""] + [f"- {v}" for v in verdicts] + [""]
    return "\n".join(lines)


def plot(protocol: Protocol, summary: list[dict], path: Path) -> Path:
    """Mean with its 95 % CI per strategy (points with error bars, side by side) and group (x), one panel per
    compared metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(r["metric"] for r in summary if "ref_" not in r["metric"]))
    groups = list(dict.fromkeys(r["group"] for r in summary))
    strategies = list(protocol.grid[STRATEGY])
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(4.2 * max(1, len(metrics)), 3.8), squeeze=False)
    width = 0.8 / max(1, len(strategies))
    for ax, metric in zip(axes[0], metrics, strict=False):
        for i, strategy in enumerate(strategies):
            rows = {r["group"]: r for r in summary if r["metric"] == metric and r[STRATEGY] == strategy}
            means = [rows[g]["mean"] if g in rows else math.nan for g in groups]
            errors = [(rows[g]["mean"] - rows[g]["ci_low"]) if g in rows and rows[g]["n"] > 1 else 0.0
                      for g in groups]
            ax.errorbar([x + i * width for x in range(len(groups))], means, yerr=errors, fmt="o", capsize=3,
                        label=strategy, color=plt.get_cmap("tab10")(i % 10))
        ax.set_xticks([x + width * (len(strategies) - 1) / 2 for x in range(len(groups))])
        ax.set_xticklabels([g.replace(", ", "\n") for g in groups], fontsize=7)
        ax.set_ylabel(short(metric) + UNITS.get(short(metric), "").replace(" dB", " (dB)"))
        ax.set_title(f"{short(metric)}: mean, 95 % CI", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        finite = [r["ci_low"] if r["n"] > 1 else r["mean"] for r in summary if r["metric"] == metric]
        finite = [v for v in finite if math.isfinite(v)]
        if finite:  # start near the smallest value, so differences between strategies stay visible
            top = max(r["ci_high"] if r["n"] > 1 else r["mean"] for r in summary if r["metric"] == metric)
            low = min(finite)
            ax.set_ylim(low - 0.1 * (top - low + 1e-9), top + 0.1 * (top - low + 1e-9))
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"protocol {protocol.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


PROTOCOL_TABLE, PROTOCOL_PAGE, PROTOCOL_FIGURE = "protocol.parquet", "protocol.md", "protocol.png"


def write_evidence(protocol: Protocol, folder: Path, console: Console) -> list[str]:
    """protocol.parquet/.md/.png from the experiment's trials, and the tables and verdicts on the console."""
    rows = read_rows(folder / TRIALS)
    summary, comparisons, verdicts = analyse(protocol, rows)
    table: list[dict[str, Any]] = [{"kind": "summary", **r} for r in summary] + \
        [{"kind": "paired", **r} for r in comparisons]
    page = markdown(protocol, summary, comparisons, verdicts)
    written = [PROTOCOL_TABLE, PROTOCOL_PAGE, PROTOCOL_FIGURE]
    front_verdicts: list[str] = []
    if protocol.front:  # strategies compared by the fronts they reach over the front axes
        per_seed, hv_summary, hv_paired, front_verdicts, cells = fronts.analyse_fronts(protocol, rows)
        table += [{"kind": "hypervolume", **r} for r in per_seed] + [{"kind": "hv_summary", **r} for r in hv_summary] \
            + [{"kind": "hv_paired", **r} for r in hv_paired]
        figures = fronts.plot_cells(protocol, cells, folder)
        page += "\n" + fronts.markdown(hv_summary, hv_paired, front_verdicts, figures)
        written += [f"{fronts.FIGURES}/{p.name}" for p in figures]
    write_rows(folder / PROTOCOL_TABLE, table, ("kind", "group", "strategy", "baseline", "metric"))
    (folder / PROTOCOL_PAGE).write_text(page)
    plot(protocol, summary, folder / PROTOCOL_FIGURE)
    publish(folder, *written)
    show(summary, verdicts, console)
    if protocol.front:
        fronts.show(hv_summary, front_verdicts, console)
    console.print(f"protocol tables in {folder / PROTOCOL_PAGE}, figure {folder / PROTOCOL_FIGURE}")
    return verdicts + front_verdicts


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
                          *(spread_text(cells[m], interval=False) for m in metrics))
        console.print(table)
    for line in verdicts:
        console.print(f"• {line}", highlight=False, markup=False, soft_wrap=True)
