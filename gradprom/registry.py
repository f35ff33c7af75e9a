"""One registry style (timm's) for every name the command line accepts: strategies, datasets, models,
degradations, pipelines and search spaces.

Each registry maps a name to a factory and its typed metadata (a `Meta` subclass per registry, so an unknown or
mistyped key fails when the part registers, not when someone reads it). Entries are added with one decorator:

    @STRATEGIES.register("mine", help="…", settings=(Setting("share", 0.5, "…", above=0, high=1),))
    class Mine(Strategy): ...

A part's `settings` become trial settings (`gradprom.settings`). Keyword options are checked by one function,
`check_options`, with one wording and a did-you-mean, whichever registry asks.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gradprom.errors import GradpromError, unknown_name
from gradprom.settings import Setting, declare

T = TypeVar("T")
M = TypeVar("M", bound="Meta")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class Meta:
    """What every entry says about itself: one line of help and the trial settings it reads."""

    help: str = ""
    settings: tuple[Setting, ...] = ()


class Registry(Generic[T, M]):
    """Maps the names the CLI accepts to factories with typed metadata; unknown names give a did-you-mean."""

    def __init__(self, kind: str, meta: type[M]) -> None:
        self.kind = kind
        self.meta_type = meta
        self._entries: dict[str, Callable[..., T]] = {}
        self._meta: dict[str, M] = {}

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        """Decorator registering a factory (function or class) under `name` with metadata `meta`."""
        fields = {f.name: f for f in dataclasses.fields(self.meta_type)}
        for key in meta:
            if key not in fields:
                raise unknown_name(f"metadata key of {self.kind} '{name}'", key, fields)
        try:
            record = self.meta_type(**meta)
        except TypeError as exc:  # a required key missing
            raise GradpromError(f"{self.kind} '{name}': {exc}") from None

        def add(factory: F) -> F:
            if name in self._entries:
                raise GradpromError(f"{self.kind} '{name}' is already registered; pick another name")
            declare(f"{self.kind} '{name}'", tuple(record.settings))
            self._entries[name] = factory
            self._meta[name] = record
            return factory

        return add

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries)
        return self._entries[name]

    def meta(self, name: str) -> M:
        self.get(name)
        return self._meta[name]

    def names(self, where: Callable[[M], bool] | None = None) -> list[str]:
        """Registered names, sorted; with `where`, only those whose metadata it accepts."""
        return sorted(n for n, m in self._meta.items() if where is None or where(m))

    def options(self, name: str, skip: Iterable[str] = ()) -> dict[str, Any] | None:
        """The factory's keyword options with their defaults (`inspect.Parameter.empty` where it has none),
        leaving out `skip`; None when it takes **kwargs (then any option is allowed)."""
        return keyword_options(self.get(name), skip)

    def create(self, name: str, skip: Iterable[str] = (), **options: Any) -> T:
        """Build entry `name` with `options`, checked first (`skip`: arguments every entry takes, not options);
        values of options that are the entry's declared settings are checked against their declaration."""
        check_options(f"{self.kind} '{name}'", [k for k in options if k not in skip], self.options(name, skip))
        declared = {s.name: s for s in self.meta(name).settings}
        checked = {k: declared[k].check(v) if k in declared else v for k, v in options.items()}
        return self.get(name)(**checked)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def keyword_options(factory: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Any] | None:
    """A factory's (a class's constructor's) keyword options with their defaults (`inspect.Parameter.empty` where
    it has none), leaving out `skip`; None when it takes **kwargs."""
    params = inspect.signature(factory.__init__ if isinstance(factory, type) else factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: p.default for n, p in params.items() if p.kind in keyword and n != "self" and n not in skip}


def check_options(what: str, given: Iterable[str], valid: Mapping[str, Any] | None) -> None:
    """Refuse an option `what` (e.g. "model 'unet'") does not take, in one wording for every registry: a
    did-you-mean and the valid options with their defaults. `valid` None: any option is taken."""
    if valid is None:
        return
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            listed = ", ".join(k if v is inspect.Parameter.empty else f"{k} (default {v!r})"
                               for k, v in valid.items()) or "none"
            raise GradpromError(f"{what} has no option '{key}'.{hint} Its options: {listed}")
