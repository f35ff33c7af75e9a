"""One trial in a plain loop (no Ray): per-epoch reports, checkpoints, resume, NaN handling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gradprom.errors import GradpromError, NonFiniteLossError
from gradprom.trainables.build import build_trial
from gradprom.trainables.checkpoint import CHECKPOINT_FILE, load_checkpoint
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import train_trial
from tests.fixtures.settings import TINY

METRICS = {"epoch", "psnr", "ssim", "acc", "acc_ref", "promoted_frac", "cos_mean", "loss_ip", "loss_vr",
           "time_train_s", "time_eval_s", "images_per_s", "psnr_input", "task_metric", "schema_version"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """TINY settings with one recognizer cache for the module's tests (overrides conftest's per-test cache): the
    pretrained recognizers are deterministic per cache key, so a test reading one another test trained sees the
    weights it would have trained itself, without paying for it again."""
    return {**TINY, "cache_dir": str(tmp_path_factory.mktemp("cache"))}


def collect(settings: dict, resume_from: str | None = None, keep: Path | None = None) -> list[dict]:
    reports = []

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        reports.append(metrics)
        if keep is not None and checkpoint_dir:
            (keep / f"epoch{metrics['epoch']}").mkdir(parents=True)
            (keep / f"epoch{metrics['epoch']}" / CHECKPOINT_FILE).write_bytes(
                (Path(checkpoint_dir) / CHECKPOINT_FILE).read_bytes())

    train_trial(settings, report, resume_from=resume_from)
    return reports


@pytest.fixture(scope="module")
def two_epochs(tiny: dict) -> tuple[dict, list[dict]]:
    """A two-epoch gradprom trial's settings and reports, read by the next two tests."""
    settings = {**tiny, "epochs": 2, "strategy": "gradprom"}
    return settings, collect(settings)


def test_reports_every_epoch_with_metrics_and_test_figures(two_epochs: tuple[dict, list[dict]]) -> None:
    _, reports = two_epochs
    assert [r["epoch"] for r in reports] == [1, 2]
    for r in reports:
        assert set(r) >= METRICS
        assert 0 <= r["promoted_frac"] <= 1 and -1 <= r["cos_mean"] <= 1
        assert 0 <= r["acc"] <= 1 and math.isfinite(r["psnr"])
    assert "test_psnr" in reports[-1] and "test_acc_ref" in reports[-1] and "test_psnr" not in reports[0]


def test_reference_levels_on_clean_and_degraded_images(two_epochs: tuple[dict, list[dict]]) -> None:
    """acc_ref_clean / acc_ref_input are the fixed reference's accuracy on the clean and on the degraded images,
    computed here by calling the model directly; they are the same every epoch (constants of the data)."""
    settings, reports = two_epochs
    trial = build_trial(TrialConfig.from_dict(settings))
    trial.reference.eval()
    with torch.no_grad():
        for split, inputs, prefix in (("val", trial.val_inputs, ""), ("test", trial.test_inputs, "test_")):
            y = getattr(trial.data, split).targets
            clean = (trial.reference(getattr(trial.data, split).images).argmax(1) == y).float().mean().item()
            degraded = (trial.reference(inputs).argmax(1) == y).float().mean().item()
            assert reports[-1][f"{prefix}acc_ref_clean"] == pytest.approx(clean, abs=1e-6)
            assert reports[-1][f"{prefix}acc_ref_input"] == pytest.approx(degraded, abs=1e-6)
    assert reports[0]["acc_ref_clean"] == reports[1]["acc_ref_clean"]
    assert reports[0]["acc_ref_input"] == reports[1]["acc_ref_input"]


