"""Bad input ends in one line on stderr and exit code 2, never a traceback; listings work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gradprom.cli import main
from gradprom.orchestrator.experiment import write_manifest


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BAD = [
    (["search", "--space", "lambda_treshold"], "Did you mean 'lambda_threshold'"),
    (["search", "--dataset", "camus2"], "unknown dataset 'camus2'"),
    (["search", "--task", "detection"], "no task 'detection'"),
    (["search", "--space", "strategies", "-p", "strategy=gradpromm"], "unknown strategy 'gradpromm'"),
    (["search", "-p", "lam=0"], "lam (λ) must be a finite number > 0"),
    (["search", "-p", "lam=-0.5:1"], "needs low > 0"),
    (["search", "-p", "threshold=-1.5:1"], "threshold (τ) must lie in [-1, 1]"),
    (["search", "-p", "threshold=2"], "threshold (τ) must lie in [-1, 1]"),
    (["search", "--trials", "0"], "--trials must be ≥ 1"),
    (["search", "--epochs", "0"], "--epochs must be ≥ 1"),
    (["search", "--scheduler", "hyperband"], "valid schedulers: fifo, asha"),
    (["search", "--sampler", "grid"], "valid samplers"),
    (["search", "-p", "lamda=1"], "Did you mean 'lam'"),
    (["search", "-p", "lam"], "is not KEY=VALUE"),
    (["search", "--degradation", "gausian:sigma=0.1"], "unknown degradation"),
    (["search", "--degradation", "gaussian:sigma=-1"], "sigma"),
    (["search", "--trials", "many"], "Invalid value for '--trials'"),
    (["search", "--bogus"], "No such option: --bogus"),
    (["search", "--space", "gradprom_lambda", "-p", "lam=0.1"], "nothing left to search"),
    (["search", "-p", "image_size=30"], "multiple of 4"),
    (["search", "--degradation", "blur:sigma=20", "-p", "image_size=16"], "too large for 16x16"),
    (["search", "--task", "segmentation", "-p", "recognizer_depth=5"], "divisible by 32"),
    (["search", "-p", "recognizer=srresnet"], "is not a recognizer"),
    (["search", "--dataset", "synthetic,synthetic"], "twice"),
    (["train", "--lam", "0"], "lam (λ) must be a finite number > 0"),
    (["train", "--strategy", "pcgrd"], "Did you mean 'pcgrad'"),
    (["train", "--set", "image_sise=32"], "Did you mean 'image_size'"),
    (["train", "--threshold", "3", "--strategy", "threshold"], "[-1, 1]"),
    (["pareto", "/nonexistent/experiment"], "no trials.parquet"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture, tmp_path: Path, argv: list[str],
                                      message: str) -> None:
    if argv[0] == "search":
        argv = [*argv, "--out", str(tmp_path)]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_finished_experiment_is_not_overwritten(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    write_manifest(tmp_path / "done", {"status": "finished"})
    code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", "done")
    assert code == 2 and "already holds an experiment (status: finished)" in err and "--resume" in err
    code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", "fresh", "--resume")
    assert code == 2 and "nothing to resume" in err
    code, _, err = run(capsys, "search", "--out", str(tmp_path), "--resume")
    assert code == 2 and "needs the --name" in err
    code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", "done", "--resume", "--overwrite")
    assert code == 2 and "contradict" in err


def test_overwrite_only_replaces_gradprom_experiments(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("years of work")
    code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", "thesis", "--overwrite")
    assert code == 2 and "refusing to --overwrite" in err
    assert (tmp_path / "thesis" / "thesis.tex").read_text() == "years of work"
    for name in ("..", "a/b", "."):
        code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", name)
        assert code == 2 and "plain folder name" in err


def test_unwritable_out_is_reported_before_ray(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run(capsys, "search", "--out", str(blocker), "--name", "x")
    assert code == 2 and "choose a writable --out" in err


@pytest.mark.parametrize(("command", "expected"), [
    ("strategies", ["enhancer_only", "joint", "frozen", "gradprom", "threshold", "gradprom_soft", "pcgrad"]),
    ("spaces", ["lambda_threshold", "strategies", "architecture"]),
    ("datasets", ["synthetic", "classification", "segmentation", "gaussian"]),
])
def test_listings(capsys: pytest.CaptureFixture, command: str, expected: list[str]) -> None:
    code, out, _ = run(capsys, command)
    assert code == 0
    for word in expected:
        assert word in out


def test_train_runs_one_trial_without_ray(capsys: pytest.CaptureFixture, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import TINY

    monkeypatch.setenv("GRADPROM_CACHE", str(tmp_path))
    sets = [arg for k, v in TINY.items() if k not in ("epochs", "device") for arg in ("--set", f"{k}={v}")]
    code, out, err = run(capsys, "train", "--strategy", "gradprom_soft", "--lam", "0.3", "--epochs", "2",
                         "--device", "cpu", *sets)
    assert code == 0, err
    assert "epoch 2/2" in out and "test: psnr" in out and "acc_ref" in out
    assert "gradprom_soft(lam=0.3" in out


@pytest.mark.parametrize(("argv", "where"), [
    (["nosuch"], "gradprom --help"),
    (["search", "--nosuch"], "gradprom search --help"),
    (["cluster", "nosuch"], "gradprom cluster --help"),
    (["cluster", "up", "--bad"], "gradprom cluster up --help"),
    (["datasets", "check", "synthetic", "--bad"], "gradprom datasets check --help"),
])
def test_usage_errors_point_at_the_right_help(capsys: pytest.CaptureFixture, argv: list[str], where: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.strip().endswith(f"(see `{where}`)"), err
    assert "gradprom gradprom" not in err


# --- a batch larger than the training split: one line before Ray starts ------------------------------------

def search_argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["search", "--out", str(tmp_path), "--name", "b", "--device", "cpu", "-p", "image_size=32", *extra]


@pytest.mark.parametrize(("extra", "message"), [
    (["-p", "n_train=8", "-p", "batch_size=16"],
     "batch_size 16 is larger than the training split of synthetic (8 samples); lower it (--param batch_size=8"),
    (["--space", "gradprom_lambda", "-p", "n_train=8", "-p", "batch_size=4:64"],
     "the top of the searched batch_size 64 is larger than the training split of synthetic (8 samples)"),
    (["-p", "n_train=8", "-p", "batch_size=2,4,12"], "batch_size 12 is larger"),
    # 7 samples over 4 workers: 1 each, but a batch of 8 asks 2 of each worker
    (["--workers-per-trial", "4", "-p", "n_train=7", "-p", "batch_size=8"],
     "batch_size 8 over 4 workers (2 each) is larger than each worker's share of the training split of synthetic "
     "(7 samples, 1 each); lower it (--param batch_size=4"),
    (["--workers-per-trial", "4", "-p", "n_train=3", "-p", "batch_size=4"], "3 sample(s), fewer than the 4 workers"),
])
def test_batch_larger_than_the_training_split_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                          extra: list[str], message: str) -> None:
    started = time.monotonic()
    code, _, err = run(capsys, *search_argv(tmp_path, *extra))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and "n_train" in err, err
    assert not (tmp_path / "b").exists()  # refused before the experiment folder (and Ray) exist
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(("extra", "fits"), [
    (["-p", "n_train=8", "-p", "batch_size=8"], True),  # one step per epoch
    (["--workers-per-trial", "2", "-p", "n_train=9", "-p", "batch_size=9"], True),  # 4 each of 4: one step
    (["--workers-per-trial", "2", "-p", "n_train=9", "-p", "batch_size=10"], False),  # 5 each of 4
])
def test_batch_that_fits_passes_the_check(capsys: pytest.CaptureFixture, tmp_path: Path, extra: list[str],
                                          fits: bool) -> None:
    """A finished experiment of that name stops the search right after the checks: a fitting batch gets that far."""
    write_manifest(tmp_path / "b", {"status": "finished"})
    code, _, err = run(capsys, *search_argv(tmp_path, *extra))
    assert code == 2
    assert ("already holds an experiment" in err) == fits and ("is larger than" in err) != fits, err


def test_batch_larger_than_a_small_camus_folder(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: a CAMUS folder with few patients. 4 training patients, one view, two phases: 8 frames."""
    from tests.test_camus import make_2023

    monkeypatch.setenv("GRADPROM_CACHE", str(tmp_path / "cache"))
    make_2023(tmp_path / "data", splits=(4, 1, 1))
    argv = search_argv(tmp_path, "--dataset", "camus", "--task", "segmentation", "--data-root",
                       str(tmp_path / "data"), "-o", "views=4CH", "-p", "batch_size=32", "-p", "n_train=64")
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "batch_size 32 is larger than the training split of camus (8 samples)" in err, err
    assert "--param batch_size=8 or less" in err and "--data-root" in err, err
    assert not (tmp_path / "b").exists()
