"""Gradient strategies (pure PyTorch, no Ray): how the recognizer's gradient may steer the enhancer.

    from gradprom.strategies import get_strategy, register_strategy
    s = get_strategy("threshold", lam=0.5, threshold=0.2)
    update = s.combine(g_ip, g_vr)      # lists of tensors, one per enhancer parameter
    s.trains_recognizer                 # bool
"""

from __future__ import annotations

import inspect
from typing import Any

from gradprom.errors import GradpromError
from gradprom.registry import Registry
from gradprom.strategies.base import GRANULARITIES, Strategy, flat_dot, safe_cos
from gradprom.strategies.rules import EnhancerOnly, Frozen, GradProm, GradPromSoft, Joint, PCGrad, Threshold

STRATEGIES: Registry[Strategy] = Registry("strategy")

for _cls in (EnhancerOnly, Joint, Frozen, GradProm, Threshold, GradPromSoft, PCGrad):
    STRATEGIES.register(_cls.name, _cls, help=(_cls.__doc__ or "").strip().splitlines()[0])


def register_strategy(name: str, cls: type[Strategy]) -> type[Strategy]:
    """Register a user's own `Strategy` subclass under `name` (then usable in configs and spaces)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise GradpromError(f"register_strategy needs a Strategy subclass, got {cls!r}")
    STRATEGIES.register(name, cls, help=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "")
    return cls


def strategy_options(name: str) -> list[str]:
    """The keyword options a strategy accepts (e.g. ['granularity', 'lam', 'threshold'])."""
    params = inspect.signature(STRATEGIES.get(name).__init__).parameters
    return sorted(p for p in params if p != "self")


def get_strategy(name: str, **options: Any) -> Strategy:
    """Build a strategy by name; unknown names and options give a one-line error listing valid ones."""
    cls = STRATEGIES.get(name)
    valid = strategy_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise GradpromError(f"strategy '{name}' has no option {', '.join(unknown)}; its options: {', '.join(valid)}")
    return cls(**options)


def strategy_names() -> list[str]:
    return STRATEGIES.names()


__all__ = [
    "GRANULARITIES", "STRATEGIES", "Strategy", "flat_dot", "get_strategy", "register_strategy", "safe_cos",
    "strategy_names", "strategy_options",
]
