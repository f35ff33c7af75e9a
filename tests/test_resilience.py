"""Failure handling below the end-to-end kills: NaN policies, a dead driver detected, full or unwritable
disks, results never half-written, and no credentials in the manifest."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.results.experiment import (
    check_free_space,
    driver_alive,
    new_manifest,
    prepare_folder,
    read_manifest,
    redact,
    this_driver,
    write_manifest,
)
from gradprom.results.parquet import read_rows, write_rows
from gradprom.trainables.image_loss import IMAGE_LOSSES, l1
from gradprom.trainables.pipeline import train_trial


def nan_every_other_call(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the image loss NaN on every second training step (evaluation never calls it)."""
    calls: list[int] = []

    def flaky(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        loss, x_ip = l1(*args)
        return (loss * math.nan if len(calls) % 2 == 0 else loss), x_ip

    monkeypatch.setitem(IMAGE_LOSSES._entries, "l1", flaky)
    return calls


def test_nan_fails_the_trial_with_epoch_and_step(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    nan_every_other_call(monkeypatch)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch 1 step 2$"):
        train_trial({**tiny, "strategy": "gradprom"})


def test_skip_step_skips_and_counts_nan_steps(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = nan_every_other_call(monkeypatch)
    final = train_trial({**tiny, "strategy": "gradprom", "nan_policy": "skip-step", "epochs": 2})
    steps = final["steps"]
    assert len(calls) == 2 * steps and final["nan_skips"] == steps // 2  # epoch 2: calls 5..8, NaN on even ones
    assert math.isfinite(final["psnr"]) and math.isfinite(final["loss_ip"])


def test_skip_step_gives_up_when_every_step_is_bad(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(IMAGE_LOSSES._entries, "l1", lambda *a: (l1(*a)[0] * math.inf, a[2]))
    with pytest.raises(NonFiniteLossError, match="every step of epoch 1"):
        train_trial({**tiny, "nan_policy": "skip-step"})


def test_a_non_finite_gradient_with_a_finite_loss_is_caught(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # sqrt at 0: the loss stays finite (0 added) but its gradient is inf·0 = NaN
    monkeypatch.setitem(IMAGE_LOSSES._entries, "l1", lambda *a: (l1(*a)[0] + torch.sqrt((a[2] * 0).sum()), a[2]))
    with pytest.raises(NonFiniteLossError, match="non-finite gradient at epoch 1 step 1"):
        train_trial({**tiny, "strategy": "joint"})


def test_nan_policy_is_validated(tiny: dict) -> None:
    with pytest.raises(GradpromError, match="nan_policy must be one of fail, skip-step"):
        train_trial({**tiny, "nan_policy": "ignore"})


def test_driver_liveness() -> None:
    assert driver_alive(this_driver()) is True
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert driver_alive({"pid": int(gone.stdout), "host": socket.gethostname(), "start": "1"}) is False
    assert driver_alive({**this_driver(), "start": "0"}) is False  # same pid, another process (pid reused)
    assert driver_alive({"pid": 1, "host": "another-host"}) is None and driver_alive(None) is None


def test_a_dead_driver_is_offered_for_resume_and_a_live_one_protected(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    manifest = new_manifest({"trials": 3})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    manifest["driver"] = {"pid": int(gone.stdout), "host": socket.gethostname(), "start": "1"}
    write_manifest(folder, manifest)
    with pytest.raises(GradpromError, match=r"stopped without finishing .* --name exp --resume$"):
        prepare_folder(folder, resume=False, overwrite=False)
    assert prepare_folder(folder, resume=True, overwrite=False)["status"] == "running"

    write_manifest(folder, {**manifest, "driver": this_driver()})  # this process is the "driver": alive
    for resume in (False, True):
        with pytest.raises(GradpromError, match="being searched right now"):
            prepare_folder(folder, resume=resume, overwrite=False)


def test_no_credentials_in_the_manifest(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"request": {"address": "ray://alice:s3cret@head:10001"},
                              "argv": ["--address", "http://u:pw@h:8265/?token=abc&x=1"]})
    text = (tmp_path / "manifest.json").read_text()
    assert "s3cret" not in text and "pw@" not in text and "abc" not in text
    assert read_manifest(tmp_path)["request"]["address"] == "ray://***@head:10001"
    assert redact({"n": 3, "plain": "gaussian:sigma=0.15"}) == {"n": 3, "plain": "gaussian:sigma=0.15"}


def test_too_little_disk_space_is_refused_before_starting(tmp_path: Path) -> None:
    check_free_space(tmp_path, needed=1)
    with pytest.raises(GradpromError, match=r"MiB free on the disk of .*choose another --out"):
        check_free_space(tmp_path, needed=2**62)


def test_a_failed_write_keeps_the_previous_results(tmp_path: Path) -> None:
    path = tmp_path / "trials.parquet"
    write_rows(path, [{"trial_id": "a", "status": "completed", "psnr": 20.0}])
    (tmp_path / ".trials.parquet.tmp").mkdir()  # the temporary file cannot be written: like a full disk
    with pytest.raises(GradpromError, match="cannot write .*trials.parquet.*previous version is kept"):
        write_rows(path, [{"trial_id": "a", "status": "completed", "psnr": 20.0},
                          {"trial_id": "b", "status": "completed", "psnr": 21.0}])
    assert read_rows(path) == [{"trial_id": "a", "status": "completed", "psnr": 20.0}]
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(GradpromError, match="cannot write"):
        write_rows(blocked / "sub" / "trials.parquet", [{"a": 1}])
    assert json.dumps(read_rows(path))  # still whole and readable


def test_a_bug_mid_search_is_one_line_and_leaves_the_folder_resumable(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is gradprom's own (here one raised where the studies run, as a TuneError carrying a traceback
    would be) ends in one line naming its last line, exit 1; the manifest says `interrupted`, so --resume works."""
    from gradprom.search import driver
    from tests.fixtures.cli import cli
    from tests.fixtures.settings import TINY_PARAMS

    def broken(req, studies, folder, console, progress, tracker=None):  # noqa: ANN001, ANN202
        progress["started"] = True
        raise RuntimeError("Traceback (most recent call last):\n  File x\nAttributeError: 'X' has no attribute 'y'")

    monkeypatch.setattr(driver, "run_studies", broken)
    run = cli("search", "--trials", "1", "--epochs", "1", "--out", str(tmp_path), "--name", "b", "--device", "cpu",
              *TINY_PARAMS, cache=str(tmp_path / "cache"))
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert "RuntimeError: AttributeError: 'X' has no attribute 'y'" in run.stderr and "--resume" in run.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and "has no attribute" in manifest["error"]
