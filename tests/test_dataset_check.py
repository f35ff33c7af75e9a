"""`gradprom datasets check`: every file decoded, every bad one listed, counts equal what training loads."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat

from gradprom.cli import main
from gradprom.datasets import get_dataset
from gradprom.datasets.base import Split
from gradprom.datasets.check import CheckReport, TaskCounts, check_dataset
from gradprom.errors import DataMissing, GradpromError
from tests.fixtures.camus import frame_pair, make_2023
from tests.fixtures.covid_ct import make_covid_ct
from tests.fixtures.isic2018 import make_task1, make_task3
from tests.fixtures.lizard import LABELS, make_lizard
from tests.fixtures.qata_cov19 import make_qata

SIZE = 32
SPLITS = ("train", "val", "test")
TASK1_INPUT = "ISIC2018_Task1-2_Training_Input"
TASK1_TRUTH = "ISIC2018_Task1_Training_GroundTruth"


def make_isic_both(root: Path) -> None:
    folder = root / "isic2018"
    make_task1(folder, "Training", 10, 0, np.random.default_rng(0))
    make_task3(folder, count=24)


def make_isic_task1(root: Path) -> list[str]:
    return make_task1(root / "isic2018", "Training", 10, 0, np.random.default_rng(0))


def per_class_of(split: Split, n_classes: int) -> list[int]:
    """Images per class (classification) or images showing each label (segmentation)."""
    targets = split.targets
    if targets.ndim == 1:
        return torch.bincount(targets, minlength=n_classes).tolist()
    return [int((targets == c).flatten(1).any(1).sum()) for c in range(n_classes)]


def counts_of(report: CheckReport, task: str) -> TaskCounts:
    (counts,) = [c for c in report.counts if c.task == task]
    return counts


def assert_matches_loader(counts: TaskCounts, name: str, root: Path, size: int = SIZE, **options) -> None:
    """The check's counts are what get_dataset loads (len of each split, classes per split)."""
    data = get_dataset(name, task=counts.task, image_size=size, data_root=str(root), **options)
    assert counts.class_names == data.class_names
    for split in SPLITS:
        loaded = getattr(data, split)
        assert counts.samples[split] == len(loaded), split
        assert counts.per_class[split] == per_class_of(loaded, len(data.class_names)), split


# name, fixture builder, {task: (train, val, test)} derived from the fixtures:
#   camus 2023: 4/1/1 patients x 2 views x 2 phases; isic2018: Task 1 10 images carved 8/1/1, Task 3 24 carved
#   20/2/2; covid_ct: official split 6/2/2 ("35%0.jpg" listed twice counts once); lizard: 64x48 images give two
#   32-px patches each, folds 1,3,2,1 -> train 2 images, test 1, val 1; qata: Train Set 10 -> 9 + 1 val, Test 3,
#   control 10 carved 8/1/1.
CLEAN: list[tuple[str, Callable[[Path], object], dict[str, tuple[int, int, int]]]] = [
    ("camus", make_2023, {"segmentation": (16, 4, 4), "classification": (16, 4, 4)}),
    ("isic2018", make_isic_both, {"segmentation": (8, 1, 1), "classification": (20, 2, 2)}),
    ("covid_ct", make_covid_ct, {"classification": (6, 2, 2)}),
    ("lizard", make_lizard, {"segmentation": (4, 2, 2)}),
    ("qata_cov19", make_qata, {"segmentation": (9, 1, 3), "classification": (17, 2, 4)}),
]


@pytest.mark.parametrize(("name", "build", "expected"), CLEAN, ids=[c[0] for c in CLEAN])
def test_clean_fixture_is_ok_and_counts_equal_the_loader(tmp_path: Path, name: str, build, expected: dict) -> None:
    build(tmp_path)
    report = check_dataset(name, data_root=str(tmp_path), image_size=SIZE)
    assert report.ok, (report.bad, report.problems)
    assert report.bad == [] and report.problems == [] and report.absent == []
    assert sorted(c.task for c in report.counts) == sorted(expected)
    assert report.total == sum(sum(v) for v in expected.values())
    for counts in report.counts:
        assert tuple(counts.samples[s] for s in SPLITS) == expected[counts.task]
        if counts.task == "classification":
            for split in SPLITS:
                assert sum(counts.per_class[split]) == counts.samples[split]
        else:  # every image shows some label, and no label more often than there are images
            for split in SPLITS:
                assert 0 < max(counts.per_class[split]) <= counts.samples[split]
        assert_matches_loader(counts, name, tmp_path)


