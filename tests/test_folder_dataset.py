"""The folder dataset: one's own scans (PNG 8/16-bit, TIFF, NIfTI, DICOM) as laid out on disk, read without a clean
target. Expected pixels come from hand formulas over the values the tests wrote (and from the synthetic images the
scans were made of), never from the reader under test."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradprom.datasets import get_dataset
from gradprom.datasets.scan_files import read_labels, read_scan, reader_of
from gradprom.errors import GradpromError
from gradprom.trainables.checks import check_config
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import train_trial
from tests.fixtures.cli import cli
from tests.fixtures.scans import make_scans, write_dicom
from tests.fixtures.settings import TINY


def test_a_sixteen_bit_png_keeps_levels_eight_bits_would_merge(tmp_path: Path) -> None:
    stored = np.array([[1000, 1001], [1002, 1003]], dtype=np.uint16)  # within one 8-bit level
    Image.fromarray(stored).save(tmp_path / "a.png")
    got = read_scan(tmp_path / "a.png", channels=1)
    np.testing.assert_allclose(got, stored / 65535, rtol=0, atol=1e-9)  # over the type's range
    assert len(np.unique(got)) == 4
    np.testing.assert_allclose(read_scan(tmp_path / "a.png", 1, window="minmax"), [[0, 1 / 3], [2 / 3, 1]],
                               atol=1e-6)  # (v − 1000) / 3
    Image.fromarray(np.array([[0, 51], [102, 255]], dtype=np.uint8)).save(tmp_path / "b.png")
    np.testing.assert_allclose(read_scan(tmp_path / "b.png", channels=1), [[0, 0.2], [0.4, 1]], atol=1e-6)


def test_dicom_rescale_slope_intercept_then_its_window(tmp_path: Path) -> None:
    stored = np.array([[0, 300, 400], [432, 500, 700]], dtype=np.int16)
    write_dicom(tmp_path / "ct.dcm", stored, slope=2.0, intercept=-1024.0, window=(40.0, 400.0))
    hu = stored * 2.0 - 1024.0  # [-1024, -424, -224; -160, -24, 376]
    expected = np.clip((hu - (40 - 200)) / 400, 0, 1)
    np.testing.assert_allclose(read_scan(tmp_path / "ct.dcm", 1), expected, atol=1e-6)
    np.testing.assert_allclose(read_scan(tmp_path / "ct.dcm", 1, window="-100:200"),
                               np.clip((hu + 200) / 200, 0, 1), atol=1e-6)
    np.testing.assert_allclose(read_scan(tmp_path / "ct.dcm", 1, window="minmax"),
                               (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)
    assert read_labels(tmp_path / "ct.dcm").tolist() == stored.tolist()  # a label map is never rescaled
    write_dicom(tmp_path / "inverted", stored, slope=2.0, intercept=-1024.0, window=(40.0, 400.0),
                photometric="MONOCHROME1")  # no extension: known by its DICM preamble
    assert reader_of(tmp_path / "inverted") == "dicom"
    np.testing.assert_allclose(read_scan(tmp_path / "inverted", 1), 1 - expected, atol=1e-6)
    with pytest.raises(GradpromError, match="window must be .* CENTER:WIDTH"):
        read_scan(tmp_path / "ct.dcm", 1, window="40")


def test_float_tiff_and_a_nifti_volume_slice(tmp_path: Path) -> None:
    import nibabel
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.array([[-1.0, 0.0], [1.0, 3.0]], dtype=np.float32))
    with pytest.raises(GradpromError, match=r"a\.tif: pixel values span \[-1, 3\], not \[0, 1\]: give a window"):
        read_scan(tmp_path / "a.tif", 1)
    np.testing.assert_allclose(read_scan(tmp_path / "a.tif", 1, window="minmax"), [[0, 0.25], [0.5, 1]], atol=1e-6)
    tifffile.imwrite(tmp_path / "b.tif", np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32))
    np.testing.assert_allclose(read_scan(tmp_path / "b.tif", 1), [[0, 0.25], [0.5, 1]], atol=1e-7)  # as stored
    volume = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)  # (x, y, z): slice k is volume[..., k]
    nibabel.Nifti1Image(volume, np.eye(4)).to_filename(tmp_path / "v.nii.gz")
    for index, k in ((-1, 1), (0, 0)):
        plane = volume[..., k].T  # rows are y
        np.testing.assert_allclose(read_scan(tmp_path / "v.nii.gz", 1, window="minmax", nifti_slice=index),
                                   (plane - plane.min()) / (plane.max() - plane.min()), atol=1e-6)
    with pytest.raises(GradpromError, match="nifti_slice=5 is past the volume's 3 slices"):
        read_scan(tmp_path / "v.nii.gz", 1, window="minmax", nifti_slice=5)


def test_a_truncated_scan_is_one_line_naming_it(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)  # incompressible: a long IDAT
    Image.fromarray(noise).save(tmp_path / "t.png")
    (tmp_path / "t.png").write_bytes((tmp_path / "t.png").read_bytes()[:200])
    with pytest.raises(GradpromError, match=r"t\.png: unreadable .*truncated or corrupt") as info:
        read_scan(tmp_path / "t.png", 1)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classification folder: 12/4/4 noisy scans (σ = 0.1) in every file kind, clean twins for the test split."""
    return make_scans(tmp_path_factory.mktemp("scans") / "mine", n=(12, 4, 4), twins="test")


