"""Protocols: fixed grids (strategies × degradations × auxiliaries × seeds) stored as data, like spaces.

A protocol file (`protocols/NAME.json`, or a user's file by path) holds `description`, `fixed` (settings every
trial gets), `grid` (axis → list of values; a value that is an object sets several settings at once, e.g.
`{"task": "classification", "aux_task": "segmentation"}`), `seeds` (how many, 0…K−1), `baselines` (the
strategies every other one is compared with on the same seeds), optionally `needs` (CLI options it requires,
e.g. `eval_dataset`) and `quick` (a smaller `grid`/`seeds`/`fixed`/`front` for smoke runs). The grid becomes one
categorical search space whose every cell is enqueued, so a protocol runs through the search's own
orchestrator (Ray Tune, Optuna, results, resume) and is evidence, not a search.

A front protocol also names `front` axes (e.g. `{"lam": [0.01, 0.1, 1]}`): inside each cell, each strategy runs
at every value of the axes it takes (a strategy without that setting, such as `enhancer_only` without λ, runs
once), and strategies are compared by the fronts those runs reach per seed (`analysis/fronts.py`), on
`front_objectives` (default: test PSNR and the fixed reference's task metric) with hypervolumes from
`hv_reference` (default: PSNR 10 dB, task metrics 0).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gradprom.errors import GradpromError, unknown_name
from gradprom.search_spaces import SearchSpace, validate
from gradprom.strategies import strategy_options
from gradprom.trainables.config import TrialConfig

PROTOCOL_KEYS = ("description", "fixed", "grid", "seeds", "baselines", "needs", "quick", "front", "front_objectives",
                 "hv_reference")
QUICK_KEYS = ("grid", "seeds", "fixed", "front")
#: a front's objectives, both maximised: "task_metric_ref" is the fixed reference's task metric (acc_ref, dice_ref)
FRONT_OBJECTIVES = ("test_psnr", "test_task_metric_ref")
NEEDS = ("eval_dataset",)
#: the axis every comparison pairs over, and the one it compares along
SEED, STRATEGY = "seed", "strategy"


@dataclass
class Protocol:
    """A loaded protocol: its cells are `fixed` + one value per grid axis + a seed."""

    name: str
    description: str
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: int
    baselines: list[str]
    needs: list[str] = field(default_factory=list)
    #: front axis → its values; the strategies that take each axis's setting (the others run once per cell)
    front: dict[str, list[Any]] = field(default_factory=dict)
    front_takers: dict[str, list[str]] = field(default_factory=dict)
    front_objectives: tuple[str, ...] = FRONT_OBJECTIVES
    hv_reference: dict[str, float] = field(default_factory=dict)

    def keys(self) -> list[str]:
        """The trial settings the grid varies (object-valued axes contribute each of their keys), then the front
        axes, then seed."""
        found: list[str] = []
        for axis, values in self.grid.items():
            for key in (k for v in values for k in (v if isinstance(v, dict) else {axis: v})):
                if key not in found:
                    found.append(key)
        return [*found, *(k for k in self.front if k not in found), SEED]

    def cells(self) -> list[dict[str, Any]]:
        """Every cell of the grid, seed last and fastest, each with a value for every varied key (a key an
        object-valued axis leaves out gets the trial default, e.g. no `aux_task`). A strategy runs at each value
        of the front axes it takes, once with the fixed value of those it does not."""
        defaults = TrialConfig().to_dict()
        keys = self.keys()
        out = []
        for combo in itertools.product(*self.grid.values()):
            cell: dict[str, Any] = {}
            for axis, value in zip(self.grid, combo, strict=True):
                cell.update(value if isinstance(value, dict) else {axis: value})
            axes = [k for k in self.front if cell.get(STRATEGY) in self.front_takers.get(k, [])]
            for values in itertools.product(*(self.front[k] for k in axes), range(self.seeds)):
                full = {**cell, **dict(zip([*axes, SEED], values, strict=True))}
                out.append({k: full.get(k, self.fixed.get(k, defaults[k])) for k in keys})
        return out

    def takes(self, strategy: str, key: str) -> bool:
        """Whether `strategy` runs over the front axis `key` (else its one run stands for every value)."""
        return strategy in self.front_takers.get(key, [])

    def space(self) -> SearchSpace:
        """The grid as a categorical space (what Optuna holds; every cell is enqueued, none sampled)."""
        cells = self.cells()
        params = {k: {"type": "categorical", "choices": sorted({c[k] for c in cells}, key=str)} for k in self.keys()}
        return SearchSpace(self.name, self.description, dict(self.fixed), params, cells)

    def group_keys(self) -> list[str]:
        """What a comparison at one point holds fixed: every varied key but the strategy and the seed."""
        return [k for k in self.keys() if k not in (STRATEGY, SEED)]

    def cell_keys(self) -> list[str]:
        """What a comparison of fronts holds fixed: every varied key but the strategy, the seed and the front axes."""
        return [k for k in self.group_keys() if k not in self.front]


def _files() -> dict[str, Any]:
    folder = resources.files("gradprom.search_spaces") / "protocols"
    return {p.name[:-5]: p for p in folder.iterdir() if p.name.endswith(".json")}


def protocol_names() -> list[str]:
    return sorted(_files())


def _read(name: str) -> tuple[str, dict[str, Any]]:
    files = _files()
    if name.endswith(".json"):
        path = Path(name).expanduser()
        try:
            return str(path), json.loads(path.read_text())
        except OSError as exc:
            raise GradpromError(f"cannot read protocol file {path} ({exc.strerror}); check the path") from exc
        except json.JSONDecodeError as exc:
            raise GradpromError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") \
                from exc
    if name not in files:
        raise unknown_name("protocol", name, files)
    return name, json.loads(files[name].read_text())


def load_protocol(name: str, quick: bool = False, seeds: int = 0) -> Protocol:
    """A shipped protocol by name or a user's file by path; `quick` takes its `quick` section, `seeds` (> 0)
    overrides the seed count. Checked on load: keys, types, strategy and setting names, every cell's values."""
    label, raw = _read(name)
    if not isinstance(raw, dict):
        raise GradpromError(f"protocol {label}: a protocol file holds a JSON object with {', '.join(PROTOCOL_KEYS)}")
    for key in raw:
        if key not in PROTOCOL_KEYS:
            raise unknown_name(f"key of protocol {label}", key, PROTOCOL_KEYS)
    if quick:
        small = raw.get("quick") or {}
        if not small:
            raise GradpromError(f"protocol {label} has no 'quick' section; run it without --quick")
        for key in small:
            if key not in QUICK_KEYS:
                raise unknown_name(f"key of protocol {label}'s quick section", key, QUICK_KEYS)
        raw = {**raw, "grid": small.get("grid", raw.get("grid")), "seeds": small.get("seeds", raw.get("seeds")),
               "fixed": {**raw.get("fixed", {}), **small.get("fixed", {})},
               "front": small.get("front", raw.get("front"))}
    grid, fixed = raw.get("grid"), raw.get("fixed", {})
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise GradpromError(f"protocol {label}: 'grid' must map each axis to a non-empty list of values")
    if STRATEGY not in grid:
        raise GradpromError(f"protocol {label}: the grid needs a 'strategy' axis (what the comparisons compare)")
    if not isinstance(fixed, dict):
        raise GradpromError(f"protocol {label}: 'fixed' must be a JSON object of trial settings")
    count = seeds or raw.get("seeds", 5)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise GradpromError(f"protocol {label}: seeds must be a whole number ≥ 1, got {count!r}")
    baselines = raw.get("baselines", [])
    if quick:  # the smaller grid compares with the baselines it kept
        baselines = [b for b in baselines if b in grid[STRATEGY]]
    missing = [b for b in baselines if b not in grid[STRATEGY]]
    if missing:
        raise GradpromError(f"protocol {label}: baseline {missing[0]} is not on the strategy axis "
                            f"({', '.join(map(str, grid[STRATEGY]))})")
    needs = list(raw.get("needs", []))
    for need in needs:
        if need not in NEEDS:
            raise unknown_name(f"'needs' entry of protocol {label}", need, NEEDS)
    front = raw.get("front") or {}
    if not isinstance(front, dict) or not all(isinstance(v, list) and v for v in front.values()):
        raise GradpromError(f"protocol {label}: 'front' must map each axis to a non-empty list of values")
    clash = [k for k in front if k in grid or k == SEED]
    if clash:
        raise GradpromError(f"protocol {label}: '{clash[0]}' is both a front axis and a grid axis; name it once")
    takers = {k: [s for s in grid[STRATEGY] if k in strategy_options(s)] for k in front}
    for key, names in takers.items():
        if key in TrialConfig.field_names() and not names:
            raise GradpromError(f"protocol {label}: no strategy on the strategy axis takes front axis '{key}'; "
                                "front over a setting the strategies read (lam, threshold)")
    objectives = tuple(raw.get("front_objectives", FRONT_OBJECTIVES))
    if len(objectives) != 2 or not all(isinstance(o, str) and o.startswith(("test_", "eval_")) for o in objectives):
        raise GradpromError(f"protocol {label}: front_objectives must name two test_/eval_ result columns (both "
                            f"maximised), got {list(objectives)}")
    reference = raw.get("hv_reference", {})
    if not isinstance(reference, dict) or (reference and set(reference) != set(objectives)) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in reference.values()):
        raise GradpromError(f"protocol {label}: hv_reference maps front objectives ({', '.join(objectives)}) to "
                            f"numbers, got {reference!r}")
    protocol = Protocol(label, str(raw.get("description", "")), dict(fixed), dict(grid), count, list(baselines), needs,
                        dict(front), takers, objectives, {k: float(v) for k, v in reference.items()})
    known = set(TrialConfig.field_names())
    for key in [*fixed, *protocol.keys()]:
        if key not in known:
            raise unknown_name(f"trial setting in protocol {label}", key, known)
    validate(protocol.space())  # every cell's settings, as they will run
    return protocol