def test_classes_are_counted_per_split_exactly(tmp_path: Path) -> None:
    make_isic_both(tmp_path)
    report = check_dataset("isic2018", data_root=str(tmp_path), task="classification", image_size=SIZE)
    counts = counts_of(report, "classification")
    totals = [sum(counts.per_class[s][c] for s in SPLITS) for c in range(7)]
    assert totals == np.bincount([k * 5 % 7 for k in range(24)], minlength=7).tolist()  # make_task3's classes
    make_covid_ct(tmp_path)
    covid = counts_of(check_dataset("covid_ct", data_root=str(tmp_path), image_size=SIZE), "classification")
    assert covid.per_class == {"train": [3, 3], "val": [1, 1], "test": [1, 1]}
    assert covid.class_names == ["covid", "noncovid"]


def test_isic_every_bad_file_is_listed_and_counts_cover_the_good_ones(tmp_path: Path) -> None:
    names = make_isic_task1(tmp_path)  # carved (seed 0): val = names[4], test = names[6], the rest train
    folder = tmp_path / "isic2018"
    for name in names[:2]:
        image = folder / TASK1_INPUT / f"{name}.jpg"
        image.write_bytes(image.read_bytes()[:300])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / TASK1_TRUTH / f"{names[3]}_segmentation.png")
    report = check_dataset("isic2018", data_root=str(tmp_path), image_size=SIZE)
    assert not report.ok and report.problems == []
    assert len(report.bad) == 3, report.bad
    assert f"{names[0]}.jpg: unreadable image" in report.bad[0]
    assert f"{names[1]}.jpg: unreadable image" in report.bad[1]
    assert f"{names[3]}_segmentation.png: mask is 8×8 but its image is 32×16" in report.bad[2]
    assert all("\n" not in line for line in report.bad)
    counts = counts_of(report, "segmentation")
    assert counts.samples == {"train": 5, "val": 1, "test": 1}
    assert report.total == 7
    # the very samples (and reasons) a search with --skip-bad would keep (and leave out)
    data = get_dataset("isic2018", task="segmentation", image_size=SIZE, data_root=str(tmp_path), skip_bad=True)
    assert data.skipped == report.bad
    for split in SPLITS:
        assert counts.per_class[split] == per_class_of(getattr(data, split), 2)
    assert [t for t, _ in report.absent] == ["classification"]  # Task 3 is not on disk: noted, not bad


def test_lizard_corrupt_mat_is_listed_once_for_all_its_patches(tmp_path: Path) -> None:
    folder = make_lizard(tmp_path)
    (folder / LABELS / "Labels" / "consep_1.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage" + b"\x00" * 40)
    calls: list[tuple[str, int, int]] = []
    # at 16 px each 64x48 image gives 4 x 3 = 12 patches: folds 1,3,2,1 -> 24 train, 12 val, 12 test
    report = check_dataset("lizard", data_root=str(tmp_path), image_size=16, step=lambda *a: calls.append(a))
    assert len(report.bad) == 1, report.bad
    assert "consep_1.mat: unreadable label file" in report.bad[0]
    counts = counts_of(report, "segmentation")
    assert counts.samples == {"train": 12, "val": 12, "test": 12}  # consep_1's 12 patches left out
    assert calls[-1] == ("segmentation", 48, 48)  # every listed patch was tried
    data = get_dataset("lizard", task="segmentation", image_size=16, data_root=str(tmp_path), skip_bad=True)
    assert data.skipped == report.bad and len(data.train) == 12
    assert loadmat(folder / LABELS / "Labels" / "crag_2.mat")["inst_map"].shape == (48, 64)  # the others are fine


