"""Reading real datasets from disk: where they live, decoding, and the fixed resize rule.

Data is never downloaded: a dataset lives in a folder the user points at (`--data-root PATH` or
$GRADPROM_DATA, one folder per dataset name below it). Every problem names the file and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gradprom.errors import DataMissing, GradpromError

DATA_ENV = "GRADPROM_DATA"


def dataset_folder(name: str, data_root: str, expected: str, source: str, markers: tuple[str, ...]) -> Path:
    """The folder of dataset `name`: ROOT/name, or ROOT itself when it already is that dataset's folder.

    `markers` are entries (relative paths) whose presence identifies the folder; `expected` and `source`
    go into the one-line error when nothing is found.
    """
    root = data_root or os.environ.get(DATA_ENV, "")
    if not root:
        raise DataMissing(f"dataset '{name}' reads files from disk: pass --data-root PATH (a folder holding "
                            f"{name}/) or set {DATA_ENV}; get it from {source}")
    base = Path(root).expanduser()
    for candidate in (base / name, base):
        for marker in markers:
            if (candidate / marker).exists():
                return candidate
    raise DataMissing(f"dataset '{name}' not found: looked in {base / name} (and {base}) for {expected}; "
                        f"get it from {source}")


def pad_resize(array: np.ndarray, size: int, is_mask: bool) -> torch.Tensor:
    """The resize rule for every real dataset: pad the shorter side symmetrically to a square (zeros),
    then resize to size×size (bilinear with antialiasing for images, nearest for masks).

    Padding first keeps the anatomy's proportions; images come in as [H, W] or [H, W, C] and leave as
    float32 [C, size, size] in [0, 1]; masks leave as int64 [size, size].
    """
    arr = array if array.ndim == 3 or is_mask else array[..., None]
    h, w = arr.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pad = [(top, side - h - top), (left, side - w - left)] + ([(0, 0)] if arr.ndim == 3 else [])
    arr = np.pad(arr, pad)
    if is_mask:
        t = torch.from_numpy(arr.astype(np.int64))[None, None].float()
        return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].long()
    t = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)[None]
    scale = 255.0 if array.dtype == np.uint8 else max(float(t.max()), 1.0)
    t = F.interpolate(t / scale, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].clamp(0, 1)


def read_text_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file (split lists), de-duplicated in order; a leading byte-order
    mark (files saved by Windows tools) is dropped."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except OSError as exc:
        raise GradpromError(f"cannot read {path} ({exc.strerror}); check the dataset folder") from exc
    return list(dict.fromkeys(line for line in lines if line))


def cap(items: list, limit: int, seed: int) -> list:
    """At most `limit` items (0: all), chosen by a seeded shuffle so caps are reproducible and unbiased."""
    if not limit or limit >= len(items):
        return items
    order = np.random.default_rng(seed).permutation(len(items))[:limit]
    return [items[i] for i in sorted(order)]


def read_image(path: Path, channels: int) -> np.ndarray:
    """A PNG/JPEG as uint8 [H, W] (channels 1: converted to greyscale) or [H, W, 3] (channels 3: RGB).

    Greyscale and RGB files are mixed in some datasets; converting every file to the dataset's channel
    count is the documented rule. A truncated or unreadable file gives one line naming it.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("L" if channels == 1 else "RGB"))
    except FileNotFoundError as exc:
        raise GradpromError(f"{path} is missing; the dataset folder is incomplete") from exc
    except Exception as exc:
        raise GradpromError(f"{path}: unreadable image ({type(exc).__name__}: {exc}); the file is truncated or "
                            "corrupt, download it again") from exc


def read_mask(path: Path) -> np.ndarray:
    """A single-channel label PNG as uint8 [H, W]; an RGB(A) mask is reduced to its first channel."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except FileNotFoundError as exc:
        raise GradpromError(f"{path} is missing: every image needs its mask") from exc
    except Exception as exc:
        raise GradpromError(f"{path}: unreadable mask ({type(exc).__name__}: {exc}); download it again") from exc
    return arr[..., 0] if arr.ndim == 3 else arr


def carve(items: list, seed: int, val: bool = True, test: bool = True) -> list[list]:
    """[train, val, test] from one list, seeded: 10% (at least one) each to val and test where asked,
    the rest to train; items keep their order. The rule wherever a dataset ships no split of its own."""
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = max(1, len(items) // 10) if val else 0
    n_test = max(1, len(items) // 10) if test else 0
    parts = (order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test])
    return [[items[i] for i in sorted(part.tolist())] for part in parts]


def check_mask_size(mask_path: Path, mask_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> None:
    """A mask must cover its image pixel for pixel; otherwise one line naming the mask."""
    if tuple(mask_shape[:2]) != tuple(image_shape[:2]):
        raise GradpromError(f"{mask_path}: mask is {mask_shape[1]}×{mask_shape[0]} but its image is "
                            f"{image_shape[1]}×{image_shape[0]}")


def binary_mask(path: Path, image_shape: tuple[int, ...], positive: str) -> np.ndarray:
    """A 0/255 mask file as 0/1 labels, checked against its image's size; `positive` names label 1."""
    mask = read_mask(path)
    check_mask_size(path, mask.shape, image_shape)
    values = np.unique(mask)
    if not set(values.tolist()) <= {0, 255}:
        bad = [int(v) for v in values if v not in (0, 255)][:5]
        raise GradpromError(f"{path}: mask values must be 0 (background) or 255 ({positive}), found {bad}")
    return (mask == 255).astype(np.uint8)


def decode_image_sample(sample: object, task: str, image_size: int, channels: int,
                        positive: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, target) of a sample with `.image`, `.label` and, for segmentation, a 0/255 `.mask` file.

    Images are read at `channels`; masks become 0/1 labels (`positive` names label 1). Shared by the
    loaders whose samples are image files.
    """
    image = read_image(sample.image, channels)
    if task != "segmentation":
        return pad_resize(image, image_size, is_mask=False), torch.tensor(sample.label)
    if sample.mask is None:
        raise GradpromError(f"{sample.image} has no mask; segmentation needs one per image")
    if not sample.mask.is_file():
        raise GradpromError(f"{sample.image} has no mask: expected {sample.mask} (the file {sample.mask.name} is "
                            "missing); segmentation needs one per image")
    mask = binary_mask(sample.mask, image.shape, positive)
    return pad_resize(image, image_size, is_mask=False), pad_resize(mask, image_size, is_mask=True)
