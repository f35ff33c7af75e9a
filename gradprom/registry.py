"""A tiny name → factory registry (timm style) shared by datasets, models, strategies and spaces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from gradprom.errors import GradpromError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps the names the CLI accepts to factories; unknown names give a did-you-mean error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None, **meta: Any):
        """Register `factory` under `name`; usable as a decorator. `meta` is free-form (e.g. kind, help)."""

        def add(f: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise GradpromError(f"{self.kind} '{name}' is already registered; pick another name")
            self._entries[name] = f
            self._meta[name] = dict(meta)
            return f

        return add(factory) if factory is not None else add

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries)
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def names(self, **where: Any) -> list[str]:
        """Registered names, optionally only those whose meta matches every `where` item."""
        return sorted(n for n, m in self._meta.items() if all(m.get(k) == v for k, v in where.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries
