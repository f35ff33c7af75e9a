"""Lizard (colon histology nuclei, Warwick; 238 large RGB images at 20×), read as downloaded.

- `lizard_images1/Lizard_Images1/*.png` and `lizard_images2/Lizard_Images2/*.png` (each image in one of the two),
  `lizard_labels/Lizard_Labels/Labels/{name}.mat` (`inst_map` 0 background / 1…N nuclei, `id` (N,1), `class`
  (N,1) in 1…6) and `lizard_labels/Lizard_Labels/info.csv` (`Filename,Source,Split`).

Task: segmentation with 7 labels (0 background, 1 neutrophil, 2 epithelial, 3 lymphocyte, 4 plasma,
5 eosinophil, 6 connective). Instances get their class through `id` (row k: instance `id[k]` has class
`class[k]`), never by row position. Only the images listed in info.csv are used.

Splits: info.csv's `Split` (1/2/3) is read as folds; fold `val_fold` (default 2) is val, `test_fold`
(default 3) is test, the other fold(s) train. Each image is cut into non-overlapping `patch_size` px
patches at its native resolution (0: `image_size`), the border remainder dropped; patches then go through
`pad_resize` to `image_size` when `patch_size` differs. An image's patches all stay in its fold's split.
`n_*` cap the number of patches of a split (seeded choice); only images with a surviving patch are decoded
(the patch grid comes from the PNG header alone).
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gradprom.datasets import disk
from gradprom.datasets.base import TaskData, check_count, register_dataset
from gradprom.datasets.files import dataset_folder, pad_resize, read_image
from gradprom.errors import GradpromError

SOURCE = "https://warwick.ac.uk/fac/cross_fac/tia/data/lizard/ (CC BY-NC-SA 4.0)"
EXPECTED = ("lizard_images1/Lizard_Images1/, lizard_images2/Lizard_Images2/ and lizard_labels/Lizard_Labels/ "
            "(Labels/*.mat, info.csv)")
IMAGE_DIRS = ("lizard_images1/Lizard_Images1", "lizard_images2/Lizard_Images2")
LABELS = "lizard_labels/Lizard_Labels"
SEG_NAMES = ["background", "neutrophil", "epithelial", "lymphocyte", "plasma", "eosinophil", "connective"]
FOLDS = (1, 2, 3)


@dataclass(frozen=True)
class Patch:
    image: Path
    label: Path
    y: int
    x: int
    size: int  # patch side at native resolution

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.image, self.label)


def read_folds(path: Path) -> list[tuple[str, int]]:
    """(image name without extension, fold) for every row of info.csv."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise GradpromError(f"cannot read {path} ({exc.strerror}); check the Lizard folder") from exc
    out = []
    for line, row in enumerate(rows, start=2):
        name, split = (row.get("Filename") or "").strip(), (row.get("Split") or "").strip()
        if not name or not split:
            raise GradpromError(f"{path}: line {line} lacks Filename or Split (columns must be Filename,Source,Split)")
        try:
            fold = int(float(split))
        except ValueError:
            fold = 0
        if fold not in FOLDS:
            raise GradpromError(f"{path}: line {line} has Split '{split}'; expected one of 1, 2, 3")
        out.append((name.removesuffix(".png"), fold))
    if not out:
        raise GradpromError(f"{path} lists no images; download the Lizard labels again")
    return out


def image_size_of(path: Path) -> tuple[int, int]:
    """(height, width) from the PNG header only."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception as exc:
        raise GradpromError(f"{path}: unreadable image ({type(exc).__name__}: {exc}); the file is truncated or "
                            "corrupt, download it again") from exc


def list_patches(root: Path, patch: int, val_fold: int, test_fold: int) -> list[list[Patch]]:
    """[train, val, test] patches, in info.csv order, row-major within an image.

    An image that is missing or whose header is unreadable still yields one patch, so decoding reports it
    as a bad file (and `skip_bad` can leave it out) instead of the listing stopping here.
    """
    groups: list[list[Patch]] = [[], [], []]
    for name, fold in read_folds(root / LABELS / "info.csv"):
        image = next((root / d / f"{name}.png" for d in IMAGE_DIRS if (root / d / f"{name}.png").is_file()),
                     root / IMAGE_DIRS[0] / f"{name}.png")
        label = root / LABELS / "Labels" / f"{name}.mat"
        try:
            h, w = image_size_of(image)
        except GradpromError:
            h = w = patch
        group = groups[1] if fold == val_fold else groups[2] if fold == test_fold else groups[0]
        group.extend(Patch(image, label, y, x, patch) for y in range(0, h - patch + 1, patch)
                     for x in range(0, w - patch + 1, patch))
    return groups


def read_label(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The semantic mask (0..6) of one image: each instance of `inst_map` gets the class of its `id` row."""
    from scipy.io import loadmat

    if not path.is_file():
        raise GradpromError(f"{path} is missing: every image needs its label file")
    try:
        mat = loadmat(str(path))
        inst, ids, classes = (np.asarray(mat[k]) for k in ("inst_map", "id", "class"))
    except KeyError as exc:
        raise GradpromError(f"{path}: no key {exc} (expected inst_map, id, class)") from exc
    except Exception as exc:
        raise GradpromError(f"{path}: unreadable label file ({type(exc).__name__}: {exc}); the file is truncated "
                            "or corrupt, download it again") from exc
    if inst.shape != shape:
        raise GradpromError(f"{path}: inst_map is {inst.shape[1] if inst.ndim == 2 else '?'}×{inst.shape[0]} but "
                            f"its image is {shape[1]}×{shape[0]}")
    ids, classes = ids.reshape(-1), classes.reshape(-1)
    if ids.size != classes.size:
        raise GradpromError(f"{path}: id has {ids.size} rows but class has {classes.size}")
    if classes.size and (classes.min() < 1 or classes.max() > 6):
        raise GradpromError(f"{path}: class values must be 1..6, found {int(classes.min())}..{int(classes.max())}")
    inst = inst.astype(np.int64)
    if inst.min() < 0:
        raise GradpromError(f"{path}: inst_map has negative values")
    ids = ids.astype(np.int64)
    present = np.unique(inst)
    present = present[present > 0]
    missing = np.setdiff1d(present, ids)
    if missing.size:
        raise GradpromError(f"{path}: instance {int(missing[0])} of inst_map has no row in id "
                            f"({missing.size} such instance(s))")
    lut = np.zeros(max(int(inst.max()), int(ids.max(initial=0))) + 1, dtype=np.int64)
    valid = ids >= 0
    lut[ids[valid]] = classes[valid].astype(np.int64)
    return lut[inst]


