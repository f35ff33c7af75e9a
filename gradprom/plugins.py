"""Users' own strategies, datasets and models on every Ray worker: modules named in $GRADPROM_PLUGINS.

`register_strategy(...)` in a script reaches only that process, but a search trains in Ray worker
processes, perhaps on other machines. Put the registrations in a module, name it in GRADPROM_PLUGINS
(comma-separated importable names), and gradprom imports it in the CLI and in every trial before
building anything; the variable travels to Ray's workers with the job.
"""

from __future__ import annotations

import importlib
import os

from gradprom.errors import GradpromError

ENV = "GRADPROM_PLUGINS"
_loaded: set[str] = set()


def plugin_modules() -> list[str]:
    return [name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()]


def runtime_env_vars() -> dict[str, str]:
    """What a Ray runtime environment carries so its workers import the plugins too ({} without plugins)."""
    names = plugin_modules()
    return {ENV: ",".join(names)} if names else {}


def load_plugins() -> list[str]:
    """Import each plugin module once per process; a broken one gives one line naming it."""
    names = plugin_modules()
    for name in names:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise GradpromError(f"plugin module '{name}' (from ${ENV}) failed to import: "
                                f"{type(exc).__name__}: {exc}; fix it, or check PYTHONPATH") from exc
        _loaded.add(name)
    return names
