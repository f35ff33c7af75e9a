"""Named spaces are data: they load for each task, map to Optuna distributions, and take overrides."""

from __future__ import annotations

import optuna.distributions as od
import pytest

from gradprom.errors import GradpromError
from gradprom.search_spaces import SearchSpace, apply_overrides, load_space, space_names, validate


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_every_space_loads_and_validates(task: str) -> None:
    assert {"lambda_threshold", "strategies", "architecture", "gradprom_lambda"} <= set(space_names())
    for name in space_names():
        space = load_space(name, task)
        assert space.params and space.description
        assert set(space.distributions()) == set(space.params)


def test_the_issue_spaces_exactly() -> None:
    lt = load_space("lambda_threshold")
    assert lt.fixed == {"strategy": "threshold"}
    lam, tau = lt.distributions()["lam"], lt.distributions()["threshold"]
    assert (lam.low, lam.high, lam.log) == (1e-3, 10.0, True) and (tau.low, tau.high, tau.log) == (-1.0, 1.0, False)
    st = load_space("strategies").distributions()
    assert set(st["strategy"].choices) == {"enhancer_only", "joint", "frozen", "gradprom", "threshold",
                                           "gradprom_soft", "pcgrad"}
    arch = load_space("architecture", "segmentation").distributions()
    assert {"enhancer_blocks", "enhancer_channels", "recognizer_depth", "recognizer_width", "lam"} <= set(arch)
    assert isinstance(arch["recognizer_depth"], od.IntDistribution) and arch["recognizer_depth"].high <= 5


def test_overrides() -> None:
    s = apply_overrides(load_space("strategies"), ["lam=0.01:1", "strategy=joint,gradprom", "image_size=32",
                                                   "degradation=composite:blur=1,peak=30"])
    assert s.params["lam"] == {"type": "float", "low": 0.01, "high": 1, "log": True}
    assert s.params["strategy"]["choices"] == ["joint", "gradprom"]
    assert s.fixed == {"image_size": 32, "degradation": "composite:blur=1,peak=30"}
    s = apply_overrides(load_space("lambda_threshold"), ["degradation=gaussian:sigma=0.1;poisson:peak=20",
                                                         "enhancer_blocks=2:6", "threshold=0.2"])
    assert s.params["degradation"]["choices"] == ["gaussian:sigma=0.1", "poisson:peak=20"]
    assert s.params["enhancer_blocks"]["type"] == "int" and s.fixed["threshold"] == 0.2
    assert "threshold" not in s.params


@pytest.mark.parametrize(("override", "message"), [
    ("lam=a:b", "bounds must be numbers"),
    ("lam=2:1", "low ≤ high"),
    ("image_size=0", "image_size must be ≥ 1"),
    ("strategy=joint,nope", "unknown strategy 'nope'"),
    ("degradation=gaussian:sigma=x", "degradation"),
    ("task=detection", "no task 'detection'"),
])
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(GradpromError, match=message):
        apply_overrides(load_space("lambda_threshold"), [override])


def test_bad_space_data_is_refused() -> None:
    with pytest.raises(GradpromError, match="type"):
        validate(SearchSpace("x", "", {}, {"lam": {"type": "normal"}}))
    with pytest.raises(GradpromError, match="low > 0"):
        validate(SearchSpace("x", "", {}, {"lam": {"type": "float", "low": 0, "high": 1, "log": True}}))
    with pytest.raises(GradpromError, match="non-empty"):
        validate(SearchSpace("x", "", {}, {"strategy": {"type": "categorical", "choices": []}}))


def test_a_users_space_file_loads_like_a_shipped_one(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "mine.json"
    path.write_text('{"description": "mine", "fixed": {"strategy": "pcgrad"},'
                    ' "params": {"lam": {"type": "float", "low": 0.01, "high": 1, "log": true}}}')
    space = load_space(str(path))
    assert space.name == str(path) and space.fixed == {"strategy": "pcgrad"}
    assert space.distributions()["lam"] == od.FloatDistribution(0.01, 1.0, log=True)


@pytest.mark.parametrize(("text", "message"), [
    ('{"params": {', "not valid JSON"),
    ('[1, 2]', "holds a JSON object"),
    ('{"parms": {}}', "Did you mean 'params'"),
    ('{"params": []}', "'params' must be a JSON object"),
    ('{"params": {"lam": 3}}', "param 'lam' must be an object"),
    ('{"task_params": {"classification": {"threshold": 3}}}', "param 'threshold' must be an object"),
    ('{"task_params": {"classification": [1]}}', "task_params 'classification' must be a JSON object"),
    ('{"params": {"lam": {"type": "float", "low": "a", "high": 1}}}', "needs a number for 'low'"),
    ('{"params": {"lam": {"type": "categorical", "choices": "ab"}}}', "needs a non-empty 'choices' list"),
    ('{"params": {"lamda": {"type": "float", "low": 0.1, "high": 1}}}', "Did you mean 'lam'"),
    ('{"fixed": {"threshold": 3}}', "threshold"),
])
def test_bad_space_files_are_one_line(tmp_path, text: str, message: str) -> None:  # noqa: ANN001
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(GradpromError, match=message) as info:
        load_space(str(path))
    assert "\n" not in str(info.value)
    with pytest.raises(GradpromError, match="cannot read space file"):
        load_space(str(tmp_path / "missing.json"))


def test_cli_names_a_bad_space_file_in_one_line(tmp_path, capsys) -> None:  # noqa: ANN001
    from gradprom.cli import main

    path = tmp_path / "bad.json"
    path.write_text('{"params": {"lam": {"type": "float", "low": 2, "high": 1}}}')
    assert main(["search", "--space", str(path), "--out", str(tmp_path), "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs low ≤ high" in err[0]
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # refused before any experiment folder
