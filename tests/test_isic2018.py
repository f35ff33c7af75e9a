"""ISIC 2018 from tiny files of the real layout (JPEG inputs, PNG masks, CSVs), built here, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradprom.datasets import get_dataset
from gradprom.errors import GradpromError
from tests.fixtures.decoding import record_decodes
from tests.fixtures.isic2018 import make_task1, make_task3


def check_pairing(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Each image pixel inside the frame decodes to its mask label (JPEG: ±tolerance); padding is 0 in both."""
    red = images[:, 0] * 255
    inside = red > 20
    assert torch.equal((red > 130).long()[inside], masks[inside])
    assert (masks[~inside] == 0).all()


def decode(split) -> tuple[list[int], list[int]]:
    """(class, index) of each flat Task 3 image, read back from its centre pixel."""
    centre = (split.images[:, :, 16, 16] * 255).round()
    return ((centre[:, 0] - 20) / 30).round().long().tolist(), ((centre[:, 1] - 5) / 10).round().long().tolist()


def test_segmentation_carved_counts_labels_pairing(tmp_path: Path) -> None:
    make_task1(tmp_path / "isic2018", "Training", 10, 0, np.random.default_rng(0))
    data = get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 1, 1)  # 10% / 10% carved from training
    assert data.num_classes == 2 and data.channels == 3 and data.class_names == ["background", "lesion"]
    assert data.train.images.shape[1:] == (3, 32, 32) and data.train.targets.dtype == torch.int64
    assert set(data.train.targets.unique().tolist()) == {0, 1}  # 255 → 1
    assert (data.train.images[:, 0] == 0).float().mean() > 0.05  # portrait/landscape images were padded
    inside = data.train.images[:, 0] > 0.1
    assert (data.train.images[:, 1][inside] * 255 - 90).abs().max() < 4  # RGB kept, not greyscale
    for split in (data.train, data.val, data.test):
        check_pairing(split.images, split.targets)
    again = get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path))
    assert torch.equal(again.val.images, data.val.images)  # the carve is seeded
    other = get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path), seed=1)
    assert not torch.equal(other.val.images, data.val.images)  # another seed, another carve, same images in all
    assert torch.allclose(torch.cat([other.train.images, other.val.images, other.test.images]).sum(0),
                          torch.cat([data.train.images, data.val.images, data.test.images]).sum(0), atol=1e-4)


def test_segmentation_official_validation_and_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "isic2018"
    make_task1(folder, "Training", 6, 0, rng)
    make_task1(folder, "Validation", 2, 100, rng)
    make_task1(folder, "Test", 3, 200, rng)
    monkeypatch.setenv("GRADPROM_DATA", str(folder))  # the dataset folder itself works as the root
    data = get_dataset("isic2018", task="segmentation", image_size=32)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 3)
    for split in (data.train, data.val, data.test):
        check_pairing(split.images, split.targets)
    (folder / "ISIC2018_Task1_Test_GroundTruth" / "LICENSE.txt").unlink()
    for mask in (folder / "ISIC2018_Task1_Test_GroundTruth").iterdir():
        mask.unlink()
    (folder / "ISIC2018_Task1_Test_GroundTruth").rmdir()  # test inputs without ground truth: carve test instead
    data = get_dataset("isic2018", task="segmentation", image_size=32)
    assert (len(data.train), len(data.val), len(data.test)) == (5, 2, 1)


def test_classification_one_hot_classes_and_carve(tmp_path: Path) -> None:
    classes = make_task3(tmp_path / "isic2018", count=20)
    data = get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (16, 2, 2)
    assert data.num_classes == 7 and data.channels == 3
    assert data.class_names == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    seen = []
    for split in (data.train, data.val, data.test):
        decoded, index = decode(split)
        assert split.targets.tolist() == decoded == [classes[i] for i in index]  # one-hot column → class, paired
        seen += index
    assert sorted(seen) == list(range(20))


def test_lesion_groupings_keep_a_lesion_in_one_split(tmp_path: Path) -> None:
    lesions = [k // 3 for k in range(24)]  # 8 lesions of 3 images each
    make_task3(tmp_path / "isic2018", count=24, lesions=lesions)
    for seed in range(4):
        data = get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path), seed=seed)
        assert (len(data.train), len(data.val), len(data.test)) == (18, 3, 3)  # one lesion each to val and test
        owner = {}
        for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
            for i in decode(split)[1]:
                assert owner.setdefault(lesions[i], name) == name
        assert len(owner) == 8


def test_caps_are_seeded_and_decode_only_survivors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_task3(tmp_path / "isic2018", count=20)
    a = get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path), n_train=5, seed=3)
    b = get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path), n_train=5, seed=3)
    c = get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path), n_train=5, seed=4)
    assert len(a.train) == 5 and torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.images, c.train.images)
    read = record_decodes(monkeypatch)
    get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path), n_train=2, n_val=1,
                n_test=1)
    assert len(read) == 4


def test_missing_truncated_and_mismatched_files(tmp_path: Path) -> None:
    with pytest.raises(GradpromError, match=r"not found: looked in .*isic2018.*ISIC2018_Task1-2_Training_Input"
                                            r".*challenge\.isic-archive\.com"):
        get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path))
    folder = tmp_path / "isic2018"
    names = make_task1(folder, "Training", 10, 0, np.random.default_rng(2))
    image = folder / "ISIC2018_Task1-2_Training_Input" / f"{names[3]}.jpg"
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 2])
    with pytest.raises(GradpromError, match=f"{names[3]}.jpg: unreadable"):
        get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path))
    image.write_bytes(good)
    mask = folder / "ISIC2018_Task1_Training_GroundTruth" / f"{names[3]}_segmentation.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mask)
    with pytest.raises(GradpromError, match=f"{names[3]}_segmentation.png: mask is 8×8 but its image is 32×16"):
        get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path))
    Image.fromarray(np.full((16, 32), 128, np.uint8)).save(mask)
    with pytest.raises(GradpromError, match=f"{names[3]}_segmentation.png: mask values must be 0 .* or 255"):
        get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path))
    mask.unlink()
    with pytest.raises(GradpromError, match=f"{names[3]}_segmentation.png is missing"):
        get_dataset("isic2018", task="segmentation", image_size=32, data_root=str(tmp_path))


def test_bad_csv_rows(tmp_path: Path) -> None:
    folder = tmp_path / "isic2018"
    with pytest.raises(GradpromError, match="ISIC2018_Task3_Training_Input.*challenge"):
        get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path))
    make_task3(folder, count=10)
    csv = folder / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines[:3], "ISIC_0000002,1.0,1.0,0.0,0.0,0.0,0.0,0.0", *lines[4:]]) + "\n")
    with pytest.raises(GradpromError, match=r"GroundTruth\.csv, line 4 \(ISIC_0000002\): class columns must be one"):
        get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path))
    csv.write_text("\n".join([*lines, "ISIC_9999999,0.0,1.0,0.0,0.0,0.0,0.0,0.0"]) + "\n")
    with pytest.raises(GradpromError, match=r"ISIC2018_Task3_Training_Input/ISIC_9999999\.jpg is missing"):
        get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path))
    csv.write_text("image,MEL,NV\n")
    with pytest.raises(GradpromError, match="header lacks column.*BCC"):
        get_dataset("isic2018", task="classification", image_size=32, data_root=str(tmp_path))
