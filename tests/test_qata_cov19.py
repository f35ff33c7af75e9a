"""QaTa-COV19 from tiny PNGs in the Kaggle layout (folder names with spaces), built here, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradprom.datasets import get_dataset
from gradprom.errors import GradpromError
from tests.fixtures.decoding import record_decodes
from tests.fixtures.qata_cov19 import CONTROL_VALUE, make_qata


def check_pairing(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Inside the frame, 210 ↔ infection (1) and 10 ↔ background (0); padding is 0 in both."""
    values = (images[:, 0] * 255).round()
    inside = values > 0
    assert set(values[inside].unique().tolist()) <= {10.0, 210.0}
    assert torch.equal((values[inside] == 210).long(), masks[inside])
    assert (masks[~inside] == 0).all()


def test_segmentation_counts_labels_pairing(tmp_path: Path) -> None:
    make_qata(tmp_path)
    data = get_dataset("qata_cov19", task="segmentation", image_size=32, data_root=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (9, 1, 3)  # 10% of Train Set carved as val
    assert data.num_classes == 2 and data.channels == 1 and data.class_names == ["background", "infection"]
    assert data.train.images.shape[1:] == (1, 32, 32) and data.train.targets.dtype == torch.int64
    assert set(data.train.targets.unique().tolist()) == {0, 1}
    for split in (data.train, data.val, data.test):
        check_pairing(split.images, split.targets)


def test_folder_being_qata_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = make_qata(tmp_path)
    ref = get_dataset("qata_cov19", task="segmentation", image_size=32, data_root=str(tmp_path))
    for root in (base, base.parent):  # the QaTa-COV19 folder itself, or the folder holding it
        data = get_dataset("qata_cov19", task="segmentation", image_size=32, data_root=str(root))
        assert torch.equal(data.val.images, ref.val.images) and torch.equal(data.test.targets, ref.test.targets)
    monkeypatch.setenv("GRADPROM_DATA", str(tmp_path))
    assert len(get_dataset("qata_cov19", task="segmentation", image_size=32).test) == 3


def test_classification_counts_labels_and_shared_val(tmp_path: Path) -> None:
    make_qata(tmp_path)
    data = get_dataset("qata_cov19", task="classification", image_size=32, data_root=str(tmp_path), seed=1)
    # COVID 9/1/3 (official train/test, 10% val) + control 8/1/1 (10 images carved 80/10/10)
    assert (len(data.train), len(data.val), len(data.test)) == (17, 2, 4)
    assert data.class_names == ["control", "covid"] and data.num_classes == 2
    assert [int((s.targets == 0).sum()) for s in (data.train, data.val, data.test)] == [8, 1, 1]
    for split in (data.train, data.val, data.test):
        values = (split.images[:, 0] * 255).round()
        for image, label in zip(values, split.targets.tolist(), strict=True):
            is_control = set(image[image > 0].unique().tolist()) == {float(CONTROL_VALUE)}
            assert is_control == (label == 0)
    seg = get_dataset("qata_cov19", task="segmentation", image_size=32, data_root=str(tmp_path), seed=1)
    assert torch.equal(seg.val.images, data.val.images[data.val.targets == 1])  # same COVID val image


def test_classification_requires_control_group(tmp_path: Path) -> None:
    make_qata(tmp_path, control=False)
    assert len(get_dataset("qata_cov19", task="segmentation", image_size=32, data_root=str(tmp_path)).test) == 3
    with pytest.raises(GradpromError, match=r"classification needs QaTa-COV19/Control_Group/") as err:
        get_dataset("qata_cov19", task="classification", image_size=32, data_root=str(tmp_path))
    assert "\n" not in str(err.value)


def test_caps_are_seeded_and_only_survivors_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_qata(tmp_path)
    kw = {"task": "segmentation", "image_size": 32, "data_root": str(tmp_path), "n_train": 4, "n_test": 2}
    a, b = get_dataset("qata_cov19", seed=3, **kw), get_dataset("qata_cov19", seed=3, **kw)
    assert (len(a.train), len(a.val), len(a.test)) == (4, 1, 2)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.targets, b.train.targets)
    decoded = record_decodes(monkeypatch, masks=True)
    get_dataset("qata_cov19", seed=3, **kw)
    assert len(decoded) == 2 * (4 + 1 + 2)  # one image + one mask per kept sample, nothing else
    decoded.clear()
    get_dataset("qata_cov19", task="classification", image_size=32, data_root=str(tmp_path), n_train=3, n_val=1,
                n_test=1)
    assert len(decoded) == 5


def test_missing_unpaired_mismatched_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(GradpromError, match=r"not found: looked in .*qata_cov19.*QaTa-COV19-v2.*kaggle"):
        get_dataset("qata_cov19", task="segmentation", image_size=32, data_root=str(tmp_path))
    base = make_qata(tmp_path)
    test_set = base / "QaTa-COV19-v2" / "Test Set"
    image, mask = test_set / "Images" / "covid_11.png", test_set / "Ground-truths" / "mask_covid_11.png"
    original = mask.read_bytes()

    def fails(pattern: str) -> None:
        with pytest.raises(GradpromError, match=pattern) as err:
            get_dataset("qata_cov19", task="segmentation", image_size=32, data_root=str(tmp_path))
        assert "\n" not in str(err.value)

    mask.unlink()
    fails(r"covid_11.png has no mask: expected .*Ground-truths/mask_covid_11.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mask)
    fails(r"mask_covid_11.png: mask is 8×8 but its image is \d+×\d+")
    mask.write_bytes(original)
    values = np.array(Image.open(mask))
    values[values == 255] = 128
    Image.fromarray(values).save(mask)
    fails(r"mask_covid_11.png: mask values must be 0 \(background\) or 255 \(infection\), found \[128\]")
    mask.write_bytes(original)
    image.write_bytes(image.read_bytes()[:60])
    fails(r"covid_11.png: unreadable image")
