"""A folder of one's own scans as a dataset, read as laid out on disk.

`--dataset folder --data-root ROOT [--data-option subfolder=NAME]` reads ROOT/NAME (or ROOT itself):

    classification                      segmentation
    NAME/train/CLASS/*                  NAME/train/images/*  NAME/train/masks/*   (a mask per image, same stem)
    NAME/val/CLASS/*   (optional)       NAME/val/images/* …                       (optional)
    NAME/test/CLASS/*  (optional)       NAME/test/images/* …                      (optional)
    or NAME/CLASS/* (no split)          or NAME/images/* + NAME/masks/* (no split)
    NAME/clean/<same path as a scan>    optional clean twins (a phantom, a high-dose acquisition), same stem

A missing `val/` or `test/` is carved from the training scans, seeded, 10 % each (per class for classification).
Classes are the class folders' names, sorted; a class needs training scans. Files: PNG, JPEG, TIFF, NIfTI, DICOM
(`scan_files`). Segmentation masks hold labels 0…K−1 (or 0/255 for two classes) named by `labels`.

By default the files are scans as acquired (`scans=true`): they are the trial's inputs (`Split.observed`), trained
on with `clean_targets=false` and a self-supervised `loss_ip`; their clean twins, where `clean/` has them, are the
images PSNR/SSIM are measured against (NaN where none exists). With `scans=false` the files are clean images that a
`--degradation` corrupts, as for the named datasets.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradprom.datasets import disk
from gradprom.datasets.base import TaskData, register_dataset
from gradprom.datasets.files import DATA_ENV, carve, check_mask_size, pad_resize
from gradprom.datasets.scan_files import parse_window, read_labels, read_scan, reader_of, stem_of
from gradprom.errors import DataMissing, GradpromError

SPLITS = ("train", "val", "test")
CLEAN = "clean"  # the folder of clean twins (so no class may be named so)
EXPECTED = ("train/CLASS/* or CLASS/* (classification), train/images/ + train/masks/ or images/ + masks/ "
            "(segmentation)")


@dataclass(frozen=True)
class Sample:
    """One scan, what it is read with (its decoding options, so they key the cache), its label or mask and twin."""

    image: Path
    label: int = 0
    mask: Path | None = None
    clean: Path | None = None
    channels: int = 1
    window: str = ""
    nifti_slice: int = -1

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.image, self.mask, self.clean) if p is not None)


def locate(data_root: str) -> Path:
    """The data root (--data-root or $GRADPROM_DATA); one line when none is given or it is not a folder."""
    root = data_root or os.environ.get(DATA_ENV, "")
    if not root:
        raise DataMissing("dataset 'folder' reads your scans from disk: pass --data-root PATH (the folder, or the "
                          "folder above it with --data-option subfolder=NAME)")
    return within(Path(root).expanduser(), "")


def within(root: Path, name: str) -> Path:
    """The dataset's folder: ROOT/NAME, or ROOT itself without a name; one line when it is not a folder."""
    folder = root / name if name else root
    if not folder.is_dir():
        raise DataMissing(f"dataset 'folder': {folder} is not a folder; expected {EXPECTED}")
    return folder


