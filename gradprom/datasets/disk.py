"""Datasets read from disk: list samples cheaply, decode each once, cache the arrays, skip or stop on bad files.

A loader (`DiskLoader`) only says how to find its folder, how to list [train, val, test] samples (paths
and labels, no pixels) and how to decode one sample at the configured size. The rest is here, once:

- caps: `n_*` keep a seeded choice of each split (0: all), and only kept samples are decoded;
- bad files: without `skip_bad` the first one stops the run with its path and reason; with it the
  bad samples are left out and their reasons kept in `TaskData.skipped`;
- the preprocessing cache: decoded splits are stored as uint8 `.npy` arrays under
  `CACHE/data/<dataset>-<key>/`, the key covering dataset, task, size, seed, options and caps. Each entry
  records the size and mtime of every source file (and every sample's label); a changed, added or removed
  file rebuilds the entry in place. A file lock lets one process per node build it while the others wait
  and then read it, so trials and Ray workers do not decode JPEG/NIfTI again.

Images are kept as uint8 (exact for 8-bit sources, ≤ 0.2% off for resized pixels) both in the cache and
without it, so a cached and an uncached run see the very same tensors; a loader of scans deeper than 8 bits keeps
float32 (`float_pixels`). A loader of `observed` scans decodes each sample's scan, target and clean twin (None where
it has none: stored as NaN), kept as `Split.observed` and `Split.images`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradprom.datasets.base import DATASETS, MANAGED_OPTIONS, Split, TaskData, check_count, dataset_info
from gradprom.datasets.files import cap
from gradprom.errors import GradpromError
from gradprom.filelock import file_lock

CACHE_FORMAT = "gradprom-data-v1"
SPLIT_NAMES = ("train", "val", "test")

#: (sample, task, image_size) -> (image float [C, S, S] in [0, 1], target int64 [] or [S, S]); a loader of observed
#: scans returns (scan, target, clean twin or None)
Decoder = Callable[[Any, str, int], tuple[Any, ...]]
#: a split as decoded: (images, targets, observed scans or None)
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class DiskLoader:
    """How one on-disk dataset is found, listed and decoded. Samples are frozen dataclasses with a
    `files` attribute: the paths decoding reads (their stamps key the cache)."""

    name: str
    channels: int
    class_names: Mapping[str, Sequence[str]]  # per task
    locate: Callable[[str, str], Path]  # (data_root, task) -> the dataset's folder, or one-line error
    list_samples: Callable[..., list[list[Any]]]  # (root, task, seed, image_size, **options) -> [train, val, test]
    decode: Decoder
    empty: str  # the one-line error for a split with no samples
    float_pixels: bool = False  # store images as float32 (scans deeper than 8 bits), not uint8
    observed: bool = False  # its files are scans as acquired: decode gives (scan, target, clean twin or None)
    #: (root, task, options) -> this loader configured for a folder whose classes, channels or kind depend on it
    configure: Callable[[Path, str, dict[str, Any]], DiskLoader] | None = None


def configured(loader: DiskLoader, root: Path, task: str, options: dict[str, Any]) -> DiskLoader:
    """`loader` as it reads the folder at `root` with `options` (itself for a dataset of fixed classes)."""
    return loader.configure(root, task, options) if loader.configure is not None else loader


def load(loader: DiskLoader, task: str, image_size: int, seed: int, data_root: str,
         counts: tuple[int, int, int], skip_bad: bool, cache_dir: str, **options: Any) -> TaskData:
    """Build `loader`'s dataset: list, cap, then decode (or read from the cache) every kept sample."""
    root, caps, groups = kept_samples(loader, task, image_size, seed, data_root, counts, **options)
    loader = configured(loader, root, task, options)

    def build() -> tuple[list[Arrays], list[str]]:
        return decode_groups(loader, groups, task, image_size, skip_bad)

    identity = {"format": CACHE_FORMAT, "dataset": loader.name, "task": task, "image_size": image_size,
                "seed": seed, "root": str(root.resolve()), "caps": caps, "skip_bad": bool(skip_bad),
                "options": options}
    stamp = stamps(groups)
    arrays, skipped = cached(Path(cache_dir) / "data", identity, stamp, build) if cache_dir else build()
    splits = [Split(as_float(images), torch.from_numpy(targets).long(), None if seen is None else as_float(seen))
              for images, targets, seen in arrays]
    return TaskData(name=loader.name, task=task, num_classes=len(loader.class_names[task]),
                    channels=loader.channels, image_size=image_size, class_names=list(loader.class_names[task]),
                    train=splits[0], val=splits[1], test=splits[2], skipped=skipped, fingerprint=stamp[:20])