def test_camus_label_out_of_range_is_bad_for_segmentation_only(tmp_path: Path) -> None:
    make_2023(tmp_path)
    gt = tmp_path / "camus" / "database_nifti" / "patient0001" / "patient0001_4CH_ES_gt.nii.gz"
    mask = frame_pair(np.random.default_rng(5))[1]
    mask[10, 10] = 7
    nibabel.save(nibabel.Nifti1Image(mask, np.eye(4)), gt)
    report = check_dataset("camus", data_root=str(tmp_path), image_size=SIZE)
    assert len(report.bad) == 1, report.bad
    assert "patient0001_4CH_ES_gt.nii.gz: labels must be 0..3, found 0..7" in report.bad[0]
    assert counts_of(report, "segmentation").samples == {"train": 15, "val": 4, "test": 4}
    assert counts_of(report, "classification").samples == {"train": 16, "val": 4, "test": 4}  # masks not read
    assert report.total == 23 + 24 and not report.ok


def test_covid_ct_listed_but_missing_and_truncated_files(tmp_path: Path) -> None:
    base = make_covid_ct(tmp_path)
    listing = base / "Data-split" / "COVID" / "valCT_COVID.txt"
    listing.write_text(listing.read_text() + "ghost scan%4.png\n")
    truncated = base / "Images-processed" / "CT_NonCOVID" / "non covid 7%1.jpg"
    truncated.write_bytes(truncated.read_bytes()[:120])
    report = check_dataset("covid_ct", data_root=str(tmp_path), image_size=SIZE)
    assert len(report.bad) == 2, report.bad
    assert any(re.search(re.escape("CT_COVID/ghost scan%4.png is missing"), line) for line in report.bad)
    assert any("non covid 7%1.jpg: unreadable image" in line for line in report.bad)
    counts = counts_of(report, "classification")
    assert counts.samples == {"train": 5, "val": 2, "test": 2}
    assert counts.per_class == {"train": [3, 2], "val": [1, 1], "test": [1, 1]}


def test_layout_problem_is_reported_and_other_tasks_still_checked(tmp_path: Path) -> None:
    make_isic_both(tmp_path)
    csv = tmp_path / "isic2018" / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines[:3], "ISIC_0000002,1.0,1.0,0.0,0.0,0.0,0.0,0.0", *lines[4:]]) + "\n")
    report = check_dataset("isic2018", data_root=str(tmp_path), image_size=SIZE)
    assert not report.ok and report.bad == []
    assert len(report.problems) == 1
    assert report.problems[0].startswith("classification: ") and "line 4 (ISIC_0000002)" in report.problems[0]
    assert [c.task for c in report.counts] == ["segmentation"] and report.total == 10


def test_task_selection_absent_task_and_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataMissing, match="dataset 'isic2018' not found"):
        check_dataset("isic2018", data_root=str(tmp_path), image_size=SIZE)
    make_isic_task1(tmp_path)
    report = check_dataset("isic2018", data_root=str(tmp_path), image_size=SIZE)
    assert report.ok and [c.task for c in report.counts] == ["segmentation"] and report.total == 10
    assert len(report.absent) == 1
    task, why = report.absent[0]
    assert task == "classification" and "ISIC2018_Task3_Training_Input" in why
    with pytest.raises(DataMissing, match=r"ISIC2018_Task3_Training_Input/ .*\(Task 3\)") as err:
        check_dataset("isic2018", data_root=str(tmp_path), task="classification", image_size=SIZE)
    assert isinstance(err.value, GradpromError) and "\n" not in str(err.value)
    only = check_dataset("isic2018", data_root=str(tmp_path), task="segmentation", image_size=SIZE)
    assert only.ok and only.absent == [] and only.total == 10
    with pytest.raises(GradpromError, match="dataset 'covid_ct' has no task 'segmentation'"):
        check_dataset("covid_ct", data_root=str(tmp_path), task="segmentation")
    with pytest.raises(GradpromError, match="multiple of 4"):
        check_dataset("isic2018", data_root=str(tmp_path), image_size=30)