def test_segmentation_reports_dice_miou_and_each_class(tiny: dict) -> None:
    """Segmentation ranks by the foreground Dice (`task_metric`), with mIoU, each class's IoU and Dice, and the
    test figures' bootstrap intervals beside it; the foreground Dice is the mean of the non-background classes'."""
    r = collect({**tiny, "task": "segmentation", "strategy": "pcgrad"})[-1]
    assert 0 <= r["miou"] <= 1 and 0 <= r["miou_ref"] <= 1 and r["task_metric"] == r["dice"]
    assert 0 <= r["miou_ref_clean"] <= 1 and 0 <= r["test_miou_ref_input"] <= 1
    for prefix in ("", "test_"):
        classes = [r[f"{prefix}dice_{name}"] for name in ("organ", "finding")]
        assert r[f"{prefix}dice"] == pytest.approx(sum(classes) / 2)
        assert {f"{prefix}iou_background", f"{prefix}dice_ref_finding", f"{prefix}iou_ref_clean_finding"} <= set(r)
    for name in ("test_dice", "test_dice_ref", "test_miou", "test_dice_ref_input"):
        assert r[f"{name}_ci_low"] <= r[name] <= r[f"{name}_ci_high"], name
    assert "dice_ci_low" not in r  # validation figures carry no interval: the test split's are what rank


def test_deterministic_and_resumes_where_it_stopped(tiny: dict, tmp_path: Path) -> None:
    settings = {**tiny, "epochs": 3, "strategy": "threshold", "threshold": 0.1}
    full = collect(settings, keep=tmp_path)
    # same seed, same figures; the run again pretrains its recognizers afresh, so it also holds when `full` read
    # them from the module's cache
    assert collect({**settings, "cache_dir": str(tmp_path / "cold")})[-1]["psnr"] == full[-1]["psnr"]
    resumed = collect(settings, resume_from=str(tmp_path / "epoch1"))
    assert [r["epoch"] for r in resumed] == [2, 3]
    assert resumed[-1]["psnr"] == pytest.approx(full[-1]["psnr"], abs=1e-4)
    assert load_checkpoint(tmp_path / "epoch3")["epoch"] == 3


def test_non_finite_loss_fails_with_epoch_and_step(tiny: dict) -> None:
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1 step \d+"):
        collect({**tiny, "strategy": "joint", "lr": 1e30, "epochs": 2})


