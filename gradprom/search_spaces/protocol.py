"""Protocols: fixed grids (strategies × degradations × auxiliaries × seeds) stored as data, like spaces.

A protocol file (`protocols/NAME.json`, or a user's file by path) holds `description`, `fixed` (settings every
trial gets), `grid` (axis → list of values; a value that is an object sets several settings at once, e.g.
`{"task": "classification", "aux_task": "segmentation"}`), `seeds` (how many, 0…K−1), `baselines` (the
strategies every other one is compared with on the same seeds), optionally `needs` (CLI options it requires,
e.g. `eval_dataset`) and `quick` (a smaller `grid`/`seeds`/`fixed` for smoke runs). The grid becomes one
categorical search space whose every cell is enqueued, so a protocol runs through the search's own
orchestrator (Ray Tune, Optuna, results, resume) and is evidence, not a search.
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
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig

PROTOCOL_KEYS = ("description", "fixed", "grid", "seeds", "baselines", "needs", "quick")
QUICK_KEYS = ("grid", "seeds", "fixed")
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

    def keys(self) -> list[str]:
        """The trial settings the grid varies (object-valued axes contribute each of their keys), then seed."""
        found: list[str] = []
        for axis, values in self.grid.items():
            for key in (k for v in values for k in (v if isinstance(v, dict) else {axis: v})):
                if key not in found:
                    found.append(key)
        return [*found, SEED]

    def cells(self) -> list[dict[str, Any]]:
        """Every cell of the grid, seed last and fastest, each with a value for every varied key (a key an
        object-valued axis leaves out gets the trial default, e.g. no `aux_task`)."""
        defaults = TrialConfig().to_dict()
        keys = self.keys()
        out = []
        for combo in itertools.product(*self.grid.values(), range(self.seeds)):
            cell: dict[str, Any] = {}
            for axis, value in zip([*self.grid, SEED], combo, strict=True):
                cell.update(value if isinstance(value, dict) else {axis: value})
            out.append({k: cell.get(k, self.fixed.get(k, defaults[k])) for k in keys})
        return out

    def space(self) -> SearchSpace:
        """The grid as a categorical space (what Optuna holds; every cell is enqueued, none sampled)."""
        cells = self.cells()
        params = {k: {"type": "categorical", "choices": sorted({c[k] for c in cells}, key=str)} for k in self.keys()}
        return SearchSpace(self.name, self.description, dict(self.fixed), params)

    def group_keys(self) -> list[str]:
        """What a comparison holds fixed: every varied key but the strategy and the seed."""
        return [k for k in self.keys() if k not in (STRATEGY, SEED)]


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
               "fixed": {**raw.get("fixed", {}), **small.get("fixed", {})}}
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
    protocol = Protocol(label, str(raw.get("description", "")), dict(fixed), dict(grid), count, list(baselines), needs)
    known = set(TrialConfig.field_names())
    for key in [*fixed, *protocol.keys()]:
        if key not in known:
            raise unknown_name(f"trial setting in protocol {label}", key, known)
    for cell in protocol.cells():
        check_config(TrialConfig.from_dict({**fixed, **cell}))
    validate(protocol.space())
    return protocol