def test_scans_are_the_inputs_and_twins_the_clean_images(scans: Path) -> None:
    data = get_dataset("folder", task="classification", image_size=32, data_root=str(scans))
    synthetic = get_dataset("synthetic", task="classification", image_size=32, n_train=12, n_val=4, n_test=4)
    assert data.class_names == sorted(synthetic.class_names) and data.channels == 1
    assert [len(s) for s in (data.train, data.val, data.test)] == [12, 4, 4]
    assert data.train.images.isnan().all() and data.val.images.isnan().all()  # no twin: nothing clean to read
    # a split lists class by class (sorted), each class's files by name (test000…, the synthetic order); the twins
    # are the synthetic images saved as 16-bit PNG
    label = [data.class_names.index(synthetic.class_names[int(y)]) for y in synthetic.test.targets]
    order = sorted(range(len(label)), key=lambda i: (label[i], i))
    clean = synthetic.test.images[order]
    torch.testing.assert_close(data.test.images, clean, atol=1 / 65535, rtol=0)
    noise = data.test.observed - clean
    assert 0.07 < float(noise.std()) < 0.13  # the σ = 0.1 the scans were written with, less the clipping
    assert data.test.targets.tolist() == [label[i] for i in order]


def test_classes_missing_from_a_split_and_a_class_without_training_scans(tmp_path: Path) -> None:
    root = make_scans(tmp_path / "mine", n=(12, 4, 4), twins="")
    for folder in (root / "val").iterdir():  # val keeps one class only
        if folder.name != "normal":
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()
    data = get_dataset("folder", task="classification", image_size=32, data_root=str(tmp_path), subfolder="mine")
    assert len(data.class_names) == 3 and set(data.val.targets.tolist()) <= {data.class_names.index("normal")}
    (root / "test" / "rare").mkdir()
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(root / "test" / "rare" / "x.png")
    with pytest.raises(GradpromError, match=r"class 'rare' has no training scans \(only in test\)"):
        get_dataset("folder", task="classification", image_size=32, data_root=str(root))