def kept_samples(loader: DiskLoader, task: str, image_size: int, seed: int, data_root: str,
                 counts: tuple[int, int, int], **options: Any) -> tuple[Path, list[int], list[list[Any]]]:
    """(root, caps, [train, val, test] samples kept after the `n_*` caps): listed, nothing decoded."""
    caps = [0 if n == 0 else check_count(loader.name, f"n_{s}", n) for n, s in zip(counts, SPLIT_NAMES, strict=True)]
    root = loader.locate(data_root, task)
    listed = loader.list_samples(root, task, seed, image_size, **options)
    return root, caps, [cap(g, n, seed + i) for i, (g, n) in enumerate(zip(listed, caps, strict=True))]


def to_uint8(image: Tensor) -> np.ndarray:
    """A [0, 1] float image as uint8 (the stored form)."""
    return image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def as_float(images: np.ndarray) -> Tensor:
    """Stored images as float [0, 1] tensors (uint8 scaled, float32 as they are)."""
    tensor = torch.from_numpy(images)
    return tensor.float().div_(255.0) if tensor.dtype == torch.uint8 else tensor.float()


def decode_groups(loader: DiskLoader, groups: list[list[Any]], task: str, image_size: int,
                  skip_bad: bool) -> tuple[list[Arrays], list[str]]:
    """Decode every sample of every split: ([(images [N,C,S,S], targets, observed scans or None)] per split,
    skipped reasons). A bad sample raises its one-line error, or with `skip_bad` is left out (its reason kept once)."""
    store = (lambda image: image.float().numpy()) if loader.float_pixels else to_uint8
    arrays, skipped = [], []
    for group in groups:
        images, targets, seen = [], [], []
        for sample in group:
            try:
                image, target, *twin = loader.decode(sample, task, image_size)
            except GradpromError as exc:
                if not skip_bad:
                    raise
                if str(exc) not in skipped:
                    skipped.append(str(exc))
                continue
            if loader.observed:  # the file is the observation; its clean twin, where it has one, the image
                seen.append(store(image))
                image = twin[0] if twin[0] is not None else torch.full_like(image, float("nan"))
            images.append(store(image))
            targets.append(target.numpy())
        if not images:
            hint = f" ({len(group)} sample(s) listed, all bad)" if group else ""
            raise GradpromError(loader.empty + hint)
        arrays.append((np.stack(images), np.stack(targets).astype(np.uint8 if task == "segmentation" else np.int64),
                       np.stack(seen) if loader.observed else None))
    return arrays, skipped


def stamps(groups: list[list[Any]]) -> str:
    """A hash of every sample (paths, labels) and the size and mtime of every file it reads."""
    digest = hashlib.sha256()
    seen: dict[Any, bytes] = {}  # each file stat'ed once (a Lizard image backs hundreds of patch samples)
    for group in groups:
        digest.update(b"|split|")
        for sample in group:
            digest.update(repr(sample).encode())
            for path in sample.files:
                if path not in seen:
                    try:
                        st = os.stat(path)
                        seen[path] = f"{st.st_size}:{st.st_mtime_ns}".encode()
                    except OSError:
                        seen[path] = b"missing"
                digest.update(seen[path])
    return digest.hexdigest()


