"""The house's rules, read off the code's own imports (every import statement, those inside functions too) and off a
fresh interpreter that imports a part: `results/` and `analysis/` never import Ray or Optuna, so a laptop without
them reads any experiment; nothing below the search imports Ray but `trainables/ray_trial.py`, the one Ray glue;
and the parts import each other one way (`cli → {cluster, search, analysis} → results`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import gradprom

ROOT = Path(gradprom.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


@cache
def imports(module: str) -> frozenset[str]:
    """Every module `module` imports (absolute names; `from a import b` counts a and, where b is a module, a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return frozenset(found)


def direct(prefix: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    """Import statements (anywhere in the file, functions included) of a forbidden package in the part `prefix`."""
    return [f"{m} imports {name}" for m in sorted(MODULES) if (m == prefix or m.startswith(prefix + "."))
            and m not in allowed for name in sorted(imports(m)) if name.split(".")[0] in forbidden]


def loaded_on_import(modules: list[str]) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after importing `modules` (everything they import when
    imported, through every package on the way)."""
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return {name.split(".")[0] for name in ast.literal_eval(done.stdout.strip())}


def part(prefix: str, allowed: tuple[str, ...] = ()) -> list[str]:
    return [m for m in sorted(MODULES) if (m == prefix or m.startswith(prefix + ".")) and m not in allowed]


def test_results_and_analysis_never_import_ray_or_optuna() -> None:
    """Not in any statement, and not through anything they import when imported: a laptop without Ray reads any
    experiment."""
    for prefix in ("gradprom.results", "gradprom.analysis"):
        assert not direct(prefix, ("ray", "optuna")), direct(prefix, ("ray", "optuna"))
    assert not {"ray", "optuna"} & loaded_on_import(part("gradprom.results") + part("gradprom.analysis"))


def test_nothing_below_the_search_imports_ray_but_the_glue() -> None:
    glue = ("gradprom.trainables.ray_trial",)
    below = ("gradprom.trainables", "gradprom.strategies", "gradprom.models", "gradprom.datasets")
    for prefix in below:
        assert not direct(prefix, ("ray",), allowed=glue), direct(prefix, ("ray",), allowed=glue)
    assert "ray" not in loaded_on_import([m for prefix in below for m in part(prefix, allowed=glue)])


#: which part may import which (a part is the first folder under gradprom/; the loose modules at the top are shared)
MAY_IMPORT = {
    "cli": {"cluster", "search", "analysis", "results", "trainables", "search_spaces", "datasets", "strategies",
            "models"},
    "cluster": {"results"},
    "search": {"analysis", "results", "trainables", "search_spaces", "datasets", "strategies", "models"},
    "analysis": {"results", "trainables", "search_spaces", "datasets", "strategies", "models"},
    "results": {"trainables", "datasets", "strategies", "models"},
    "search_spaces": {"trainables", "datasets", "strategies", "models"},
    "trainables": {"datasets", "strategies", "models"},
    "strategies": set(),
    "models": set(),
    "datasets": set(),
}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and f"gradprom.{parts[1]}" in MODULES and
                                          MODULES[f"gradprom.{parts[1]}"].name == "__init__.py") else ""


def test_the_parts_import_each_other_one_way() -> None:
    wrong = []
    for module in sorted(MODULES):
        mine = part_of(module)
        if not mine:
            continue
        for name in imports(module):
            theirs = part_of(name) if name.startswith("gradprom.") else ""
            if theirs and theirs != mine and theirs not in MAY_IMPORT[mine]:
                wrong.append(f"{module} ({mine}) imports {name} ({theirs})")
    assert not wrong, wrong


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/fixtures/ (as optuna/testing does); a test module imports none of its peers."""
    tests = Path(__file__).parent
    wrong = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            wrong += [f"{path.name} imports {n}" for n in names
                      if n.startswith(("tests.test_", "tests.conftest")) or n in ("tests.conftest",)]
    assert not wrong, wrong


THIRD_PARTY = ("ray", "optuna", "typer", "click")


def test_only_public_apis_of_ray_optuna_and_typer() -> None:
    """No import of a private module of theirs, and, in a module that imports them, no private attribute read on
    anything but gradprom's own objects (`self`, `cls`) and `os._exit`: their internals change without notice between
    releases."""
    wrong = []
    for module, path in sorted(MODULES.items()):
        names = imports(module)
        wrong += [f"{module} imports {n}" for n in names
                  if n.split(".")[0] in THIRD_PARTY and any(p.startswith("_") for p in n.split(".")[1:])]
        if not any(n.split(".")[0] in THIRD_PARTY for n in names):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "os", "sys")):
                wrong.append(f"{module}:{node.lineno} reads .{node.attr}")
    assert not wrong, wrong
