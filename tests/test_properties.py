"""Property-based tests (hypothesis) over CLI and config values: every invalid input ends in exit code 2 and
one line (never a traceback); valid configurations round-trip unchanged."""

from __future__ import annotations

import contextlib
import io
import json
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gradprom.cli import main
from gradprom.errors import GradpromError
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig

FIELDS = set(TrialConfig.field_names())
QUICK = settings(max_examples=40, deadline=None)


def run_cli(*argv: str) -> tuple[int, str]:
    """(exit code, stderr) of the CLI run in this process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


def assert_one_line_error(code: int, stderr: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr


bad_lam = st.one_of(st.floats(max_value=0.0, allow_nan=False), st.just(math.inf), st.just(math.nan))
bad_threshold = st.one_of(st.floats(min_value=1.0, exclude_min=True, allow_infinity=True, allow_nan=False),
                          st.floats(max_value=-1.0, exclude_max=True, allow_infinity=True, allow_nan=False))
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)


@QUICK
@given(lam=bad_lam)
def test_train_refuses_any_lambda_not_positive_and_finite(lam: float) -> None:
    assert_one_line_error(*run_cli("train", "--lam", repr(lam), "--epochs", "1"))


@QUICK
@given(threshold=bad_threshold)
def test_train_refuses_thresholds_outside_minus_one_one(threshold: float) -> None:
    assert_one_line_error(*run_cli("train", "--threshold", repr(threshold)))


@QUICK
@given(name=names.filter(lambda n: n not in {"gradprom", "threshold", "joint", "frozen", "pcgrad", "enhancer_only",
                                              "gradprom_soft"}))
def test_unknown_strategy_names_are_one_line(name: str) -> None:
    assert_one_line_error(*run_cli("train", "--strategy", name))


@QUICK
@given(key=names.filter(lambda k: k not in FIELDS), value=st.text(max_size=10).filter(lambda v: "\n" not in v))
def test_unknown_search_params_are_one_line(key: str, value: str) -> None:
    assert_one_line_error(*run_cli("search", "-p", f"{key}={value}", "--trials", "1"))


@QUICK
@given(trials=st.integers(max_value=0), epochs=st.integers(min_value=1, max_value=3))
def test_search_refuses_non_positive_trials(trials: int, epochs: int) -> None:
    assert_one_line_error(*run_cli("search", "--trials", str(trials), "--epochs", str(epochs)))


@QUICK
@given(value=st.one_of(st.text(min_size=1, max_size=8).filter(lambda v: not v.strip().lstrip("+-").isdigit()
                                                              and "\n" not in v and not v.startswith("-")),
                       st.integers(max_value=0).map(str)))
def test_non_integer_or_non_positive_epochs_are_one_line(value: str) -> None:
    assert_one_line_error(*run_cli("train", "--epochs", value))


@QUICK
@given(field=st.sampled_from(["image_size", "epochs", "batch_size", "enhancer_blocks", "n_train", "threads",
                              "pretrain_epochs", "lr", "lam", "threshold", "device", "nan_policy", "loss_ip"]),
       value=st.one_of(st.integers(max_value=-1), st.text(max_size=6), st.floats(allow_nan=True), st.none()))
@example(field="device", value="\n")  # found by hypothesis in CI: a line break inside the echoed value
def test_wrong_type_or_range_in_a_config_is_one_line(field: str, value: object) -> None:
    try:
        TrialConfig.from_dict({field: value})
    except GradpromError as exc:
        assert "\n" not in str(exc) and field in str(exc)
        return
    # the few values that are valid for the field must survive the round trip
    cfg = TrialConfig.from_dict({field: value})
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


valid_configs = st.fixed_dictionaries({
    "lam": st.floats(min_value=1e-6, max_value=1e6),
    "threshold": st.floats(min_value=-1.0, max_value=1.0),
    "epochs": st.integers(min_value=1, max_value=1000),
    "image_size": st.integers(min_value=4, max_value=128).map(lambda k: 4 * k),
    "strategy": st.sampled_from(["gradprom", "threshold", "joint", "frozen", "pcgrad", "enhancer_only",
                                 "gradprom_soft"]),
    "nan_policy": st.sampled_from(["fail", "skip-step"]),
    "skip_bad": st.booleans(),
    "seed": st.integers(min_value=0, max_value=2**31),
})


@QUICK
@given(values=valid_configs)
def test_valid_configs_round_trip_through_json(values: dict) -> None:
    cfg = check_config(TrialConfig.from_dict(values))
    again = TrialConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # as the manifest and Parquet keep it
    assert again == cfg
    assert all(getattr(again, k) == v for k, v in values.items())
