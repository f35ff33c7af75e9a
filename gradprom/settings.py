"""Trial settings, each declared once by the part that reads it: its type, default, allowed values and help.

The trial's own settings (data, models, optimisation, run) are declared in `trainables/config.py`; a pipeline, a
strategy, a model or a dataset declares its own when it registers (`settings=(Setting(...), ...)`), a plugin's
included. Every declared setting is a trial setting like any other: `-p name=VALUE` fixes it, `-p name=LOW:HIGH`
searches it, and it is a column of `trials.parquet`. Its range is checked here, by one function, wherever a value
comes from (a config, a search space's endpoints, a strategy built by hand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gradprom.errors import GradpromError, unknown_name

Value = bool | int | float | str


@dataclass(frozen=True)
class Setting:
    """One trial setting. Bounds are inclusive (`low`, `high`) or exclusive (`above`, `below`); float settings
    must be finite; `choices` lists a text setting's values; `log` says a search over it is log-scaled."""

    name: str
    default: Value
    help: str
    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()
    log: bool = False

    @property
    def kind(self) -> type:
        return type(self.default)

    def allowed(self) -> str:
        """The values it takes, as a reader would say them ('> 0', 'in [-1, 1]', 'one of a, b')."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        lower = f"[{self.low:g}" if self.low is not None else f"({self.above:g}" if self.above is not None else ""
        upper = f"{self.high:g}]" if self.high is not None else f"{self.below:g})" if self.below is not None else ""
        if lower and upper:
            return f"in {lower}, {upper}"
        if lower:
            return f"{'≥' if lower[0] == '[' else '>'} {lower[1:]}"
        if upper:
            return f"{'≤' if upper[-1] == ']' else '<'} {upper[:-1]}"
        return _article(self.kind)

    def check(self, value: Any) -> Value:
        """`value` as this setting's type (an int for a float setting, an integral float for an int one), or one
        line saying what it must be."""
        kind = self.kind
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise GradpromError(f"{self.name} must be {_article(kind)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise GradpromError(f"{self.name} must be a finite number {self.allowed()}, got {value!r} ({self.help})")
        if isinstance(value, str):
            if self.choices and value not in self.choices:
                raise GradpromError(f"{self.name} must be {self.allowed()}, got '{value}' ({self.help})")
        elif not isinstance(value, bool) and not self._in_range(value):
            raise GradpromError(f"{self.name} must be {self.allowed()}, got {value!r} ({self.help})")
        return value

    def _in_range(self, x: float) -> bool:
        return ((self.low is None or x >= self.low) and (self.high is None or x <= self.high)
                and (self.above is None or x > self.above) and (self.below is None or x < self.below))


def _article(kind: type) -> str:
    return {"bool": "true or false", "int": "an integer", "float": "a number", "str": "text"}[kind.__name__]


#: every setting a registered part declared: name → (setting, the parts that declared it)
_DECLARED: dict[str, tuple[Setting, list[str]]] = {}
TRIAL = "every trial"  # the owner the trial's own settings are declared by


def declare(owner: str, settings: tuple[Setting, ...]) -> None:
    """Make `settings` trial settings on behalf of `owner` (e.g. "strategy 'threshold'", or "every trial" for the
    trial's own). Several parts may share a setting (the same declaration); two different declarations of one name
    are refused, whichever came first."""
    for setting in settings:
        if not isinstance(setting, Setting):
            raise GradpromError(f"{owner}: settings must be Setting(...) declarations, got {setting!r}")
        setting.check(setting.default)
        known = _DECLARED.get(setting.name)
        if known and known[0] != setting:
            raise GradpromError(f"{owner}: setting '{setting.name}' is declared differently by {known[1][0]}; share "
                                "that declaration, or name yours differently")
    for setting in settings:
        _DECLARED.setdefault(setting.name, (setting, []))[1].append(owner)


def declared() -> dict[str, Setting]:
    """Every setting the registered parts declared, by name: the trial's own first, then the parts' in the order
    they registered."""
    own = {n: s for n, (s, owners) in _DECLARED.items() if TRIAL in owners}
    return {**own, **{n: s for n, (s, _) in _DECLARED.items() if n not in own}}


def owner_of(name: str) -> str:
    """Who declared setting `name` (for messages and `gradprom settings`): the first part, and how many more
    share the declaration."""
    owners = _DECLARED[name][1]
    return owners[0] + (f" (+{len(owners) - 1} more)" if len(owners) > 1 else "")


def find(name: str, settings: dict[str, Setting]) -> Setting:
    """The setting called `name`, or a did-you-mean line naming every setting."""
    if name not in settings:
        raise unknown_name("trial setting", name, settings)
    return settings[name]