def cached(folder: Path, identity: dict[str, Any], stamp: str, build: Callable[[], tuple[list[Arrays], list[str]]],
           ) -> tuple[list[Arrays], list[str]]:
    """The decoded splits from the cache entry for `identity`, rebuilt when the sources' `stamp` changed."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    entry = folder / f"{identity['dataset']}-{key}"
    hit = read_entry(entry, stamp)  # entries are swapped in whole (write_entry), so a hit needs no lock
    if hit is not None:
        return hit
    with file_lock(folder / f"{entry.name}.lock"):
        hit = read_entry(entry, stamp)  # built by another process while this one waited for the lock
        if hit is not None:
            return hit
        arrays, skipped = build()
        write_entry(entry, stamp, arrays, skipped)
    return arrays, skipped


def read_entry(entry: Path, stamp: str) -> tuple[list[Arrays], list[str]] | None:
    """The entry's arrays if it exists, is complete and matches `stamp`; None otherwise (rebuilt)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or meta.get("stamp") != stamp:
            return None
        arrays = [(np.load(entry / f"{s}_images.npy"), np.load(entry / f"{s}_targets.npy"),
                   np.load(entry / f"{s}_observed.npy") if meta.get("observed") else None) for s in SPLIT_NAMES]
        return arrays, list(meta.get("skipped", []))
    except Exception:  # a missing or damaged entry (truncated, empty, not our format) is decoded again
        return None


def write_entry(entry: Path, stamp: str, arrays: list[Arrays], skipped: list[str]) -> None:
    """Write a complete entry beside the old one, then swap it in (readers never see a half-written one)."""
    tmp = entry.with_name(entry.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for split, (images, targets, seen) in zip(SPLIT_NAMES, arrays, strict=True):
        np.save(tmp / f"{split}_images.npy", images)
        np.save(tmp / f"{split}_targets.npy", targets)
        if seen is not None:
            np.save(tmp / f"{split}_observed.npy", seen)
    (tmp / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "stamp": stamp, "skipped": skipped,
                                               "counts": [len(a[0]) for a in arrays],
                                               "observed": arrays[0][2] is not None}))
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)


def split_sizes(name: str, task: str = "classification", image_size: int = 64, seed: int = 0,
                **options: Any) -> tuple[int, int, int] | None:
    """Samples per split (train, val, test) that `get_dataset` with these arguments would hold, without
    decoding any: files are listed, not read, so a search can check its batch size before Ray starts.

    For data read from disk the counts are of listed samples (bad files that `skip_bad` would leave out
    still count); None when a dataset cannot say (a plugin without a disk loader or `n_*` options)."""
    loader = DATASETS.meta(name).loader
    counts = (options.pop("n_train", 0), options.pop("n_val", 0), options.pop("n_test", 0))
    if loader is not None:
        groups = listed_samples(loader, task, image_size, seed, counts, options)
        return len(groups[0]), len(groups[1]), len(groups[2])
    defaults = dataset_info(name)["options"]
    sizes = [n or defaults.get(key) for n, key in zip(counts, ("n_train", "n_val", "n_test"), strict=True)]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        return None
    return sizes[0], sizes[1], sizes[2]


def listed_samples(loader: DiskLoader, task: str, image_size: int, seed: int, counts: tuple[int, int, int],
                   options: dict[str, Any]) -> list[list[Any]]:
    """The samples each split of a disk dataset keeps, from `get_dataset`-style options (nothing decoded)."""
    own = {k: v for k, v in options.items() if k not in MANAGED_OPTIONS}
    _, _, groups = kept_samples(loader, task, image_size, seed, options.get("data_root", ""), counts, **own)
    return groups


def clean_twins(name: str, task: str = "classification", image_size: int = 64, seed: int = 0,
                **options: Any) -> tuple[int, int, int] | None:
    """Scans with a clean twin per split (train, val, test), listed not decoded, for a dataset whose files are
    scans as acquired (its samples name their twin as `clean`); None for one whose images are all clean."""
    meta = DATASETS.meta(name)
    if meta.loader is None or meta.observes is None or not meta.observes(options):
        return None
    counts = (options.pop("n_train", 0), options.pop("n_val", 0), options.pop("n_test", 0))
    groups = listed_samples(meta.loader, task, image_size, seed, counts, options)
    return tuple(sum(getattr(sample, "clean", None) is not None for sample in group)  # type: ignore[return-value]
                 for group in groups)
