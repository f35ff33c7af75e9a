"""The preprocessing cache and bad-file handling shared by every dataset read from disk (`datasets/disk.py`).

Fixtures are the tiny real-format folders of the loaders' own tests; decodes are counted by patching the
function each loader reads pixels through.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gradprom.datasets.camus as camus
import gradprom.datasets.files as files
import gradprom.datasets.lizard as lizard
from gradprom.datasets import TaskData, get_dataset
from gradprom.datasets.files import carve
from gradprom.errors import GradpromError
from tests.fixtures.camus import make_2019, make_2023
from tests.fixtures.decoding import record_decodes
from tests.fixtures.isic2018 import make_task1, make_task3, write_jpeg
from tests.fixtures.lizard import image_index, make_lizard

SPLITS = ("train", "val", "test")
SIZE = 32
TRAIN = "ISIC2018_Task1-2_Training_Input"
TRUTH = "ISIC2018_Task1_Training_GroundTruth"


def entries(cache: Path) -> list[str]:
    """Names of the complete cache entries (folders, not `.tmp` leftovers or `.lock` files)."""
    data = cache / "data"
    if not data.is_dir():
        return []
    return sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.endswith(".tmp"))


def assert_same(a: TaskData, b: TaskData) -> None:
    """The very same tensors (values, dtype, shape) in all three splits, and the same skipped list."""
    for split in SPLITS:
        x, y = getattr(a, split), getattr(b, split)
        assert x.images.dtype == y.images.dtype == torch.float32
        assert x.targets.dtype == y.targets.dtype == torch.int64
        assert torch.equal(x.images, y.images), split
        assert torch.equal(x.targets, y.targets), split
    assert a.skipped == b.skipped


def all_images(data: TaskData) -> torch.Tensor:
    return torch.cat([getattr(data, s).images for s in SPLITS])


def sizes(data: TaskData) -> tuple[int, int, int]:
    return len(data.train), len(data.val), len(data.test)


def bump(path: Path) -> None:
    """Move the file's mtime a second on, so a rewrite within one mtime tick still shows."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def isic_seg(root: Path, cache: Path | str = "", **options) -> TaskData:
    return get_dataset("isic2018", task="segmentation", image_size=SIZE, seed=0, data_root=str(root),
                       cache_dir=str(cache), **options)