def scans_in(folder: Path) -> list[Path]:
    """Every scan file below `folder` (patients' subfolders included), sorted; other files are ignored."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and reader_of(p) is not None)


def split_folders(root: Path) -> dict[str, Path] | None:
    """{split: folder} when the dataset ships its own split (a `train/` folder), else None (carved)."""
    if not (root / "train").is_dir():
        return None
    return {s: root / s for s in SPLITS if (root / s).is_dir()}


def class_names(root: Path) -> list[str]:
    """The classes: class folders of every split (or of the root), sorted; one line when there are none."""
    splits = split_folders(root)
    parents = list(splits.values()) if splits else [root]
    names = sorted({p.name for parent in parents for p in parent.iterdir()
                    if p.is_dir() and not (splits is None and p.name == CLEAN)})
    if not names:
        raise GradpromError(f"dataset 'folder': no class folders in {parents[0]}; expected {EXPECTED}")
    return names


def twin_of(root: Path, scan: Path, index: dict[Path, dict[str, Path]]) -> Path | None:
    """The clean twin of `scan`: the file of the same stem at the same place under `clean/` (any file kind)."""
    folder = root / CLEAN / scan.parent.relative_to(root)
    if folder not in index:
        index[folder] = {stem_of(p): p for p in folder.iterdir() if reader_of(p)} if folder.is_dir() else {}
    return index[folder].get(stem_of(scan))


def classification_groups(root: Path, seed: int, make: Any) -> list[list[Sample]]:
    """[train, val, test] samples from class folders; a missing val/test carved per class from train."""
    names = class_names(root)
    splits = split_folders(root) or {}
    groups: list[list[Sample]] = [[], [], []]
    for label, name in enumerate(names):
        listed = [scans_in(splits[s] / name) if s in splits and (splits[s] / name).is_dir() else [] for s in SPLITS]
        if not splits:
            listed = [scans_in(root / name), [], []]
        if not listed[0]:
            where = [s for s, files in zip(SPLITS, listed, strict=True) if files]
            raise GradpromError(f"dataset 'folder': class '{name}' has no training scans"
                                f"{' (only in ' + ', '.join(where) + ')' if where else ''}; put some in "
                                f"{(splits.get('train', root)) / name}/ or remove the class")
        carved = carve(listed[0], seed + label, val="val" not in splits, test="test" not in splits)
        parts = [carved[0], carved[1] or listed[1], carved[2] or listed[2]]
        for group, part in zip(groups, parts, strict=True):
            group.extend(make(path, label=label) for path in part)
    return groups


def segmentation_groups(root: Path, seed: int, make: Any) -> list[list[Sample]]:
    """[train, val, test] samples from images/ + masks/ folders (matched by stem); a missing val/test carved."""
    splits = split_folders(root) or {"train": root}
    listed = []
    for split in SPLITS:
        folder = splits.get(split)
        if folder is None:
            listed.append([])
            continue
        if not (folder / "images").is_dir():
            raise GradpromError(f"dataset 'folder': {folder / 'images'} is missing; segmentation expects {EXPECTED}")
        masks = {stem_of(p): p for p in scans_in(folder / "masks")} if (folder / "masks").is_dir() else {}
        images = scans_in(folder / "images")
        # a scan without its mask stays listed, so decoding names it as a bad file
        listed.append([make(p, mask=masks.get(stem_of(p), folder / "masks" / p.name)) for p in images])
    if not listed[0]:
        raise GradpromError(f"dataset 'folder': no scans in {splits['train'] / 'images'}; expected {EXPECTED}")
    carved = carve(listed[0], seed, val="val" not in splits, test="test" not in splits)
    return [carved[0], carved[1] or listed[1], carved[2] or listed[2]]


def list_samples(root: Path, task: str, seed: int, image_size: int, scans: bool = True,
                 channels: int = 1, window: str = "", nifti_slice: int = -1,
                 labels: str = "background,foreground") -> list[list[Sample]]:
    """[train, val, test] samples of the folder (nothing decoded); the options are checked here, before any work."""
    if channels not in (1, 3):
        raise GradpromError(f"dataset 'folder': channels must be 1 (greyscale) or 3 (RGB), got {channels}")
    parse_window(window)
    twins: dict[Path, dict[str, Path]] = {}

    def make(path: Path, **target: Any) -> Sample:
        return Sample(path, clean=twin_of(root, path, twins) if scans else None, channels=channels, window=window,
                      nifti_slice=nifti_slice, **target)

    if task == "segmentation":
        label_names(labels)
        return segmentation_groups(root, seed, make)
    return classification_groups(root, seed, make)


def label_names(labels: str) -> list[str]:
    """The segmentation labels' names, in label order (at least two)."""
    names = [n.strip() for n in labels.split(",") if n.strip()]
    if len(names) < 2:
        raise GradpromError(f"dataset 'folder': labels must name at least two labels in order, e.g. "
                            f"background,lesion; got '{labels}'")
    return names


