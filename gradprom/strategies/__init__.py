"""Gradient strategies (pure PyTorch, no Ray): how the recognizer's gradient may steer the enhancer.

    from gradprom.strategies import get_strategy, register_strategy
    s = get_strategy("threshold", lam=0.5, threshold=0.2)
    update = s.combine(g_ip, g_vr)      # lists of tensors, one per enhancer parameter
    s.trains_recognizer                 # bool

A strategy registers with `@register_strategy(name, settings=(...))`; its settings are its constructor's options
and trial settings of their own (searchable with `-p`).
"""

from __future__ import annotations

from typing import Any

from gradprom.strategies import rules as _rules  # noqa: F401  (registers the seven strategies of design.md)
from gradprom.strategies.base import (
    GRANULARITIES,
    STRATEGIES,
    Strategy,
    StrategyMeta,
    flat_dot,
    register_strategy,
    safe_cos,
)


def strategy_options(name: str) -> list[str]:
    """The options (= settings) a strategy takes, sorted (e.g. ['granularity', 'lam', 'threshold'])."""
    return sorted(s.name for s in STRATEGIES.meta(name).settings)


def get_strategy(name: str, **options: Any) -> Strategy:
    """Build a strategy by name; unknown names and options, and values out of range, give one line."""
    return STRATEGIES.create(name, **options)


def strategy_names() -> list[str]:
    return STRATEGIES.names()


__all__ = [
    "GRANULARITIES", "STRATEGIES", "Strategy", "StrategyMeta", "flat_dot", "get_strategy", "register_strategy",
    "safe_cos", "strategy_names", "strategy_options",
]
