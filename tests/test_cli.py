"""Bad input ends in one line on stderr and exit code 2, never a traceback; listings work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gradprom.cli import main
from gradprom.results.experiment import write_manifest


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BAD = [
    (["search", "--space", "lambda_treshold"], "Did you mean 'lambda_threshold'"),
    (["search", "--dataset", "camus2"], "unknown dataset 'camus2'"),
    (["search", "--task", "detection"], "no task 'detection'"),
    (["search", "--space", "strategies", "-p", "strategy=gradpromm"], "unknown strategy 'gradpromm'"),
    (["search", "-p", "lam=0"], "lam must be > 0, got 0.0 (λ"),
    (["search", "-p", "lam=-0.5:1"], "needs low > 0"),
    (["search", "-p", "threshold=-1.5:1"], "threshold must be in [-1, 1], got -1.5 (τ"),
    (["search", "-p", "threshold=2"], "threshold must be in [-1, 1], got 2.0 (τ"),
    (["search", "--trials", "0"], "--trials must be ≥ 1"),
    (["search", "--epochs", "0"], "--epochs must be ≥ 1"),
    (["search", "--scheduler", "hyperband"], "--scheduler: unknown scheduler 'hyperband'. Valid schedulers: asha"),
    (["search", "--sampler", "grid"], "Valid samplers"),
    (["search", "--sampler", "nsgaii"], "--sampler: unknown sampler 'nsgaii'. Did you mean 'nsga2'?"),
    (["search", "--concurrency", "-1"], "--concurrency must be ≥ 0 (0 fills the CPUs), got -1"),
    (["search", "--cpus-per-trial", "100"], "a trial needs 100 CPUs"),
    (["search", "--eval-dataset", "nosuch"], "--eval-dataset: unknown dataset 'nosuch'"),
    (["search", "--storage", "nosuch://x"], "--storage nosuch://x: Can't load plugin"),
    (["search", "--storage", "sqlite:////nonexistent-folder/study.db"], "does not exist or is not writable"),
    (["search", "--name", "a\nb"], "--name must be a plain folder name"),
    (["search", "--name", "-x"], "--name must be a plain folder name"),
    (["search", "--space", "strategies", "-p", "strategy=gradpromm"], "Valid strategies: "),
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
    (["train", "--lam", "0"], "lam must be > 0, got 0.0 (λ"),
    (["train", "--strategy", "pcgrd"], "Did you mean 'pcgrad'"),
    (["train", "--set", "image_sise=32"], "Did you mean 'image_size'"),
    (["train", "--threshold", "3", "--strategy", "threshold"], "[-1, 1]"),
    (["pareto", "/nonexistent/experiment"], "no trials.parquet"),
    (["cluster", "up", "aws-gpuu", "--dry-run"], "Did you mean the template 'aws-gpu'?"),
    (["cluster", "templates", "--write", "aws-gpuu"], "Did you mean 'aws-gpu'?"),
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


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, byte for byte."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_overwrite_only_replaces_gradprom_experiments(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """--overwrite removes only a folder proven gradprom's: its manifest's signature and nothing in it that gradprom
    does not write. A folder without a manifest, one with somebody else's manifest.json (the issue's web app), one
    whose manifest is not JSON, and a real experiment with a user's file put in it all survive byte for byte."""
    from gradprom.results.experiment import new_manifest

    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("years of work")
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp" / "manifest.json").write_text('{"name": "My web app"}')
    (tmp_path / "webapp" / "precious.bin").write_bytes(bytes(range(256)))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    write_manifest(tmp_path / "mixed", {**new_manifest({"trials": 1}), "status": "finished"})
    (tmp_path / "mixed" / "trials.parquet").write_bytes(b"PAR1")
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    for name, says in (("thesis", "is not a gradprom experiment (no manifest.json); refusing to replace it"),
                       ("webapp", "its manifest.json is not a gradprom manifest"),
                       ("broken", "unreadable (JSONDecodeError), so gradprom cannot tell whether it made"),
                       ("mixed", "holds 'notes.txt', which gradprom did not write; refusing to replace it")):
        code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", name, "--overwrite")
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert "--overwrite to" not in err
    assert snapshot(tmp_path) == before
    for name in ("..", "a/b", "."):
        code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", name)
        assert code == 2 and "plain folder name" in err


