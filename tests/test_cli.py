"""Bad input ends in one line on stderr and exit code 2, never a traceback; listings work."""

from __future__ import annotations

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