def decode(sample: Sample, task: str, image_size: int, n_labels: int) -> tuple[Any, ...]:
    """(scan, target, clean twin or None) at `image_size`; every problem one line naming the file."""
    scan = read_scan(sample.image, sample.channels, sample.window, sample.nifti_slice)
    clean = None
    if sample.clean is not None:
        twin = read_scan(sample.clean, sample.channels, sample.window, sample.nifti_slice)
        if twin.shape[:2] != scan.shape[:2]:
            raise GradpromError(f"{sample.clean}: the clean twin is {twin.shape[1]}×{twin.shape[0]} but its scan "
                                f"{sample.image.name} is {scan.shape[1]}×{scan.shape[0]}")
        clean = pad_resize(twin, image_size, is_mask=False)
    if task != "segmentation":
        return pad_resize(scan, image_size, is_mask=False), torch.tensor(sample.label), clean
    if sample.mask is None or not sample.mask.is_file():
        raise GradpromError(f"{sample.image} has no mask: expected one named {stem_of(sample.image)}.* in "
                            f"{sample.image.parent.parent / 'masks'}")
    mask = read_labels(sample.mask, sample.nifti_slice)
    check_mask_size(sample.mask, mask.shape, scan.shape)
    values = np.unique(mask)
    if n_labels == 2 and set(values.tolist()) <= {0, 255}:  # a 0/255 mask of two labels
        mask, values = (mask == 255).astype(mask.dtype), values.clip(0, 1)
    if int(values.max()) >= n_labels:
        bad = [int(v) for v in values if v >= n_labels][:5]
        raise GradpromError(f"{sample.mask}: labels {bad} past the {n_labels} named ({n_labels - 1} at most); name "
                            "every label with --data-option labels=NAME0,NAME1,…")
    return pad_resize(scan, image_size, is_mask=False), pad_resize(mask, image_size, is_mask=True), clean


def configure(root: Path, task: str, options: dict[str, Any]) -> disk.DiskLoader:
    """The loader for this folder and these options: its classes, channels and whether the files are scans."""
    labels = options.get("labels", "background,foreground")
    folder = within(root, options.get("subfolder", ""))
    names = label_names(labels) if task == "segmentation" else class_names(folder)
    scans = bool(options.get("scans", True))

    def decode_sample(sample: Sample, task: str, image_size: int) -> tuple[Any, ...]:
        image, target, clean = decode(sample, task, image_size, len(names))
        return (image, target, clean) if scans else (image, target)

    return dataclasses.replace(LOADER, channels=int(options.get("channels", 1)), class_names={task: names},
                               decode=decode_sample, observed=scans, configure=None)


LOADER = disk.DiskLoader(
    name="folder", channels=1, class_names={},
    locate=lambda data_root, task: locate(data_root),
    list_samples=lambda root, task, seed, image_size, subfolder="", **options: list_samples(
        within(root, subfolder), task, seed, image_size, **options),
    decode=lambda sample, task, size: decode(sample, task, size, 2),
    empty="a split of the folder dataset is empty; put scans in it or let it be carved (remove the empty folder)",
    float_pixels=True, configure=configure,
)


def holds_scans(options: dict[str, Any]) -> bool:
    """Whether, read with `options`, the files are scans as acquired (the trial's inputs), not clean images."""
    return bool(options.get("scans", True))


@register_dataset("folder", loader=LOADER, observes=holds_scans,
                  help="your own scans: a folder of PNG/JPEG/TIFF/NIfTI/DICOM (class folders, or images/ + masks/)")
def folder(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
           n_test: int = 0, skip_bad: bool = False, cache_dir: str = "", subfolder: str = "", scans: bool = True,
           channels: int = 1, window: str = "", nifti_slice: int = -1,
           labels: str = "background,foreground") -> TaskData:
    """The folder at `data_root`(/`subfolder`); `n_*` cap each split (0: all), chosen by a seeded shuffle."""
    options = {"subfolder": subfolder, "scans": scans, "channels": channels, "window": window,
               "nifti_slice": nifti_slice, "labels": labels}
    return disk.load(LOADER, task, image_size, seed, data_root, (n_train, n_val, n_test), skip_bad, cache_dir,
                     **options)
