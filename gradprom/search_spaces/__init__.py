"""Named search spaces, stored as data (one JSON file each) and read by the orchestrator.

A space file holds `description`, `fixed` (settings every trial gets), `params` (sampled settings:
`float` with low/high/log, `int` with low/high/log, `categorical` with choices) and optionally
`task_params` (extra params per task, e.g. a UNet's depth differs from a ResNet's). Every key must
be a trial setting (`TrialConfig`), and every endpoint must be a valid value: checked on load. Users'
own space files in the same format are named by path (`--space my_space.json`), or registered by name from a
plugin: `@register_space("mine", help="…")` on a function that returns the space as a dict.
Users override from the CLI with `--param KEY=VALUE` (fix), `KEY=LOW:HIGH` (a range, numbers only) or
`KEY=A,B,C` (choices; for text settings `;` also separates, as in
`degradation=gaussian:sigma=0.1;composite:blur=1,peak=30`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna.distributions as od

from gradprom.errors import GradpromError, unknown_name
from gradprom.keyvalue import parse_value, split_pair
from gradprom.registry import Meta, Registry
from gradprom.settings import find
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig, all_settings

PARAM_TYPES = ("float", "int", "categorical")
SPACE_KEYS = ("description", "fixed", "params", "task_params", "anchors")


@dataclass
class SearchSpace:
    """A named space: settings fixed for every trial plus the distributions Optuna samples."""

    name: str
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a protocol's grid: the only combinations that run (settings may be coupled, e.g. loss_ip with clean_targets)
    cells: list[dict[str, Any]] | None = None
    #: points a model-based search tries first because they are known to matter (e.g. τ = −1, which behaves as
    #: joint): partial settings, a value or "low"/"high" for a range's end (the rest of the space at its middle)
    anchors: list[dict[str, Any]] = field(default_factory=list)

    def anchor_points(self) -> list[dict[str, Any]]:
        """The anchors as full points of today's space: values out of range, or of settings no longer searched
        (fixed with --param), leave their anchor out."""
        out = []
        for anchor in self.anchors:
            point = {k: middle(spec) for k, spec in self.params.items()}
            fits = bool(anchor) and all(k in self.params for k in anchor)
            for key, value in anchor.items() if fits else ():
                spec = self.params[key]
                if spec["type"] == "categorical":
                    fits = fits and value in spec["choices"]
                else:
                    value = spec[value] if value in ("low", "high") else value
                    fits = fits and spec["low"] <= value <= spec["high"]
                point[key] = value
            if fits and point not in out:
                out.append(point)
        return out

    def distributions(self) -> dict[str, od.BaseDistribution]:
        import optuna.distributions as od  # only a search needs Optuna's types: reading a protocol does not

        """The params as Optuna distributions (what OptunaSearch samples)."""
        out: dict[str, od.BaseDistribution] = {}
        for key, spec in self.params.items():
            if spec["type"] == "categorical":
                out[key] = od.CategoricalDistribution(list(spec["choices"]))
            elif spec["type"] == "int":
                out[key] = od.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
            else:
                out[key] = od.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
        return out

    def endpoints(self) -> list[dict[str, Any]]:
        """One settings dict per extreme value of each param, to validate ranges before anything runs (for a
        protocol's grid, each of its cells)."""
        if self.cells is not None:
            return [{**self.fixed, **cell} for cell in self.cells]
        out = []
        for key, spec in self.params.items():
            values = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
            out.extend({**self.fixed, key: v} for v in values)
        return out or [dict(self.fixed)]


@dataclass(frozen=True, kw_only=True)
class SpaceMeta(Meta):
    """A named space's entry: its help line (the space's `description`)."""


#: named spaces: each entry returns the space as the JSON format above (a dict); the shipped ones read their file
SPACES: Registry[dict[str, Any], SpaceMeta] = Registry("search space", SpaceMeta)
register_space = SPACES.register


def _shipped(path: Any) -> Callable[[], dict[str, Any]]:
    return lambda: json.loads(path.read_text())


for _path in sorted(resources.files(__name__).iterdir(), key=lambda p: p.name):
    if _path.name.endswith(".json"):
        register_space(_path.name[:-5], help=json.loads(_path.read_text()).get("description", ""))(_shipped(_path))


def space_names() -> list[str]:
    return SPACES.names()


def _check_spec(space: str, key: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        raise GradpromError(f"space '{space}': param '{key}' must be an object with type and low/high or choices")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise GradpromError(f"space '{space}': param '{key}' has type {kind!r}; use one of {', '.join(PARAM_TYPES)}")
    if kind == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise GradpromError(f"space '{space}': categorical param '{key}' needs a non-empty 'choices' list")
        return
    for bound in ("low", "high"):
        value = spec.get(bound)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise GradpromError(f"space '{space}': param '{key}' needs a number for '{bound}', got {value!r}")
    if not spec["low"] <= spec["high"]:  # both are numbers here
        bounds = f"{spec.get('low')}..{spec.get('high')}"
        raise GradpromError(f"space '{space}': param '{key}' needs low ≤ high, got {bounds}")
    if spec.get("log") and not spec["low"] > 0:
        raise GradpromError(f"space '{space}': log-scaled param '{key}' needs low > 0, got {spec['low']}")


def validate(space: SearchSpace) -> SearchSpace:
    """Every key a trial setting and every endpoint a valid value (via TrialConfig's own checks)."""
    for key, spec in space.params.items():
        _check_spec(space.name, key, spec)
    for values in space.endpoints():
        check_config(TrialConfig.from_dict(values))
    return space


def read_space_file(path: Path) -> dict[str, Any]:
    """A user's space file (same format as the shipped ones), checked: readable JSON object, known keys."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise GradpromError(f"cannot read space file {path} ({exc.strerror}); check the --space path") from exc
    except json.JSONDecodeError as exc:
        raise GradpromError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(raw, dict):
        raise GradpromError(f"{path}: a space file holds a JSON object with {', '.join(SPACE_KEYS)}")
    for key in raw:
        if key not in SPACE_KEYS:
            raise unknown_name(f"key of space file {path}", key, SPACE_KEYS)
    for key in ("fixed", "params", "task_params"):
        if not isinstance(raw.get(key, {}), dict):
            raise GradpromError(f"{path}: '{key}' must be a JSON object, got {type(raw[key]).__name__}")
    if not isinstance(raw.get("anchors", []), list) or not all(isinstance(a, dict) for a in raw.get("anchors", [])):
        raise GradpromError(f"{path}: 'anchors' must be a list of JSON objects (partial settings, e.g. "
                            '{"threshold": -1.0} or {"lam": "low"})')
    for task, params in raw.get("task_params", {}).items():
        if not isinstance(params, dict):
            raise GradpromError(f"{path}: task_params '{task}' must be a JSON object of params, got "
                                f"{type(params).__name__}")
    return raw


def load_space(name: str, task: str = "classification") -> SearchSpace:
    """Load a named space for `task`, or a user's space file (NAME ending in .json); unknown names give a
    did-you-mean listing the spaces."""
    if name.endswith(".json"):
        path = Path(name).expanduser()
        raw, name = read_space_file(path), str(path)
    else:
        raw = SPACES.get(name)()
    params = dict(raw.get("params", {}))
    params.update(raw.get("task_params", {}).get(task, {}))
    return validate(SearchSpace(name, raw.get("description", ""), dict(raw.get("fixed", {})), params,
                                anchors=list(raw.get("anchors", []))))


def middle(spec: dict[str, Any]) -> Any:
    """A param's middle: the geometric mean of a log range, the mean of a linear one (rounded for an int), the
    first of its choices."""
    if spec["type"] == "categorical":
        return spec["choices"][0]
    low, high = spec["low"], spec["high"]
    mid = math.sqrt(low * high) if spec.get("log") else (low + high) / 2
    return round(mid) if spec["type"] == "int" else float(mid)


def apply_overrides(space: SearchSpace, overrides: list[str], settings: dict[str, Any] | None = None) -> SearchSpace:
    """Apply `--param` overrides: KEY=VALUE fixes, KEY=LOW:HIGH sets a range, KEY=A,B,C sets choices; then
    `settings` (typed values the CLI's own flags gave, e.g. --precision) fix their keys."""
    known = all_settings()
    for item in overrides:
        key, text = split_pair(item, f"--param '{item}' is not KEY=VALUE, KEY=LOW:HIGH or KEY=A,B,C (e.g. lam=0.1:1)")
        setting = find(key, known)
        space.params.pop(key, None)
        space.fixed.pop(key, None)
        if setting.kind is str:
            # names and specs: never a range; choices split on ';' (or ',' when the text has no '=',
            # since a degradation spec such as composite:blur=1,peak=30 has commas of its own)
            sep = ";" if ";" in text else "," if "," in text and "=" not in text else None
            if sep:
                space.params[key] = {"type": "categorical", "choices": [v.strip() for v in text.split(sep)]}
            else:
                space.fixed[key] = text
        elif ":" in text:
            low, high = (parse_value(v) for v in text.split(":", 1))
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
                raise GradpromError(f"--param {key}: range bounds must be numbers, got '{text}'")
            kind = "int" if setting.kind is int and isinstance(low, int) and isinstance(high, int) else "float"
            log = setting.log or (kind == "float" and low > 0 and high / low >= 100)
            space.params[key] = {"type": kind, "low": low, "high": high, "log": log}
        elif "," in text:
            space.params[key] = {"type": "categorical", "choices": [parse_value(v) for v in text.split(",")]}
        else:
            space.fixed[key] = parse_value(text)
    for key, value in (settings or {}).items():
        space.params.pop(key, None)
        space.fixed[key] = value
    return validate(space)