def test_what_overwrite_removes_is_exactly_what_gradprom_wrote(tmp_path: Path) -> None:
    from gradprom.results.experiment import OWNED, new_manifest, prepare_folder

    folder = tmp_path / "exp"
    write_manifest(folder, {**new_manifest({"trials": 1}), "status": "finished"})
    for name in ("trials.parquet", "epochs.parquet", "optuna.journal", ".trials.parquet.tmp"):
        (folder / name).write_bytes(b"x")
    (folder / "ray" / "synthetic").mkdir(parents=True)
    (folder / "ray" / "synthetic" / "result.json").write_text("{}")
    (tmp_path / "beside.txt").write_text("not in the experiment")
    assert {p.name for p in folder.iterdir()} - {".trials.parquet.tmp"} <= OWNED
    assert prepare_folder(folder, resume=False, overwrite=True) is None
    assert folder.is_dir() and not any(folder.iterdir())
    assert (tmp_path / "beside.txt").read_text() == "not in the experiment"


def test_a_run_refused_before_its_first_trial_is_reused_without_resume(capsys: pytest.CaptureFixture,
                                                                      tmp_path: Path) -> None:
    """A storage that parses but cannot be opened is found only when it is opened: before Ray or any data, and the
    folder is left `not_started`, so the corrected rerun is not told to --resume the bad settings."""
    import json

    from gradprom.results.experiment import prepare_folder

    (tmp_path / "db.sqlite").mkdir()  # a folder where the database file should be
    started = time.monotonic()
    code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", "late", "--storage",
                       f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert code == 2 and "--storage sqlite:///" in err and len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - started < 30  # no reference pretraining, no Ray
    manifest = json.loads((tmp_path / "late" / "manifest.json").read_text())
    assert manifest["status"] == "not_started" and "--storage" in manifest["error"]
    code, _, err = run(capsys, "search", "--out", str(tmp_path), "--name", "late", "--resume")
    assert code == 2 and "nothing to resume" in err
    assert prepare_folder(tmp_path / "late", resume=False, overwrite=False) is None  # reused as it is
    assert not any((tmp_path / "late").iterdir())