def test_qata_without_control_group_checks_segmentation_only(tmp_path: Path) -> None:
    make_qata(tmp_path, control=False)
    report = check_dataset("qata_cov19", data_root=str(tmp_path), image_size=SIZE)
    assert report.ok
    assert [c.task for c in report.counts] == ["segmentation"]
    assert counts_of(report, "segmentation").samples == {"train": 9, "val": 1, "test": 3}
    assert [t for t, _ in report.absent] == ["classification"]
    assert "Control_Group" in report.absent[0][1]
    with pytest.raises(DataMissing, match="classification needs QaTa-COV19/Control_Group/"):
        check_dataset("qata_cov19", data_root=str(tmp_path), task="classification", image_size=SIZE)


def test_synthetic_is_counted_from_what_it_generates() -> None:
    report = check_dataset("synthetic", task="classification", image_size=SIZE)
    assert report.ok and report.absent == [] and report.total == 512 + 256 + 1024
    counts = counts_of(report, "classification")
    assert counts.samples == {"train": 512, "val": 256, "test": 1024}  # synthetic's n_* defaults
    assert counts.class_names == ["normal", "cluster", "branching"]
    data = get_dataset("synthetic", task="classification", image_size=SIZE)
    for split in SPLITS:
        assert sum(counts.per_class[split]) == counts.samples[split]
        assert counts.per_class[split] == per_class_of(getattr(data, split), 3)


def test_step_reports_progress_per_task(tmp_path: Path) -> None:
    make_qata(tmp_path)
    calls: list[tuple[str, int, int]] = []
    report = check_dataset("qata_cov19", data_root=str(tmp_path), image_size=SIZE, step=lambda *a: calls.append(a))
    for counts in report.counts:
        mine = [c for c in calls if c[0] == counts.task]
        total = sum(counts.samples.values())
        assert [done for _, done, _ in mine] == list(range(1, total + 1))
        assert {t for _, _, t in mine} == {total}
        assert mine[-1][1] == mine[-1][2]
    assert len(calls) == 13 + 23
    assert [c[0] for c in calls] == ["segmentation"] * 13 + ["classification"] * 23  # one task after the other


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["datasets", "check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_clean_fixture_prints_table_and_exits_0(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    make_isic_task1(tmp_path)
    code, out, err = cli(capsys, "isic2018", "--data-root", str(tmp_path), "--image-size", "32")
    assert code == 0, err
    assert err == ""
    assert "isic2018 / segmentation" in out
    lines = [line.replace("┃", "│") for line in out.splitlines()]  # the header row has heavy rules
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.count("│") == 6]
    rows = {row[0]: row[1:] for row in cells}
    assert rows["class"] == ["train", "val", "test", "total"]
    assert rows["samples"] == ["8", "1", "1", "10"]
    assert rows["lesion"] == ["8", "1", "1", "10"]  # every fixture mask has a lesion
    assert set(rows) == {"class", "background", "lesion", "samples"}
    assert "classification: not checked, its files are not there" in out
    assert "isic2018: all 10 samples are good" in out


def test_cli_bad_file_exits_2_naming_it(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    names = make_isic_task1(tmp_path)
    image = tmp_path / "isic2018" / TASK1_INPUT / f"{names[2]}.jpg"
    image.write_bytes(image.read_bytes()[:300])
    code, out, err = cli(capsys, "isic2018", "--data-root", str(tmp_path), "--image-size", "32")
    assert code == 2
    assert "1 bad file(s):" in out
    assert f"{names[2]}.jpg: unreadable image" in out
    assert "all 10 samples are good" not in out
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: isic2018: 1 bad file(s) (listed above)") and "--skip-bad" in last
    assert "Traceback" not in out + err


def test_cli_missing_folder_and_unknown_name(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, err = cli(capsys, "camus", "--data-root", str(tmp_path / "nowhere"), "--image-size", "32")
    assert code == 2 and out.strip() == ""  # (Rich's transient progress bar leaves one blank line on a pipe)
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: dataset 'camus' not found: looked in") and "not found" in err
    code, out, err = cli(capsys, "isic2019", "--data-root", str(tmp_path))
    assert code == 2 and out.strip() == ""
    assert "unknown dataset 'isic2019'. Did you mean 'isic2018'?" in err
    assert len(err.strip().splitlines()) == 1
