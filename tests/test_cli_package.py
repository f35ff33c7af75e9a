"""The command line as a package: nothing below it imports it, a shared option reads the same in every command,
and `train` and `search` take their trial settings from the flags by one route."""

from __future__ import annotations

import ast
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import typer

import gradprom
from gradprom.cli import app, main, options
from gradprom.errors import GradpromError
from gradprom.results.experiment import write_manifest
from gradprom.search.request import SearchRequest, plan, resumed_request
from gradprom.search_spaces import apply_overrides, load_space

BELOW_THE_CLI = ("cluster", "search", "results", "analysis", "trainables", "strategies", "models", "datasets",
                 "search_spaces")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("part", BELOW_THE_CLI)
def test_nothing_below_the_cli_imports_it(part: str) -> None:
    root = Path(gradprom.__file__).parent / part
    offenders = [f"{path.relative_to(root.parent)} imports {name}"
                 for path in sorted(root.rglob("*.py")) for name in sorted(imported_modules(path))
                 if name == "gradprom.cli" or name.startswith("gradprom.cli.")]
    assert not offenders, offenders


def click_options(command: str) -> list[Any]:
    """The options of `gradprom COMMAND` (`datasets check` for a subcommand), as --help prints them."""
    group = typer.main.get_command(app)
    *path, last = command.split()
    for name in path:
        group = group.commands[name]
    return group.commands[last].params


SHARED = {
    options.TASK: ("search", "train"),
    options.EPOCHS: ("search", "protocol", "train"),
    options.SEED: ("search", "train"),
    options.DATA_ROOT: ("search", "protocol", "train", "datasets check"),
    options.DATA_OPTION: ("search", "train"),
    options.SKIP_BAD: ("search", "train"),
    options.EVAL_DATASET: ("search", "protocol", "train"),
    options.DEVICE: ("search", "protocol", "train"),
    options.PRECISION: ("search", "train"),
    options.COMPILE: ("search", "train"),
    options.NAN_POLICY: ("search", "train"),
    options.OUT: ("search", "protocol"),
    options.ADDRESS: ("search", "protocol"),
    options.CONCURRENCY: ("search", "protocol"),
    options.CPUS_PER_TRIAL: ("search", "protocol"),
    options.RESUME: ("search", "protocol"),
    options.OVERWRITE: ("search", "protocol"),
}


@pytest.mark.parametrize(("option", "commands"), SHARED.items(), ids=lambda v: getattr(v, "help", "")[:30])
def test_a_shared_option_is_defined_once(option: Any, commands: tuple[str, ...]) -> None:
    """Its help text and default are the same wherever it appears: the one definition in cli/options.py."""
    seen = []
    for command in commands:
        found = [p for p in click_options(command) if p.help == option.help]
        assert len(found) == 1, f"`gradprom {command}` lacks the shared option '{option.help}'"
        seen.append((found[0].opts, found[0].default))
    assert len(set(map(repr, seen))) == 1, seen


def test_precision_reads_the_same_in_train_and_search() -> None:
    helps = {command: next(p.help for p in click_options(command) if "--precision" in p.opts)
             for command in ("train", "search")}
    assert helps["train"] == helps["search"] == options.PRECISION.help


def test_trial_settings_leave_out_flags_at_their_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert options.trial_settings(data_root="", nan_policy="fail", precision="auto", compile="off",
                                  degradation="") == {}
    monkeypatch.chdir(tmp_path)
    assert options.trial_settings(data_root="data", precision="bf16", compile="inductor") == \
        {"data_root": str(tmp_path / "data"), "precision": "bf16", "compile": "inductor"}


FLAGS = ["--precision", "fp32", "--nan-policy", "skip-step", "--compile", "aot_eager", "--data-root", "data"]


def test_train_and_search_take_the_flags_by_one_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same flags give `train` the same trial settings as every trial of `search`."""
    import gradprom.search.driver as search
    import gradprom.trainables.pipeline as pipeline

    monkeypatch.chdir(tmp_path)
    got: dict[str, Any] = {}
    monkeypatch.setattr(search, "run_search", lambda request, console: got.setdefault("request", request))
    monkeypatch.setattr(pipeline, "train_trial", lambda cfg, report: got.setdefault("cfg", cfg) and {})
    assert main(["search", "--space", "lambda_threshold", "--dataset", "synthetic", *FLAGS,
                 "--degradation", "poisson:peak=20", "-p", "lam=0.5:1"]) == 0
    assert main(["train", *FLAGS, "--set", "degradation=poisson:peak=20"]) == 0
    expected = {"precision": "fp32", "nan_policy": "skip-step", "compile": "aot_eager",
                "data_root": str(tmp_path / "data"), "degradation": "poisson:peak=20"}
    request = got["request"]
    assert request.settings == expected and request.params == ["lam=0.5:1"]
    assert {k: getattr(got["cfg"], k) for k in expected} == expected
    (study,) = plan(request)
    assert {k: study.base[k] for k in expected} == expected


def test_flag_settings_fix_what_the_space_would_search() -> None:
    space = apply_overrides(load_space("lambda_threshold"), ["degradation=gaussian:sigma=0.1;poisson:peak=20"],
                            {"degradation": "blur:sigma=1.0"})
    assert space.fixed["degradation"] == "blur:sigma=1.0" and "degradation" not in space.params


def test_resume_keeps_and_checks_the_flag_settings(tmp_path: Path) -> None:
    started = SearchRequest(out=str(tmp_path), name="x", datasets=["synthetic"], settings={"precision": "bf16"})
    write_manifest(tmp_path / "x", {"status": "interrupted", "request": json.loads(json.dumps(asdict(started)))})
    assert resumed_request(SearchRequest(out=str(tmp_path), name="x", resume=True)).settings == {"precision": "bf16"}
    again = SearchRequest(out=str(tmp_path), name="x", resume=True, settings={"precision": "bf16"})
    assert resumed_request(again).settings == {"precision": "bf16"}
    with pytest.raises(GradpromError, match=r"as it was started \(--precision bf16\); drop --precision fp32"):
        resumed_request(SearchRequest(out=str(tmp_path), name="x", resume=True, settings={"precision": "fp32"}))
    with pytest.raises(GradpromError, match=r"\(--nan-policy unset\); drop --nan-policy skip-step"):
        resumed_request(SearchRequest(out=str(tmp_path), name="x", resume=True, settings={"nan_policy": "skip-step"}))


def test_a_protocol_takes_flag_settings_its_grid_leaves_alone(tmp_path: Path) -> None:
    from gradprom.search.driver import protocol_request

    _, request = protocol_request("denoise", SearchRequest(datasets=["synthetic"],
                                                           settings={"data_root": str(tmp_path)}), quick=True)
    assert all(study.base["data_root"] == str(tmp_path) for study in plan(request))
    _, request = protocol_request("denoise", SearchRequest(datasets=["synthetic"],
                                                           settings={"degradation": "blur:sigma=1.0"}), quick=True)
    with pytest.raises(GradpromError, match="a protocol's grid is fixed"):
        plan(request)