def test_results_files_are_checked_for_what_they_claim(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """An epochs table copied in as trials.parquet, or any table with gradprom's schema key but not a trial's
    columns, is refused by pareto, report and aggregate in one line (no '2 trials', no traceback)."""
    import shutil

    from gradprom.results.parquet import write_rows

    exp = tmp_path / "exp"
    write_rows(exp / "epochs.parquet", [{"trial_id": "a", "epoch": e, "dataset": "synthetic", "psnr": 20.0 + e}
                                        for e in (1, 2)])
    shutil.copy(exp / "epochs.parquet", exp / "trials.parquet")
    foreign = tmp_path / "foreign"
    write_rows(foreign / "trials.parquet", [{"name": "x", "value": 1.0}])
    for folder, says in ((exp, "is not a gradprom trials table (it has no column 'status'; it looks like "
                                "epochs.parquet)"), (foreign, "is not a gradprom trials table")):
        for argv in (["pareto", str(folder)], ["report", str(folder), "--out", str(tmp_path / "r")],
                     ["aggregate", str(folder), "--out", str(tmp_path / "all.parquet")]):
            code, out, err = run(capsys, *argv)
            assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (argv, err)
            assert "trials" not in out


def test_an_experiment_without_numeric_columns_says_so(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from gradprom.results.parquet import write_rows

    write_rows(tmp_path / "e" / "trials.parquet", [{"trial_id": "a", "status": "completed", "dataset": "x"}])
    code, _, err = run(capsys, "pareto", str(tmp_path / "e"))
    assert code == 2 and "there are no objectives (numeric result column)s" not in err
    assert "unknown objective (numeric result column) 'psnr': there are no objectives (numeric result column) to " \
           "choose from here" in err, err


def test_outputs_are_checked_before_any_work(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """An unwritable --plot, --out of aggregate, report and rerun: one line, exit 2, before anything is read or
    retrained (rerun is refused without a trial to retrain: its --out is checked first)."""
    from gradprom.results.parquet import write_rows

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    write_rows(tmp_path / "e" / "trials.parquet", [{"trial_id": "a", "status": "completed", "dataset": "s",
                                                    "psnr": 20.0, "task_metric": 0.5}])
    exp = str(tmp_path / "e")
    for argv, says in ((["pareto", exp, "--plot", str(blocker / "front.png")], "--plot"),
                       (["pareto", exp, "--plot", str(tmp_path / "front.txt")], "must name a .png, .pdf or .svg"),
                       (["aggregate", exp, "--out", str(blocker / "all.parquet")], "--out"),
                       (["report", exp, "--out", str(blocker)], "is a file, not a folder"),
                       (["rerun", exp, "nosuchtrial", "--out", str(blocker)], "is a file, not a folder")):
        code, out, err = run(capsys, *argv)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert "Traceback" not in err and out == "", (argv, out)


@pytest.mark.parametrize(("argv", "says"), [
    (["--address", "127.0.0.1:6379", "--", "search"], "is not a Jobs API address"),
    (["--address", "ray://127.0.0.1:10001", "--dry-run", "--", "search"], "is not a Jobs API address"),
    (["--address", "http://127.0.0.1:9", "--dry-run", "--", "search", "--dataset", "nosuch"],
     "unknown dataset 'nosuch'"),
    (["--address", "http://127.0.0.1:9", "--dry-run", "--", "search", "--trials", "many"],
     "Invalid value for '--trials'"),
    (["--address", "http://127.0.0.1:9", "--dry-run", "--", "search", "--bogus"], "No such option: --bogus"),
    (["--address", "http://127.0.0.1:9", "--dry-run", "--", "search", "-p", "lam=0"], "lam must be > 0"),
    (["--address", "http://127.0.0.1:9", "--dry-run", "--", "protocol", "nosuch"], "unknown protocol 'nosuch'"),
    (["--address", "http://127.0.0.1:9", "--dry-run", "--", "train", "--strategy", "pcgrd"], "Did you mean 'pcgrad'"),
    (["--dry-run", "--", "search", "--out", "relative"], "where should the job run?"),
])
def test_cluster_submit_checks_the_job_before_submitting(capsys: pytest.CaptureFixture, argv: list[str],
                                                         says: str) -> None:
    """The job's own command goes through this CLI's parser and its offline checks first; the address must be the
    Jobs API's; with no address the error comes alone (no --out warning before it)."""
    started = time.monotonic()
    code, out, err = run(capsys, "cluster", "submit", *argv)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert out == "" and time.monotonic() - started < 10


def test_cluster_submit_dry_run_of_a_good_job(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "cluster", "submit", "--address", "http://127.0.0.1:9", "--dry-run", "--", "search",
                         "--dataset", "camus", "--data-root", "/data/on/the/cluster", "--out", "s3://bucket/x")
    assert code == 0, err
    assert "entrypoint: python -m gradprom search --dataset camus --data-root /data/on/the/cluster" in out


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
    from tests.fixtures.settings import TINY

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
    (["--workers-per-trial", "4", "--cpus-per-trial", "0.5", "-p", "n_train=7", "-p", "batch_size=8"],
     "batch_size 8 over 4 workers (2 each) is larger than each worker's share of the training split of synthetic "
     "(7 samples, 1 each); lower it (--param batch_size=4"),
    (["--workers-per-trial", "4", "--cpus-per-trial", "0.5", "-p", "n_train=3", "-p", "batch_size=4"],
     "3 sample(s), fewer than the 4 workers"),
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
    from tests.fixtures.camus import make_2023

    monkeypatch.setenv("GRADPROM_CACHE", str(tmp_path / "cache"))
    make_2023(tmp_path / "data", splits=(4, 1, 1))
    argv = search_argv(tmp_path, "--dataset", "camus", "--task", "segmentation", "--data-root",
                       str(tmp_path / "data"), "-o", "views=4CH", "-p", "batch_size=32", "-p", "n_train=64")
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "batch_size 32 is larger than the training split of camus (8 samples)" in err, err
    assert "--param batch_size=8 or less" in err and "--data-root" in err, err
    assert not (tmp_path / "b").exists()
