"""Strategies compared by the fronts they reach over λ (and τ), not at one λ.

The strategies use λ differently, so one λ puts them at different points of the trade-off. In a front protocol
each strategy runs, inside each cell (every grid setting but the strategy, the seed and the front axes), at every
value of the front axes; per seed its runs are a set of points on the protocol's two objectives (default: test
PSNR and the fixed clean-trained reference's task metric, both maximised). From those:

- per (cell, strategy, seed): the hypervolume of that set (moocore) from a fixed, stated reference point;
- across seeds: mean ± std and the 95 % CI of each strategy's hypervolume, and paired t and exact Wilcoxon tests
  with the effect size d_z of each strategy against each baseline on the same seeds (`stats`);
- the empirical attainment function over seeds (moocore's `eaf`): each strategy's 50 % attainment surface (what
  at least half of the seeds reach), and `eafdiff` against each baseline: where in objective space one attains
  more often than the other, summarised as the share of the objective box each side leads;
- a verdict per comparison in words, whichever way it goes.

A strategy without the front's setting (`enhancer_only` has no λ) is one point per seed and enters as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import moocore
import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from gradprom.analysis.pareto import reference_point
from gradprom.analysis.stats import LEVEL, paired, spread, spread_text, starred, verdict
from gradprom.metrics import task_metric_name
from gradprom.results.rows import settings_view
from gradprom.search_spaces.protocol import SEED, STRATEGY, Protocol

HV = "hypervolume"
FIGURES = "fronts"  # the experiment's subfolder of front figures
VERDICTS = "### Verdicts on the fronts"


@dataclass
class Cell:
    """One cell of a front protocol: its settings, its two objectives (columns) and reference point, and each
    strategy's points per seed ([k, 2] arrays, maximised)."""

    label: str
    tags: dict[str, Any]
    objectives: tuple[str, str]
    reference: tuple[float, float]
    points: dict[str, dict[int, np.ndarray]]

    def seeds(self) -> list[int]:
        return sorted({s for runs in self.points.values() for s in runs})


def columns_for(protocol: Protocol, task: str) -> tuple[str, str]:
    """The protocol's front objectives as result columns of a `task` row (`task_metric` → acc or dice)."""
    name = task_metric_name(task)
    first, second = (o.replace("task_metric", name) for o in protocol.front_objectives)
    return first, second


def _finite(row: dict[str, Any], columns: tuple[str, ...]) -> bool:
    return all(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool) and math.isfinite(row[c])
               for c in columns)


def cells_of(protocol: Protocol, rows: list[dict[str, Any]]) -> list[Cell]:
    """The completed trials of `protocol` as cells of per-seed point sets."""
    keys = protocol.cell_keys()
    grouped: dict[tuple, list[dict[str, Any]]] = {}
    for r in map(settings_view, rows):
        if r.get("status") == "completed":
            grouped.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    cells = []
    for key, members in grouped.items():
        task = str(members[0].get("task", "classification"))
        objectives = columns_for(protocol, task)
        given = [protocol.hv_reference[o] for o in protocol.front_objectives] if protocol.hv_reference else []
        reference = tuple(reference_point(objectives, given))
        points: dict[str, dict[int, list[list[float]]]] = {}
        for r in members:
            if _finite(r, objectives):
                points.setdefault(str(r[STRATEGY]), {}).setdefault(int(r[SEED]), []).append(
                    [float(r[objectives[0]]), float(r[objectives[1]])])
        tags = dict(zip(keys, key, strict=True))
        label = ", ".join(f"{k}={v}" for k, v in tags.items() if v != "") or "all"
        cells.append(Cell(label, tags, objectives, (reference[0], reference[1]),
                          {s: {seed: np.array(p, dtype=float) for seed, p in runs.items()}
                           for s, runs in points.items()}))
    return cells


def front_size(protocol: Protocol, strategy: str) -> int:
    """How many points a seed's front of `strategy` holds when every run finished: one per value of each front
    axis it takes (1 for a strategy that runs once)."""
    return math.prod(len(v) for k, v in protocol.front.items() if protocol.takes(strategy, k))