@pytest.fixture()
def isic(tmp_path: Path) -> tuple[Path, list[str]]:
    """(data root, training names that carve puts in train with seed 0): 10 Task 1 images → 8 / 1 / 1."""
    names = make_task1(tmp_path / "data" / "isic2018", "Training", 10, 0, np.random.default_rng(0))
    return tmp_path / "data", carve(sorted(names), 0)[0]


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every image file decoded through files.read_image (ISIC, QaTa, COVID-CT read pixels this way)."""
    return record_decodes(monkeypatch)


# --- 1. reuse ---------------------------------------------------------------------------------------------------


def test_cache_is_reused_and_equals_uncached(isic, reads, tmp_path: Path) -> None:
    root, _ = isic
    cache = tmp_path / "cache"
    first = isic_seg(root, cache)
    assert len(reads) == 10 and sizes(first) == (8, 1, 1)  # every sample decoded once
    assert len(entries(cache)) == 1
    meta = json.loads((cache / "data" / entries(cache)[0] / "meta.json").read_text())
    assert meta["counts"] == [8, 1, 1] and meta["skipped"] == []
    for split in SPLITS:
        assert np.load(cache / "data" / entries(cache)[0] / f"{split}_images.npy").dtype == np.uint8
    reads.clear()
    second = isic_seg(root, cache)
    assert reads == []  # nothing decoded: all from the cache
    assert_same(first, second)
    plain = isic_seg(root, "")
    assert len(reads) == 10
    assert_same(first, plain)
    assert first.skipped == [] and first.fingerprint == second.fingerprint == plain.fingerprint != ""
    assert entries(cache) == entries(cache)[:1]  # still one entry


def test_cache_is_reused_for_classification_targets(tmp_path: Path, reads) -> None:
    make_task3(tmp_path / "isic2018", count=20)
    cache = tmp_path / "cache"

    def load(cache_dir: str) -> TaskData:
        return get_dataset("isic2018", task="classification", image_size=SIZE, data_root=str(tmp_path),
                           cache_dir=cache_dir)

    first = load(str(cache))
    assert len(reads) == 20
    reads.clear()
    again = load(str(cache))
    assert reads == []
    assert_same(first, again)
    assert_same(first, load(""))
    assert first.train.targets.ndim == 1 and set(first.train.targets.tolist()) <= set(range(7))


def test_cache_is_reused_for_camus_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_2023(tmp_path)  # 6 patients × 2 views × 2 phases = 24 samples, image + mask each
    seen: list[Path] = []
    original = camus.read_frame  # camus decodes through its own read_frame
    monkeypatch.setattr(camus, "read_frame", lambda path: seen.append(path) or original(path))
    cache = tmp_path / "cache"

    def load(cache_dir: str) -> TaskData:
        return get_dataset("camus", task="segmentation", image_size=SIZE, data_root=str(tmp_path),
                           cache_dir=cache_dir)

    first = load(str(cache))
    assert len(seen) == 48 and sizes(first) == (16, 4, 4)
    seen.clear()
    again = load(str(cache))
    assert seen == []
    assert_same(first, again)
    assert_same(first, load(""))
    assert len(entries(cache)) == 1


# --- 2. keyed by options ----------------------------------------------------------------------------------------


def test_cache_is_keyed_by_size_seed_caps_and_task(tmp_path: Path, reads) -> None:
    folder = tmp_path / "isic2018"
    make_task1(folder, "Training", 10, 0, np.random.default_rng(0))
    make_task3(folder, count=10)
    cache = tmp_path / "cache"
    variants = [
        {"task": "segmentation"},
        {"task": "segmentation", "image_size": 16},
        {"task": "segmentation", "seed": 1},
        {"task": "segmentation", "n_train": 4},
        {"task": "classification"},
    ]
    results = []
    for k, variant in enumerate(variants, start=1):
        args = {"image_size": SIZE, "seed": 0, **variant}
        results.append(get_dataset("isic2018", data_root=str(tmp_path), cache_dir=str(cache), **args))
        assert len(entries(cache)) == k, variant
    assert results[1].train.images.shape[-2:] == (16, 16) and results[0].train.images.shape[-2:] == (SIZE, SIZE)
    assert len(results[3].train) == 4 and len(results[0].train) == 8
    assert not torch.equal(results[2].val.images, results[0].val.images)  # another seed, another carve
    assert results[4].train.targets.ndim == 1 and results[0].train.targets.ndim == 3
    reads.clear()
    for variant, before in zip(variants, results, strict=True):  # entries do not overwrite each other
        args = {"image_size": SIZE, "seed": 0, **variant}
        assert_same(before, get_dataset("isic2018", data_root=str(tmp_path), cache_dir=str(cache), **args))
    assert reads == [] and len(entries(cache)) == len(variants)


# --- 3. invalidation --------------------------------------------------------------------------------------------


def test_rewritten_image_rebuilds_the_entry_in_place(isic, reads, tmp_path: Path) -> None:
    root, train = isic
    cache = tmp_path / "cache"
    first = isic_seg(root, cache)
    (entry,) = entries(cache)
    image = root / "isic2018" / TRAIN / f"{train[0]}.jpg"
    with Image.open(image) as img:
        h, w = img.height, img.width
    write_jpeg(image, np.full((h, w), 130), green=200)  # same size of picture, other pixels
    bump(image)
    reads.clear()
    second = isic_seg(root, cache)
    assert len(reads) == 10  # the entry was rebuilt
    assert entries(cache) == [entry]  # in place: same folder, no second entry
    assert not torch.equal(second.train.images, first.train.images)
    assert torch.equal(second.val.images, first.val.images) and torch.equal(second.test.images, first.test.images)
    assert_same(second, isic_seg(root, ""))  # the new pixels, as an uncached load sees them
    greens = (second.train.images[:, 1] * 255).round()
    assert int((greens > 150).flatten(1).any(1).sum()) == 1  # exactly one train image now has green 200
    reads.clear()
    assert_same(second, isic_seg(root, cache))
    assert reads == []


def test_deleted_file_is_not_served_from_the_cache(isic, reads, tmp_path: Path) -> None:
    root, train = isic
    cache = tmp_path / "cache"
    isic_seg(root, cache)
    mask = root / "isic2018" / TRUTH / f"{train[2]}_segmentation.png"
    mask.unlink()
    with pytest.raises(GradpromError, match=f"{train[2]}_segmentation.png is missing"):
        isic_seg(root, cache)
    data = isic_seg(root, cache, skip_bad=True)
    assert sizes(data) == (7, 1, 1) and len(data.skipped) == 1 and str(mask) in data.skipped[0]


def test_deleted_image_changes_the_listing(isic, reads, tmp_path: Path) -> None:
    root, train = isic
    cache = tmp_path / "cache"
    isic_seg(root, cache)
    (root / "isic2018" / TRAIN / f"{train[1]}.jpg").unlink()  # no longer listed at all
    reads.clear()
    data = isic_seg(root, cache)
    assert len(reads) == 9 and sum(sizes(data)) == 9 and len(entries(cache)) == 1
    assert_same(data, isic_seg(root, ""))


def test_added_image_invalidates_the_entry(isic, reads, tmp_path: Path) -> None:
    root, train = isic
    cache = tmp_path / "cache"
    first = isic_seg(root, cache)
    folder = root / "isic2018"
    shutil.copyfile(folder / TRAIN / f"{train[0]}.jpg", folder / TRAIN / "ISIC_0000100.jpg")
    shutil.copyfile(folder / TRUTH / f"{train[0]}_segmentation.png", folder / TRUTH / "ISIC_0000100_segmentation.png")
    reads.clear()
    data = isic_seg(root, cache)
    assert len(reads) == 11 and sum(sizes(data)) == 11 and sum(sizes(first)) == 10
    assert folder / TRAIN / "ISIC_0000100.jpg" in reads
    assert len(entries(cache)) == 1
    assert data.fingerprint != first.fingerprint
    assert_same(data, isic_seg(root, ""))


# --- 4. damaged entries -----------------------------------------------------------------------------------------


def _truncate_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "images-npy-half": ("train_images.npy", _truncate_half),
    "targets-npy-half": ("val_targets.npy", _truncate_half),
    "npy-header-cut": ("test_images.npy", lambda p: p.write_bytes(p.read_bytes()[:40])),
    "npy-deleted": ("train_targets.npy", Path.unlink),
    "meta-garbage": ("meta.json", lambda p: p.write_text("{this is not json")),
    "meta-binary": ("meta.json", lambda p: p.write_bytes(b"\xff\xfe\x00garbage")),
    "meta-empty": ("meta.json", lambda p: p.write_text("")),
    # an empty .npy makes np.load raise EOFError; still a damaged entry, rebuilt
    "npy-empty": ("train_images.npy", lambda p: p.write_bytes(b"")),
    # valid JSON that is not an object is not our meta: rebuilt
    "meta-not-object": ("meta.json", lambda p: p.write_text("null")),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_rebuilt(isic, reads, tmp_path: Path, damage: str) -> None:
    root, _ = isic
    cache = tmp_path / "cache"
    isic_seg(root, cache)
    (entry,) = entries(cache)
    name, spoil = DAMAGE[damage]
    spoil(cache / "data" / entry / name)
    reads.clear()
    data = isic_seg(root, cache)  # not fatal: decoded again
    assert len(reads) == 10
    assert entries(cache) == [entry]
    assert_same(data, isic_seg(root, ""))
    reads.clear()
    assert_same(data, isic_seg(root, cache))  # and the repaired entry is used again
    assert reads == []


# --- 5. bad files -----------------------------------------------------------------------------------------------


def test_skip_bad_truncated_jpeg_is_left_out_and_cached(isic, reads, tmp_path: Path) -> None:
    root, train = isic
    cache = tmp_path / "cache"
    image = root / "isic2018" / TRAIN / f"{train[3]}.jpg"
    _truncate_half(image)
    with pytest.raises(GradpromError) as info:
        isic_seg(root, cache)
    assert str(image) in str(info.value) and "unreadable image" in str(info.value)
    assert entries(cache) == []  # a failed build leaves no entry
    reads.clear()
    data = isic_seg(root, cache, skip_bad=True)
    assert len(reads) == 10  # the bad file was tried, once
    assert sizes(data) == (7, 1, 1)
    assert len(data.skipped) == 1 and "\n" not in data.skipped[0]
    assert str(image) in data.skipped[0] and "unreadable image" in data.skipped[0]
    reads.clear()
    again = isic_seg(root, cache, skip_bad=True)
    assert reads == []  # from the cache, with the skipped list kept
    assert again.skipped == data.skipped
    assert_same(data, again)
    assert_same(data, isic_seg(root, "", skip_bad=True))


def test_skip_bad_lizard_mat_drops_the_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_lizard(tmp_path)  # image_size 32 on 64×48 images: 2 patches each; train = consep_1 + pannuke_4
    cache = tmp_path / "cache"
    mat = folder / "lizard_labels/Lizard_Labels/Labels/consep_1.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file, garbage" + bytes(range(256)))

    def load(cache_dir: Path | str, **options) -> TaskData:
        return get_dataset("lizard", task="segmentation", image_size=SIZE, data_root=str(tmp_path),
                           cache_dir=str(cache_dir), **options)

    with pytest.raises(GradpromError, match="consep_1.mat: unreadable label file"):
        load(cache)
    data = load(cache, skip_bad=True)
    assert sizes(data) == (2, 2, 2)  # both consep_1 patches left out
    assert image_index(data.train.images) == {3}  # only pannuke_4 remains in train
    assert len(data.skipped) == 1 and str(mat) in data.skipped[0] and "\n" not in data.skipped[0]
    calls: list[Path] = []
    original = lizard.read_pair  # lizard decodes whole images through its own read_pair
    monkeypatch.setattr(lizard, "read_pair", lambda image, label: calls.append(image) or original(image, label))
    again = load(cache, skip_bad=True)
    assert calls == []  # from the cache
    assert again.skipped == data.skipped
    assert_same(data, again)
    assert_same(data, load("", skip_bad=True))
    assert len(calls) == 8  # uncached: read_pair asked once per listed patch, the bad ones included


# --- 6. fingerprint ---------------------------------------------------------------------------------------------


def test_fingerprint_follows_the_source_files(isic, reads, tmp_path: Path) -> None:
    root, train = isic
    cache = tmp_path / "cache"
    first = isic_seg(root, cache)
    assert len(first.fingerprint) == 20
    assert isic_seg(root, cache).fingerprint == first.fingerprint
    assert isic_seg(root, "").fingerprint == first.fingerprint
    licence = root / "isic2018" / TRAIN / "LICENSE.txt"  # not a sample's file: neither key nor fingerprint
    licence.write_text("changed\n")
    bump(licence)
    reads.clear()
    assert isic_seg(root, cache).fingerprint == first.fingerprint
    assert reads == []
    mask = root / "isic2018" / TRUTH / f"{train[0]}_segmentation.png"
    mask.write_bytes(mask.read_bytes())  # same bytes, new stamp: a changed file
    bump(mask)
    changed = isic_seg(root, cache)
    assert changed.fingerprint != first.fingerprint
    assert isic_seg(root, "").fingerprint == changed.fingerprint == isic_seg(root, cache).fingerprint


# --- 7. two processes -------------------------------------------------------------------------------------------


def _load_in_child(root: str, cache: str, out: str, barrier) -> None:
    """Load ISIC Task 1 with `cache` after the other process is ready; save the tensors and the decode count."""
    import time

    seen = []
    original = files.read_image

    def slow_read(path: Path, channels: int) -> np.ndarray:
        seen.append(path)
        time.sleep(0.02)  # a build long enough for the other process to reach the lock meanwhile
        return original(path, channels)

    files.read_image = slow_read
    barrier.wait(timeout=60)
    data = isic_seg(Path(root), cache)
    torch.save({"reads": len(seen), **{s: (getattr(data, s).images, getattr(data, s).targets) for s in SPLITS}},
               out)


def test_two_processes_build_one_entry(isic, tmp_path: Path) -> None:
    root, _ = isic
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    outs = [tmp_path / f"child{k}.pt" for k in range(2)]
    procs = [ctx.Process(target=_load_in_child, args=(str(root), str(cache), str(out), barrier)) for out in outs]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    a, b = (torch.load(out) for out in outs)
    assert a["reads"] + b["reads"] == 10  # one process built the entry, the other waited and read it
    assert sorted([a["reads"], b["reads"]]) == [0, 10]
    for split in SPLITS:
        assert torch.equal(a[split][0], b[split][0]) and torch.equal(a[split][1], b[split][1])
    assert len(entries(cache)) == 1
    assert not any(p.name.endswith(".tmp") for p in (cache / "data").iterdir())
    assert torch.equal(a["train"][0], isic_seg(root, "").train.images)


# --- the files a sample reads are all stamped ---------------------------------------------------------------------


def test_camus_2019_raw_data_change_invalidates(tmp_path: Path) -> None:
    # a MetaImage's pixels live in its .raw file: rewriting it (same size, new pixels) must rebuild the entry
    make_2019(tmp_path, patients=10)
    cache = tmp_path / "cache"

    def load(cache_dir: Path | str) -> TaskData:
        return get_dataset("camus", task="segmentation", image_size=SIZE, data_root=str(tmp_path),
                           cache_dir=str(cache_dir))

    first = load(cache)
    raw = tmp_path / "camus" / "training" / "patient0001" / "patient0001_2CH_ED.raw"
    raw.write_bytes(bytes(255 - b for b in raw.read_bytes()))  # same size, inverted pixels
    bump(raw)
    fresh = load("")
    assert not torch.equal(all_images(fresh), all_images(first))
    assert_same(load(cache), fresh)


# --- every loader goes through the same cache ---------------------------------------------------------------------


def _fixture(name: str, root: Path) -> tuple[str, Path]:
    """(task, one source file) of a fresh tiny fixture of dataset `name` under root."""
    from tests.fixtures.covid_ct import make_covid_ct
    from tests.fixtures.qata_cov19 import make_qata

    if name == "camus":
        make_2023(root)
        return "segmentation", next((root / "camus" / "database_nifti").rglob("*_gt.nii.gz"))
    if name == "isic2018":
        make_task3(root / "isic2018", count=20)
        return "classification", next((root / "isic2018" / "ISIC2018_Task3_Training_Input").glob("*.jpg"))
    if name == "covid_ct":
        folder = make_covid_ct(root)
        return "classification", next((folder / "Images-processed").rglob("*.png"))
    if name == "lizard":
        return "segmentation", next((make_lizard(root) / "lizard_labels").rglob("*.mat"))
    make_qata(root)
    return "segmentation", next((root / "qata_cov19").rglob("mask_covid_*.png"))


@pytest.mark.parametrize("name", ["camus", "isic2018", "covid_ct", "lizard", "qata_cov19"])
def test_every_loader_reuses_and_invalidates_the_cache(name: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import gradprom.datasets.disk as disk

    task, source = _fixture(name, tmp_path / "data")
    builds = []
    real = disk.decode_groups
    monkeypatch.setattr(disk, "decode_groups", lambda *a, **k: builds.append(1) or real(*a, **k))

    def load() -> TaskData:
        return get_dataset(name, task=task, image_size=SIZE, data_root=str(tmp_path / "data"),
                           cache_dir=str(tmp_path / "cache"))

    first = load()
    assert len(builds) == 1 and len(entries(tmp_path / "cache")) == 1
    assert_same(load(), first)
    assert len(builds) == 1  # served from the cache
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a newer copy of the same file
    assert_same(load(), first)
    assert len(builds) == 2 and len(entries(tmp_path / "cache")) == 1  # rebuilt in place