def test_corrupt_checkpoint_is_refused(tiny: dict, tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(GradpromError, match="unreadable"):
        collect(tiny, resume_from=str(tmp_path))


def test_gate_telemetry_is_consistent_with_the_gate(tiny: dict) -> None:
    """Every epoch's cosines explain its promoted fraction (cos ≥ τ), histogram, quantiles and mean."""
    tau = 0.02
    reports = collect({**tiny, "epochs": 2, "strategy": "threshold", "threshold": tau})
    for r in reports:
        steps = r["cos_steps"]
        assert len(steps) == r["steps"] and all(-1 <= c <= 1 for c in steps)
        assert r["promoted_frac"] == pytest.approx(sum(c >= tau for c in steps) / len(steps))
        assert sum(r[f"cos_hist_{i}"] for i in range(10)) == r["steps"]
        assert r["cos_mean"] == pytest.approx(sum(steps) / len(steps), abs=1e-5)
        assert min(steps) - 1e-6 <= r["cos_q10"] <= r["cos_q50"] <= r["cos_q90"] <= max(steps) + 1e-6


def test_cheap_gate_telemetry_marks_unmeasured_steps(tiny: dict) -> None:
    (r,) = collect({**tiny, "strategy": "gradprom", "gate_every": 2})
    measured = [c for c in r["cos_steps"] if not math.isnan(c)]
    assert len(measured) == (r["steps"] + 1) // 2 and sum(r[f"cos_hist_{i}"] for i in range(10)) == len(measured)


def test_a_head_gate_records_its_cosine_under_its_own_name(tiny: dict) -> None:
    """gate_on=head measures the last layer's cosine: it goes to head_cos_*, and cos_* (the full gradients'
    cosine, never measured) stays NaN, so no front or plot reads one as the other."""
    (r,) = collect({**tiny, "strategy": "gradprom", "gate_on": "head"})
    assert math.isnan(r["cos_mean"]) and "cos_steps" not in r and "cos_hist_0" not in r
    assert len(r["head_cos_steps"]) == r["steps"] and -1 <= r["head_cos_mean"] <= 1
    assert r["promoted_frac"] == pytest.approx(sum(c >= 0 for c in r["head_cos_steps"]) / r["steps"])


def test_multi_auxiliary_trial_reports_both_tasks_and_resumes(tiny: dict, tmp_path: Path) -> None:
    settings = {**tiny, "epochs": 2, "strategy": "gradprom", "aux_task": "segmentation", "lam_aux": 0.5}
    full = collect(settings, keep=tmp_path)
    last = full[-1]
    assert 0 <= last["acc"] <= 1 and 0 <= last["aux_miou"] <= 1 and 0 <= last["aux_miou_ref"] <= 1
    assert 0 <= last["test_aux_miou"] <= 1 and 0 <= last["aux_promoted_frac"] <= 1
    assert -1 <= last["aux_cos_mean"] <= 1 and last["aux_cos_mean"] != last["cos_mean"]
    resumed = collect(settings, resume_from=str(tmp_path / "epoch1"))
    assert resumed[-1]["aux_miou"] == pytest.approx(last["aux_miou"], abs=1e-4)
    (joint,) = collect({**settings, "epochs": 1, "strategy": "joint"})
    assert math.isnan(joint["aux_cos_mean"]) and joint["aux_promoted_frac"] == 1.0  # joint: no gate, always added


def test_multi_auxiliary_needs_one_image_set(tiny: dict) -> None:
    from gradprom.datasets import DATASETS, get_dataset, register_dataset

    if "two_image_sets" not in DATASETS:
        @register_dataset("two_image_sets", help="each task its own images (tests)")
        def two_image_sets(task: str, image_size: int, seed: int, n_train: int = 64, n_val: int = 32,
                           n_test: int = 32):  # noqa: ANN202
            return get_dataset("synthetic", task=task, image_size=image_size, seed=seed + (task == "segmentation"),
                               n_train=n_train, n_val=n_val, n_test=n_test)

    with pytest.raises(GradpromError, match="does not give its classification and segmentation tasks the same images"):
        collect({**tiny, "dataset": "two_image_sets", "aux_task": "segmentation"})


@pytest.mark.parametrize("gate", [
    {"strategy": "threshold", "threshold": 0.1}, {"strategy": "gradprom", "ema": 0.9},
    {"strategy": "gradprom", "gate_every": 3}, {"strategy": "gradprom", "gate_on": "head"},
    {"strategy": "gradprom", "gate_on": "head", "gate_every": 3},
    {"strategy": "gradprom", "gate_every": 3, "ema": 0.9, "aux_task": "segmentation"}])
def test_a_resumed_trial_is_the_trial_it_was(tiny: dict, tmp_path: Path, gate: dict) -> None:
    """Resumed from epoch 1, every later figure is bit-identical to the trial that was never interrupted,
    including the gates' state kept between steps (EMA of the cosine, gate_every's counter, last decisions)."""
    settings = {**tiny, "epochs": 3, "max_steps_per_epoch": 4, **gate}  # 4 steps: gate_every=3 straddles epochs
    full = collect(settings, keep=tmp_path)
    resumed = collect(settings, resume_from=str(tmp_path / "epoch1"))
    assert [r["epoch"] for r in resumed] == [2, 3]
    timing = {"time_train_s", "time_eval_s", "wall_s", "step_ms", "images_per_s", "resumed_from"}
    for before, after in zip(full[1:], resumed, strict=True):
        differ = {k for k in before if k not in timing and not _same(before[k], after[k])}
        assert not differ, {k: (before[k], after[k]) for k in differ}


def _same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN (unmeasured steps), element-wise for lists."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
