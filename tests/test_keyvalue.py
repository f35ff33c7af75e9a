"""The one KEY=VALUE reader: how text is split and typed, held to hand-written expectations, and the callers'
own error lines (each names the flag that was wrong)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from gradprom.datasets import parse_dataset_options, parse_degradation
from gradprom.errors import GradpromError
from gradprom.keyvalue import parse_as, parse_value, split_pair
from gradprom.search_spaces import apply_overrides, load_space


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("False", False), (" TRUE ", True),
    ("3", 3), ("-2", -2), (" 7 ", 7), ("1_000", 1000),
    ("0.15", 0.15), ("1e-2", 0.01), ("-0.5", -0.5), ("3.0", 3.0),
    ("gaussian:sigma=0.1", "gaussian:sigma=0.1"), ("4CH", "4CH"), ("  srresnet ", "srresnet"), ("", ""),
    ("yes", "yes"), ("1", 1),  # only true/false are booleans; 1 stays a number
])
def test_parse_value_types_text(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_value_reads_inf_and_nan_as_floats() -> None:
    assert parse_value("inf") == math.inf and math.isnan(parse_value("nan"))


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("true", bool, True), ("FALSE", bool, False), ("3", int, 3), ("3", float, 3.0), ("0.5", float, 0.5),
    ("4CH", str, "4CH"), ("3", str, "3"), ("true", str, "true"),
])
def test_parse_as_reads_text_as_the_settings_type(text: str, kind: type, expected: object) -> None:
    value = parse_as(text, kind)
    assert value == expected and type(value) is kind


@pytest.mark.parametrize(("text", "kind"), [("1", bool), ("yes", bool), ("1.5", int), ("true", int), ("x", float),
                                            ("true", float)])
def test_parse_as_refuses_text_of_another_type(text: str, kind: type) -> None:
    with pytest.raises(ValueError):
        parse_as(text, kind)


@pytest.mark.parametrize(("item", "expected"), [
    ("lam=0.5", ("lam", "0.5")), (" lam = 0.5 ", ("lam", "0.5")),
    ("degradation=composite:blur=1,peak=30", ("degradation", "composite:blur=1,peak=30")),  # split at the first =
    ("data_root=", ("data_root", "")),
])
def test_split_pair(item: str, expected: tuple[str, str]) -> None:
    assert split_pair(item, "refused") == expected


@pytest.mark.parametrize("item", ["lam", "=0.5", " = ", ""])
def test_split_pair_refuses_with_the_callers_line(item: str) -> None:
    with pytest.raises(GradpromError, match="^--set 'x' is not KEY=VALUE$"):
        split_pair(item, "--set 'x' is not KEY=VALUE")


def test_split_pair_may_require_a_value() -> None:
    with pytest.raises(GradpromError, match="needs a value"):
        split_pair("sigma=", "needs a value", empty_value=False)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: apply_overrides(load_space("lambda_threshold"), ["lam"]),
     "--param 'lam' is not KEY=VALUE, KEY=LOW:HIGH or KEY=A,B,C"),
    (lambda: parse_dataset_options("camus", ["views"]), "--data-option 'views' is not KEY=VALUE"),
    (lambda: parse_degradation("gaussian:sigma"), "'sigma' is not key=value"),
    (lambda: parse_degradation("gaussian:sigma="), "'sigma=' is not key=value"),
    (lambda: parse_degradation("gaussian:sigma=true"), "sigma=true is not a number"),
], ids=["param", "data-option", "degradation-no-=", "degradation-no-value", "degradation-not-a-number"])
def test_each_caller_names_what_was_wrong(call: Callable[[], object], message: str) -> None:
    with pytest.raises(GradpromError) as refused:
        call()
    assert message in str(refused.value)
