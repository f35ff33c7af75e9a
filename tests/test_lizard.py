"""Lizard from tiny files of the real formats (RGB PNG, .mat labels, info.csv), built here, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat

import gradprom.datasets.lizard  # noqa: F401  (registers "lizard" even before the package imports it)
from gradprom.datasets import get_dataset
from gradprom.datasets.files import cap
from gradprom.errors import GradpromError
from tests.fixtures.lizard import LABELS, H, W, encode, image_index, make_lizard


def check_pairing(images: torch.Tensor, masks: torch.Tensor) -> None:
    values = (images[:, 0] * 255).round()
    assert torch.equal(((values - 10) / 30).round().long(), masks)




def test_patch_counts_labels_pairing_and_folds(tmp_path: Path) -> None:
    make_lizard(tmp_path)
    data = get_dataset("lizard", task="segmentation", image_size=16, data_root=str(tmp_path))
    # 16 px patches of a 64×48 image: 4 × 3 = 12 per image; folds 1 → train (2 images), 2 → val, 3 → test
    assert (len(data.train), len(data.val), len(data.test)) == (24, 12, 12)
    assert data.num_classes == 7 and data.channels == 3 and data.train.images.shape[1:] == (3, 16, 16)
    assert data.class_names[0] == "background" and data.class_names[6] == "connective"
    assert set(data.train.targets.unique().tolist()) == set(range(7))
    assert image_index(data.train.images) == {0, 3} and image_index(data.val.images) == {2}
    assert image_index(data.test.images) == {1}
    for split in (data.train, data.val, data.test):
        assert split.targets.dtype == torch.int64 and 0 <= split.targets.min() and split.targets.max() <= 6
        check_pairing(split.images, split.targets)


def test_classes_come_through_id_not_row_position(tmp_path: Path) -> None:
    folder = make_lizard(tmp_path)
    path = folder / LABELS / "Labels" / "glas_3.mat"  # the only val image
    inst = np.zeros((H, W), np.int32)
    inst[:16, :16], inst[:16, 16:32], inst[16:32, :16] = 1, 2, 3
    # row 0 describes instance 3, row 1 instance 1, row 2 instance 2: by position, instance 1 would be class 6
    savemat(path, {"inst_map": inst, "id": np.array([[3], [1], [2]]), "class": np.array([[6], [2], [4]])})
    expected = np.zeros((H, W), np.int64)
    expected[:16, :16], expected[:16, 16:32], expected[16:32, :16] = 2, 4, 6
    Image.fromarray(encode(expected, 2)).save(folder / "lizard_images2/Lizard_Images2/glas_3.png")
    val = get_dataset("lizard", task="segmentation", image_size=16, data_root=str(tmp_path)).val
    assert val.targets[0].unique().tolist() == [2] and val.targets[1].unique().tolist() == [4]
    assert val.targets[4].unique().tolist() == [6] and val.targets[5].unique().tolist() == [0]
    check_pairing(val.images, val.targets)


def test_patch_size_fold_options_and_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_lizard(tmp_path)
    monkeypatch.setenv("GRADPROM_DATA", str(tmp_path / "lizard"))  # the dataset folder itself works as a root
    big = get_dataset("lizard", task="segmentation", image_size=16, patch_size=24)
    # 24 px patches: 2 × 2 per image (the 16 px right remainder dropped), resized to 16
    assert (len(big.train), len(big.val), len(big.test)) == (8, 4, 4) and big.val.images.shape[1:] == (3, 16, 16)
    assert big.val.targets.min() >= 0 and big.val.targets.max() <= 6
    swapped = get_dataset("lizard", task="segmentation", image_size=16, val_fold=3, test_fold=1)
    assert (len(swapped.train), len(swapped.val), len(swapped.test)) == (12, 12, 24)
    assert image_index(swapped.train.images) == {2} and image_index(swapped.test.images) == {0, 3}
    a = get_dataset("lizard", task="segmentation", image_size=16, n_train=5, n_val=2, seed=4)
    b = get_dataset("lizard", task="segmentation", image_size=16, n_train=5, n_val=2, seed=4)
    assert (len(a.train), len(a.val), len(a.test)) == (5, 2, 12) and torch.equal(a.train.images, b.train.images)
    check_pairing(a.train.images, a.train.targets)
    for bad in ({"val_fold": 3}, {"test_fold": 4}, {"val_fold": 0}):
        with pytest.raises(GradpromError, match="val_fold and test_fold must be two different folds"):
            get_dataset("lizard", task="segmentation", image_size=16, **bad)
    with pytest.raises(GradpromError, match="patch_size must be an integer >= 1"):
        get_dataset("lizard", task="segmentation", image_size=16, patch_size=-8)
    with pytest.raises(GradpromError, match="does not support task 'classification'"):
        get_dataset("lizard", task="classification", image_size=16)


def test_only_surviving_patches_are_decoded(tmp_path: Path) -> None:
    folder = make_lizard(tmp_path)
    (folder / "lizard_images2/Lizard_Images2/pannuke_4.png").write_bytes(
        (folder / "lizard_images2/Lizard_Images2/pannuke_4.png").read_bytes()[:60])  # header intact, data cut
    seed = next(s for s in range(100) if cap(list(range(24)), 1, s)[0] < 12)  # keeps one consep_1 patch
    data = get_dataset("lizard", task="segmentation", image_size=16, data_root=str(tmp_path), n_train=1, seed=seed)
    assert len(data.train) == 1 and image_index(data.train.images) == {0}  # the truncated file was never decoded
    with pytest.raises(GradpromError, match="pannuke_4.png: unreadable image"):
        get_dataset("lizard", task="segmentation", image_size=16, data_root=str(tmp_path))


def test_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(GradpromError, match="not found: looked in .*lizard.*warwick"):
        get_dataset("lizard", task="segmentation", image_size=16, data_root=str(tmp_path))
    folder = make_lizard(tmp_path)
    labels = folder / LABELS / "Labels"
    mat = {k: v for k, v in loadmat(labels / "crag_2.mat").items() if not k.startswith("__")}

    def fails(match: str) -> None:
        with pytest.raises(GradpromError, match=match):
            get_dataset("lizard", task="segmentation", image_size=16, data_root=str(tmp_path))

    (labels / "crag_2.mat").unlink()
    fails("crag_2.mat is missing")
    savemat(labels / "crag_2.mat", {**mat, "inst_map": mat["inst_map"][:40]})
    fails("crag_2.mat: inst_map is 64×40 but its image is 64×48")
    savemat(labels / "crag_2.mat", {**mat, "class": np.where(mat["class"] == 6, 7, mat["class"])})
    fails("crag_2.mat: class values must be 1..6, found 1..7")
    keep = mat["id"][:, 0] != 5
    savemat(labels / "crag_2.mat", {**mat, "id": mat["id"][keep], "class": mat["class"][keep]})
    fails("crag_2.mat: instance 5 of inst_map has no row in id")
    savemat(labels / "crag_2.mat", mat)
    png = folder / "lizard_images1/Lizard_Images1/crag_2.png"
    png.write_bytes(png.read_bytes()[:200])
    fails("crag_2.png: unreadable image")
    png.unlink()
    fails("crag_2.png .*is in neither")
    info = folder / LABELS / "info.csv"
    info.write_text("Filename,Source,Split\nconsep_1,consep,5\n")
    fails("info.csv: line 2 has Split '5'")