_decoded: dict[tuple, np.ndarray | tuple[np.ndarray, np.ndarray] | GradpromError] = {}


def _stamp(path: Path) -> tuple:
    """(path, mtime, size) of a regular file, (path,) otherwise: one stat."""
    try:
        st = os.stat(path)
    except OSError:
        return (str(path),)
    return (str(path), st.st_mtime_ns, st.st_size) if stat.S_ISREG(st.st_mode) else (str(path),)


def read_pair(image: Path, label: Path) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8, semantic mask) of a whole image, memoised for the last image (patches come in image order)
    by path and file stamps; a failure is memoised too, so a bad image is read once, not once per patch."""
    key = tuple(_stamp(p) for p in (image, label))
    if key not in _decoded:
        _decoded.clear()
        try:
            if not image.is_file():
                raise GradpromError(f"{image.name} (listed in info.csv) is in neither {IMAGE_DIRS[0]}/ nor "
                                    f"{IMAGE_DIRS[1]}/; the Lizard folder is incomplete")
            rgb = read_image(image, channels=3)
            _decoded[key] = (rgb, read_label(label, rgb.shape[:2]))
        except GradpromError as exc:
            _decoded[key] = exc
    result = _decoded[key]
    if isinstance(result, GradpromError):
        raise GradpromError(str(result))
    return result


def decode(p: Patch, task: str, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(patch image, patch mask) at `image_size` (resized only when the native patch size differs)."""
    rgb, labels = read_pair(p.image, p.label)
    crop = np.ascontiguousarray(rgb[p.y:p.y + p.size, p.x:p.x + p.size])
    mask = np.ascontiguousarray(labels[p.y:p.y + p.size, p.x:p.x + p.size])
    if p.size == image_size:
        return torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0, torch.from_numpy(mask)
    return pad_resize(crop, image_size, is_mask=False), pad_resize(mask, image_size, is_mask=True)


def samples_for(root: Path, task: str, seed: int, image_size: int, patch_size: int = 0, val_fold: int = 2,
                test_fold: int = 3) -> list[list[Patch]]:
    """[train, val, test] patches for the fold choice (patch_size 0: `image_size`)."""
    patch = image_size if patch_size == 0 else check_count("lizard", "patch_size", patch_size)
    folds = (val_fold, test_fold)
    if any(isinstance(f, bool) or f not in FOLDS for f in folds) or val_fold == test_fold:
        raise GradpromError(f"lizard: val_fold and test_fold must be two different folds from 1, 2, 3; "
                            f"got {val_fold!r} / {test_fold!r}")
    return list_patches(root, patch, int(val_fold), int(test_fold))


LOADER = disk.DiskLoader(
    name="lizard", channels=3, class_names={"segmentation": SEG_NAMES},
    locate=lambda data_root, task: dataset_folder("lizard", data_root, EXPECTED, SOURCE,
                                                  (f"{LABELS}/info.csv", *IMAGE_DIRS)),
    list_samples=samples_for,
    decode=decode,
    empty="a Lizard split has no patches; check info.csv's Split column, val_fold/test_fold, and that patch_size "
          "is not larger than the images",
)


@register_dataset("lizard", tasks=("segmentation",), loader=LOADER,
                  help="Lizard colon histology (RGB): 7-label nuclei segmentation on non-overlapping patches")
def lizard(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
           n_test: int = 0, skip_bad: bool = False, cache_dir: str = "", patch_size: int = 0, val_fold: int = 2,
           test_fold: int = 3) -> TaskData:
    """Lizard from `data_root`/lizard; `n_*` cap each split's patches (0: all), chosen by a seeded shuffle."""
    return disk.load(LOADER, task, image_size, seed, data_root, (n_train, n_val, n_test), skip_bad, cache_dir,
                     patch_size=patch_size, val_fold=val_fold, test_fold=test_fold)