def test_an_unsplit_folder_is_carved_per_class(tmp_path: Path) -> None:
    root = make_scans(tmp_path / "mine", n=(38, 1, 1), split=False, twins="train,val,test")
    per_class = {c.name: len(list(c.iterdir())) for c in root.iterdir() if c.name != "clean"}
    data = get_dataset("folder", task="classification", image_size=32, data_root=str(root))
    held = sum(max(1, n // 10) for n in per_class.values())  # carve: 10 % (at least one) per class to val, test
    assert (len(data.val), len(data.test), len(data.train)) == (held, held, 40 - 2 * held)
    assert not data.test.images.isnan().any()  # every scan has its twin under clean/<class>/


def test_segmentation_masks_wrong_size_and_labels(tmp_path: Path) -> None:
    root = make_scans(tmp_path / "seg", task="segmentation", n=(6, 2, 2), twins="")
    three = "background,organ,finding"
    data = get_dataset("folder", task="segmentation", image_size=32, data_root=str(root), labels=three)
    synthetic = get_dataset("synthetic", task="segmentation", image_size=32, n_train=6, n_val=2, n_test=2)
    assert torch.equal(data.train.targets, synthetic.train.targets) and data.class_names == three.split(",")
    with pytest.raises(GradpromError, match=r"masks/train000\.png: labels \[2\] past the 2 named"):
        get_dataset("folder", task="segmentation", image_size=32, data_root=str(root))
    Image.fromarray(np.zeros((30, 32), dtype=np.uint8)).save(root / "train" / "masks" / "train001.png")
    with pytest.raises(GradpromError, match=r"train001\.png: mask is 32×30 but its image is 32×32"):
        get_dataset("folder", task="segmentation", image_size=32, data_root=str(root), labels=three)
    kept = get_dataset("folder", task="segmentation", image_size=32, data_root=str(root), labels=three,
                       skip_bad=True)
    assert len(kept.train) == 5 and any("train001.png" in why for why in kept.skipped)
    binary = np.zeros((32, 32), dtype=np.uint8)
    binary[8:16, 8:16] = 255
    for mask in (root / "train" / "masks").iterdir():
        Image.fromarray(binary).save(mask)
    for split in ("val", "test"):
        for mask in (root / split / "masks").iterdir():
            Image.fromarray(binary).save(mask)
    two = get_dataset("folder", task="segmentation", image_size=32, data_root=str(root))
    assert int(two.train.targets.sum()) == 6 * 64  # 0/255 read as 0/1


def test_the_cache_keeps_float_scans_and_twins(scans: Path, tmp_path: Path) -> None:
    first = get_dataset("folder", task="classification", image_size=32, data_root=str(scans),
                        cache_dir=str(tmp_path))
    [entry] = [p for p in (tmp_path / "data").glob("folder-*") if p.is_dir()]
    assert np.load(entry / "train_observed.npy").dtype == np.float32
    again = get_dataset("folder", task="classification", image_size=32, data_root=str(scans),
                        cache_dir=str(tmp_path))
    for a, b in ((first.train, again.train), (first.test, again.test)):
        torch.testing.assert_close(a.images, b.images, equal_nan=True, atol=0, rtol=0)
        assert torch.equal(a.observed, b.observed) and torch.equal(a.targets, b.targets)


SCAN_TRIAL = {**TINY, "dataset": "folder", "batch_size": 4, "n_train": 0, "n_val": 0, "n_test": 0,
              "clean_targets": False, "loss_ip": "neighbor2neighbor", "degradation": "none"}


def test_a_trial_on_scans_measures_psnr_only_where_a_twin_exists(scans: Path) -> None:
    final = train_trial({**SCAN_TRIAL, "data_root": str(scans), "strategy": "gradprom"})
    assert math.isnan(final["psnr"]) and math.isnan(final["acc_ref_clean"])  # val has no twin
    assert 5 < final["test_psnr"] < 60 and math.isfinite(final["loss_image"]) and 0 <= final["test_acc_ref"] <= 1
    assert final["reference_trained_on"] == "observations"
    with pytest.raises(GradpromError, match="holds scans as acquired.* -p clean_targets=false"):
        check_config(TrialConfig.from_dict({**SCAN_TRIAL, "data_root": str(scans), "clean_targets": True,
                                            "loss_ip": "l1"}))
    with pytest.raises(GradpromError, match="holds scans as acquired.* --degradation none"):
        check_config(TrialConfig.from_dict({**SCAN_TRIAL, "data_root": str(scans), "degradation": "gaussian"}))
    as_clean = train_trial({**TINY, "dataset": "folder", "data_root": str(scans), "batch_size": 4, "n_train": 0,
                            "n_val": 0, "n_test": 0, "data_options": '{"scans": false}'})
    assert 5 < as_clean["psnr"] < 60  # the files as clean images, degraded on the fly as for a named dataset


def test_datasets_check_names_every_bad_scan(tmp_path: Path) -> None:
    root = make_scans(tmp_path / "mine", task="segmentation", n=(6, 2, 2), twins="test")
    bad = next((root / "train" / "images").glob("train002.*"))
    bad.write_bytes(bad.read_bytes()[:50])
    run = cli("datasets", "check", "folder", "--data-root", str(root), "--task", "segmentation",
              "-o", "labels=background,organ,finding", cache=str(tmp_path / "cache"))
    assert run.returncode == 2 and f"{bad.name}: unreadable" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    bad.unlink()
    run = cli("datasets", "check", "folder", "--data-root", str(root), "--task", "segmentation",
              "-o", "labels=background,organ,finding", cache=str(tmp_path / "cache"))
    assert run.returncode == 0 and "all 9 samples are good" in run.stdout