def hypervolume(points: np.ndarray, reference: tuple[float, float]) -> float:
    """The area the points dominate above `reference` (both objectives maximised; 0 for no point beyond it)."""
    if not len(points):
        return 0.0
    return float(moocore.hypervolume(points, ref=list(reference), maximise=True))


def attainment(runs: dict[int, np.ndarray], percentile: float = 50) -> np.ndarray:
    """The `percentile` % attainment surface of a strategy's per-seed point sets (maximised): the points whose
    region at least that share of the seeds reaches, [k, 2] sorted by the first objective. moocore minimises, so
    the objectives are negated on the way in and out."""
    data = np.vstack([-p for p in runs.values()])
    sets = np.concatenate([[i] * len(p) for i, p in enumerate(runs.values())])
    surface = -moocore.eaf(data, sets, percentiles=[percentile])[:, :2]
    return surface[np.argsort(surface[:, 0])]


def eaf_difference(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> np.ndarray:
    """moocore's `eafdiff` of two strategies' per-seed sets as rectangles [x_low, y_low, x_high, y_high, diff] in
    the maximised objectives, `diff` the share of a's seeds minus the share of b's that attain the rectangle
    (> 0: a attains it more often). Unbounded sides are ±inf."""
    def stack(runs: dict[int, np.ndarray]) -> np.ndarray:
        return np.vstack([np.column_stack([-p, np.full(len(p), i + 1)]) for i, p in enumerate(runs.values())])

    rects = moocore.eafdiff(stack(a), stack(b), rectangles=True)
    if not len(rects):
        return np.zeros((0, 5))
    lows, highs = -rects[:, 2:4], -rects[:, 0:2]  # negating swaps which corner is low
    return np.column_stack([lows, highs, rects[:, 4] / len(a)])


def lead_shares(rects: np.ndarray, box_low: tuple[float, float], box_high: tuple[float, float]) -> tuple[float, float]:
    """(share of the box where the first side attains more often, share where the second does): the rectangles'
    areas inside the box [box_low, box_high], weighted by how much more often (1: every seed against none)."""
    area = (box_high[0] - box_low[0]) * (box_high[1] - box_low[1])
    if area <= 0 or not len(rects):
        return 0.0, 0.0
    lo = np.maximum(rects[:, :2], box_low)
    hi = np.minimum(rects[:, 2:4], box_high)
    covered = np.clip(hi - lo, 0, None).prod(axis=1)
    diff = rects[:, 4]
    return float((covered * np.clip(diff, 0, None)).sum() / area), float((covered * np.clip(-diff, 0, None)).sum()
                                                                          / area)


def objective_box(cell: Cell) -> tuple[tuple[float, float], tuple[float, float]]:
    """The box the cell's points span (every strategy and seed): from the worst to the best value reached on each
    objective, where the fronts differ (below it every strategy attains everything)."""
    every = np.vstack([p for runs in cell.points.values() for p in runs.values()])
    return (float(every[:, 0].min()), float(every[:, 1].min())), (float(every[:, 0].max()), float(every[:, 1].max()))


def analyse_fronts(protocol: Protocol, rows: list[dict[str, Any]]
                   ) -> tuple[list[dict], list[dict], list[dict], list[str], list[Cell]]:
    """(hypervolume per cell, strategy and seed; its spread per strategy; paired tests against each baseline;
    verdicts; the cells) for a front protocol's completed trials."""
    per_seed, summary, comparisons, verdicts = [], [], [], []
    cells = cells_of(protocol, rows)
    for cell in cells:
        common = {"group": cell.label, **cell.tags, "objectives": ",".join(cell.objectives),
                  "reference": ",".join(f"{v:g}" for v in cell.reference)}
        # a seed's front counts once it holds a point for every front value its strategy runs (a failed or
        # unfinished run would bias its hypervolume low); incomplete ones are listed, not compared
        volumes = {s: {seed: hypervolume(p, cell.reference) for seed, p in runs.items()
                       if len(p) >= front_size(protocol, s)} for s, runs in cell.points.items()}
        for strategy in protocol.grid[STRATEGY]:
            for seed, points in sorted(cell.points.get(strategy, {}).items()):
                per_seed.append({**common, STRATEGY: strategy, SEED: seed,
                                 HV: volumes[strategy].get(seed, math.nan), "points": len(points),
                                 "complete": seed in volumes[strategy]})
            summary.append({**common, STRATEGY: strategy, "metric": HV,
                            **spread(list(volumes.get(strategy, {}).values())).as_dict()})
        low, high = objective_box(cell)
        for baseline in protocol.baselines:
            for strategy in protocol.grid[STRATEGY]:
                if strategy == baseline or strategy not in volumes or baseline not in volumes:
                    continue
                seeds = sorted(set(volumes[strategy]) & set(volumes[baseline]))
                if not seeds:
                    continue  # no seed where both fronts are complete yet: nothing to compare
                test = paired([volumes[strategy][s] for s in seeds], [volumes[baseline][s] for s in seeds])
                sig_t, sig_w = test.significant()
                mine = {s: cell.points[strategy][s] for s in seeds}
                theirs = {s: cell.points[baseline][s] for s in seeds}
                ahead, behind = lead_shares(eaf_difference(mine, theirs), low, high)
                comparisons.append({**common, STRATEGY: strategy, "baseline": baseline, "metric": HV,
                                    **test.as_dict(), "significant_t": sig_t, "significant_wilcoxon": sig_w,
                                    "eaf_lead": ahead, "eaf_behind": behind})
                verdicts.append(verdict(strategy, baseline, f"fronts, {cell.label}", [(HV, test)])
                                + f" It attains more often than {baseline} over {ahead:.0%} of the objective box "
                                  f"(weighted by how much more often), {baseline} over {behind:.0%}.")
    return per_seed, summary, comparisons, verdicts, cells


def markdown(summary: list[dict], comparisons: list[dict], verdicts: list[str], figures: list[Path]) -> str:
    """The front comparison's tables, verdicts and figures, as a section of protocol.md."""
    lines = ["## Fronts over the front axes", ""]
    for group in dict.fromkeys(r["group"] for r in summary):
        mine = [r for r in summary if r["group"] == group]
        lines += [f"### {group}: front hypervolume per seed, mean ± std [95 % CI]", "",
                  f"Objectives {mine[0]['objectives']} (both maximised); reference point {mine[0]['reference']}.", "",
                  "| strategy | n | hypervolume |", "|---|---|---|"]
        for r in mine:
            lines.append(f"| {r[STRATEGY]} | {r['n']} | {spread_text(r)} |")
        lines.append("")
    if comparisons:
        lines += ["### Paired comparisons of front hypervolume (strategy − baseline, same seeds)", "",
                  "| group | strategy | baseline | n | mean diff | p (t) | p (Wilcoxon) | d_z | EAF lead "
                  "| EAF behind |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['group']} | {c[STRATEGY]} | {c['baseline']} | {c['n']} | {c['mean_diff']:+.4g} | "
                         f"{starred(c['p_t'])} | {starred(c['p_wilcoxon'])} | {c['d_z']:.3g} | {c['eaf_lead']:.0%} | "
                         f"{c['eaf_behind']:.0%} |")
        lines += ["", f"\\* significant at α = {LEVEL:g} (two-sided). EAF lead/behind: the share of the objective "
                      "box (the worst to the best values any strategy reached) where the strategy attains more / less "
                      "often than the baseline, weighted by the difference in the share of seeds.", ""]
    lines += [VERDICTS, ""] + [f"- {v}" for v in verdicts] + [""]
    lines += [f"![{p.stem}]({FIGURES}/{p.name})" for p in figures] + [""]
    return "\n".join(lines)


def written_verdicts(page: Path) -> list[str]:
    """The front verdicts protocol.md holds (what `pareto --by strategy` shows again)."""
    if not page.is_file():
        return []
    lines = page.read_text().splitlines()
    start = lines.index(VERDICTS) if VERDICTS in lines else len(lines)
    return [line[2:] for line in lines[start + 1:] if line.startswith("- ")]


def show(summary: list[dict], verdicts: list[str], console: Console) -> None:
    """One Rich table per cell: each strategy's front hypervolume over seeds; then the verdicts."""
    for group in dict.fromkeys(r["group"] for r in summary):
        table = Table(title=f"fronts, {group}: hypervolume over seeds", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("strategy", "n", "mean ± std", "95 % CI"):
            table.add_column(col, justify="left" if col == "strategy" else "right")
        for r in (r for r in summary if r["group"] == group):
            ci = f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if r["n"] > 1 else "–"
            table.add_row(r[STRATEGY], str(r["n"]), spread_text(r, interval=False), ci)
        console.print(table)
    for line in verdicts:
        console.print(f"• {line}", highlight=False, markup=False, soft_wrap=True)


def plot_attainment(cell: Cell, strategies: list[str], path: Path) -> Path:
    """Each strategy's 50 % attainment surface over seeds (a step line; its seeds' points faint), one cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    for i, strategy in enumerate(s for s in strategies if s in cell.points):
        color = plt.get_cmap("tab10")(i % 10)
        runs = cell.points[strategy]
        every = np.vstack(list(runs.values()))
        ax.scatter(every[:, 0], every[:, 1], s=10, alpha=0.25, color=color)
        surface = attainment(runs)
        ax.step(surface[:, 0], surface[:, 1], where="pre", color=color, label=f"{strategy} ({len(runs)} seeds)")
        ax.scatter(surface[:, 0], surface[:, 1], s=18, color=color)
    ax.set_xlabel(f"{cell.objectives[0]} (higher is better)")
    ax.set_ylabel(f"{cell.objectives[1]} (higher is better)")
    ax.set_title(f"50 % attainment surfaces over seeds · {cell.label}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_eaf_difference(cell: Cell, strategy: str, baseline: str, path: Path) -> Path:
    """Where `strategy` attains more often than `baseline` (red) or less (blue), from the EAF difference over the
    same seeds, with both 50 % attainment surfaces drawn on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    seeds = sorted(set(cell.points[strategy]) & set(cell.points[baseline]))
    mine = {s: cell.points[strategy][s] for s in seeds}
    theirs = {s: cell.points[baseline][s] for s in seeds}
    (x0, y0), (x1, y1) = objective_box(cell)
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    cmap = plt.get_cmap("RdBu_r")
    for lx, ly, hx, hy, diff in eaf_difference(mine, theirs):
        if diff:
            lx, ly, hx, hy = max(lx, x0), max(ly, y0), min(hx, x1), min(hy, y1)
            if hx > lx and hy > ly:
                ax.add_patch(Rectangle((lx, ly), hx - lx, hy - ly, color=cmap(0.5 + diff / 2), lw=0))
    for runs, name, style in ((mine, strategy, "-"), (theirs, baseline, "--")):
        surface = attainment(runs)
        ax.step(surface[:, 0], surface[:, 1], where="pre", color="black", ls=style, label=f"{name}: 50 % surface")
    dx, dy = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
    ax.set_xlim(x0 - 0.05 * dx, x1 + 0.05 * dx)
    ax.set_ylim(y0 - 0.05 * dy, y1 + 0.05 * dy)
    ax.set_xlabel(f"{cell.objectives[0]} (higher is better)")
    ax.set_ylabel(f"{cell.objectives[1]} (higher is better)")
    ax.set_title(f"EAF difference, {strategy} − {baseline} ({len(seeds)} seeds) · {cell.label}\n"
                 f"red: {strategy} attains more often, blue: {baseline}", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cells(protocol: Protocol, cells: list[Cell], folder: Path) -> list[Path]:
    """The attainment figure of each cell and the EAF-difference figure of each strategy against each baseline, in
    FOLDER/fronts/."""
    folder = folder / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, cell in enumerate(cells):
        if not cell.points:
            continue
        out.append(plot_attainment(cell, list(protocol.grid[STRATEGY]), folder / f"fronts-{i}-attainment.png"))
        for baseline in protocol.baselines:
            for strategy in protocol.grid[STRATEGY]:
                if strategy != baseline and strategy in cell.points and baseline in cell.points and \
                        set(cell.points[strategy]) & set(cell.points[baseline]):
                    out.append(plot_eaf_difference(cell, strategy, baseline,
                                                   folder / f"fronts-{i}-eafdiff-{strategy}-vs-{baseline}.png"))
    return out
