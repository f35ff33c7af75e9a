"""COVID-CT from tiny PNG/JPEG files in the real layout, built here, nothing downloaded."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gradprom.datasets import files, get_dataset
from gradprom.errors import GradpromError
from tests.fixtures.covid_ct import GREY, IMAGES, make_covid_ct
from tests.fixtures.decoding import record_decodes


def centre_values(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 8, 8] * 255).round().long().tolist()


def test_official_split_counts_labels_dedup_greyscale(tmp_path: Path) -> None:
    make_covid_ct(tmp_path)
    data = get_dataset("covid_ct", task="classification", image_size=16, data_root=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)  # "35%0.jpg" once, not twice
    assert data.class_names == ["covid", "noncovid"] and data.num_classes == 2 and data.channels == 1
    assert data.train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.val.targets.tolist() == [0, 1] and data.test.targets.tolist() == [0, 1]
    assert data.train.images.shape == (6, 1, 16, 16) and data.train.targets.dtype == torch.int64
    # every file (grey or RGB, PNG or JPEG) became its grey level, in split-file order; JPEG is lossy
    expected = [GREY[n] for n, (_, s, _, _) in sorted(IMAGES.items(), key=lambda kv: kv[1][0]) if s == "train"]
    assert np.allclose(centre_values(data.train.images), expected, atol=3)
    assert np.allclose(centre_values(data.test.images), [GREY["c test%0.png"], GREY["n test%3.jpg"]], atol=3)
    # 24×16 padded to 24×24 (4 zero rows top and bottom), then resized: the top row is padding
    assert (data.train.images[:, 0, 0] == 0).all() and (data.train.images[:, 0, 8] > 0).all()


def test_without_data_split_carves_per_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_covid_ct(tmp_path, official=False)
    monkeypatch.setenv("GRADPROM_DATA", str(tmp_path / "covid_ct"))  # the dataset folder itself works too
    a = get_dataset("covid_ct", task="classification", image_size=16, seed=1)
    b = get_dataset("covid_ct", task="classification", image_size=16, seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (6, 2, 2)  # 5 per class: 3/1/1 each
    assert a.train.targets.tolist() == [0, 0, 0, 1, 1, 1] and a.val.targets.tolist() == [0, 1]
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.images, b.train.images)
    vals = {tuple(centre_values(get_dataset("covid_ct", task="classification", image_size=16, seed=s).val.images))
            for s in range(4)}
    assert len(vals) > 1  # the seed changes the carve
    seen = sorted(v for split in (a.train, a.val, a.test) for v in centre_values(split.images))
    assert np.allclose(seen, sorted(GREY.values()), atol=3)  # each image in exactly one split


def test_caps_are_seeded_and_only_kept_samples_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_covid_ct(tmp_path)
    opts = {"task": "classification", "image_size": 16, "data_root": str(tmp_path), "n_train": 3, "n_val": 1}
    a, b = get_dataset("covid_ct", seed=3, **opts), get_dataset("covid_ct", seed=3, **opts)
    assert (len(a.train), len(a.val), len(a.test)) == (3, 1, 2)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.targets, b.train.targets)
    picks = {tuple(centre_values(get_dataset("covid_ct", seed=s, **opts).train.images)) for s in range(6)}
    assert len(picks) > 1  # the seed changes which samples a cap keeps
    decoded = record_decodes(monkeypatch)
    get_dataset("covid_ct", seed=0, **opts)
    assert len(decoded) == 3 + 1 + 2


def test_missing_listed_file_and_truncated_image(tmp_path: Path) -> None:
    base = make_covid_ct(tmp_path)
    listing = base / "Data-split" / "COVID" / "valCT_COVID.txt"
    listing.write_text(listing.read_text() + "ghost scan%4.png\n")
    with pytest.raises(GradpromError, match=re.escape("CT_COVID/ghost scan%4.png is missing")):
        get_dataset("covid_ct", task="classification", image_size=16, data_root=str(tmp_path))
    listing.write_text("c val%0.png\n")
    bad = base / "Images-processed" / "CT_NonCOVID" / "non covid 7%1.jpg"
    bad.write_bytes(bad.read_bytes()[:120])
    with pytest.raises(GradpromError, match=re.escape("non covid 7%1.jpg: unreadable image")):
        get_dataset("covid_ct", task="classification", image_size=16, data_root=str(tmp_path))


def test_missing_dataset_and_zipped_folder(tmp_path: Path) -> None:
    with pytest.raises(GradpromError, match=r"not found: looked in .*covid_ct.*Images-processed.*UCSD-AI4H/COVID-CT"):
        get_dataset("covid_ct", task="classification", image_size=16, data_root=str(tmp_path))
    base = make_covid_ct(tmp_path)
    shutil.rmtree(base / "Images-processed" / "CT_NonCOVID")
    (base / "Images-processed" / "CT_NonCOVID.zip").write_bytes(b"PK")
    with pytest.raises(GradpromError, match=r"CT_NonCOVID is missing.*unzip .*CT_NonCOVID.zip"):
        get_dataset("covid_ct", task="classification", image_size=16, data_root=str(tmp_path))
    with pytest.raises(GradpromError, match="does not support task 'segmentation'"):
        get_dataset("covid_ct", task="segmentation", image_size=16, data_root=str(tmp_path))


def test_split_lists_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Windows tools start text files with a BOM; the shared reader drops it, so the first name still matches."""
    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeffa.png\r\nb c.png \n\na.png\n".encode())
    assert files.read_text_lines(listing) == ["a.png", "b c.png"]
