"""CAMUS from tiny files of the real formats (2023 NIfTI, 2019 MetaImage), built here, nothing downloaded."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch

from gradprom.datasets import get_dataset
from gradprom.errors import GradpromError
from tests.fixtures.camus import frame_pair, make_2019, make_2023


def check_pairing(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Each image pixel inside the frame decodes to its mask label; padding is 0 in both."""
    values = (images[:, 0] * 255).round()
    inside = values > 0
    assert torch.equal(((values - 10) / 60).round().long()[inside], masks[inside])
    assert (masks[~inside] == 0).all()


def test_2023_segmentation_counts_labels_pairing(tmp_path: Path) -> None:
    make_2023(tmp_path)
    data = get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (16, 4, 4)  # patients × 2 views × ED/ES
    assert data.num_classes == 4 and data.channels == 1 and data.train.images.shape[1:] == (1, 32, 32)
    assert set(data.train.targets.unique().tolist()) == {0, 1, 2, 3}
    for split in (data.train, data.val, data.test):
        check_pairing(split.images, split.targets)


def test_2023_classification_and_split_membership(tmp_path: Path) -> None:
    members = make_2023(tmp_path)
    data = get_dataset("camus", task="classification", image_size=32, data_root=str(tmp_path))
    assert data.class_names == ["good", "medium", "poor"]
    # the validation patient is patient0005: its 2CH quality is QUALITIES[5 % 3], 4CH QUALITIES[6 % 3]
    assert members["validation"] == ["patient0005"]
    assert data.val.targets.tolist() == [2, 2, 0, 0]
    val_seg = get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path)).val
    assert torch.equal(val_seg.images, data.val.images)  # same frames, same order, for both tasks


def test_caps_are_seeded_and_views_selectable(tmp_path: Path) -> None:
    make_2023(tmp_path)
    a = get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path), n_train=5, seed=3)
    b = get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path), n_train=5, seed=3)
    assert len(a.train) == 5 and torch.equal(a.train.images, b.train.images)
    one_view = get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path), views="4CH",
                           phases="ED")
    assert len(one_view.train) == 4
    with pytest.raises(GradpromError, match="views must be from 2CH,4CH"):
        get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path), views="3CH")


def test_2019_release_carved_by_patient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_2019(tmp_path)
    monkeypatch.setenv("GRADPROM_DATA", str(tmp_path))  # the environment variable works like --data-root
    data = get_dataset("camus", task="segmentation", image_size=32)
    assert (len(data.train), len(data.val), len(data.test)) == (32, 4, 4)  # 8/1/1 patients × 4 frames
    for split in (data.train, data.val, data.test):
        check_pairing(split.images, split.targets)


def test_missing_truncated_and_mismatched_files(tmp_path: Path) -> None:
    with pytest.raises(GradpromError, match="not found: looked in .*camus.*database_nifti.*creatis"):
        get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path))
    make_2023(tmp_path)
    bad = tmp_path / "camus" / "database_nifti" / "patient0002" / "patient0002_2CH_ES.nii.gz"
    bad.write_bytes(gzip.compress(b"\x00" * 10))
    with pytest.raises(GradpromError, match="patient0002_2CH_ES.nii.gz: unreadable"):
        get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path))
    nibabel.save(nibabel.Nifti1Image(frame_pair(np.random.default_rng(0))[0], np.eye(4)), bad)
    small_mask = bad.with_name("patient0002_2CH_ES_gt.nii.gz")
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8), np.uint8), np.eye(4)), small_mask)
    with pytest.raises(GradpromError, match="patient0002_2CH_ES_gt.nii.gz: mask is 8×8 but its image is 24×32"):
        get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path))


def test_2019_truncated_raw(tmp_path: Path) -> None:
    make_2019(tmp_path)
    raw = tmp_path / "camus" / "training" / "patient0003" / "patient0003_4CH_ED.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(GradpromError, match="patient0003_4CH_ED.raw: holds 100 bytes"):
        get_dataset("camus", task="segmentation", image_size=32, data_root=str(tmp_path))
