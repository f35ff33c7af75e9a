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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gradprom.datasets.base import Split, TaskData, check_count, register_dataset
from gradprom.datasets.files import cap, dataset_folder, pad_resize, read_image
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
    """[train, val, test] patches, in info.csv order, row-major within an image."""
    groups: list[list[Patch]] = [[], [], []]
    for name, fold in read_folds(root / LABELS / "info.csv"):
        image = next((root / d / f"{name}.png" for d in IMAGE_DIRS if (root / d / f"{name}.png").is_file()), None)
        if image is None:
            raise GradpromError(f"{name}.png (listed in {root / LABELS / 'info.csv'}) is in neither "
                                f"{IMAGE_DIRS[0]}/ nor {IMAGE_DIRS[1]}/; the Lizard folder is incomplete")
        label = root / LABELS / "Labels" / f"{name}.mat"
        if not label.is_file():
            raise GradpromError(f"{label} is missing: every image needs its label file")
        h, w = image_size_of(image)
        group = groups[1] if fold == val_fold else groups[2] if fold == test_fold else groups[0]
        group.extend(Patch(image, label, y, x) for y in range(0, h - patch + 1, patch)
                     for x in range(0, w - patch + 1, patch))
    return groups


def read_label(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The semantic mask (0..6) of one image: each instance of `inst_map` gets the class of its `id` row."""
    from scipy.io import loadmat

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


def load_split(patches: list[Patch], patch: int, image_size: int) -> Split:
    images, targets = [], []
    current: tuple[Path, np.ndarray, np.ndarray] | None = None
    for p in patches:
        if current is None or current[0] != p.image:
            rgb = read_image(p.image, channels=3)
            current = (p.image, rgb, read_label(p.label, rgb.shape[:2]))
        crop = current[1][p.y:p.y + patch, p.x:p.x + patch]
        mask = current[2][p.y:p.y + patch, p.x:p.x + patch]
        if patch == image_size:
            images.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0)
            targets.append(torch.from_numpy(np.ascontiguousarray(mask)))
        else:
            images.append(pad_resize(crop, image_size, is_mask=False))
            targets.append(pad_resize(mask, image_size, is_mask=True))
    if not images:
        raise GradpromError("a Lizard split has no patches; check info.csv's Split column, val_fold/test_fold, "
                            "and that patch_size is not larger than the images")
    return Split(torch.stack(images), torch.stack(targets))


@register_dataset("lizard", tasks=("segmentation",),
                  help="Lizard colon histology (RGB): 7-label nuclei segmentation on non-overlapping patches")
def lizard(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
           n_test: int = 0, patch_size: int = 0, val_fold: int = 2, test_fold: int = 3) -> TaskData:
    """Lizard from `data_root`/lizard; `n_*` cap each split's patches (0: all), chosen by a seeded shuffle."""
    patch = image_size if patch_size == 0 else check_count("lizard", "patch_size", patch_size)
    if val_fold not in FOLDS or test_fold not in FOLDS or isinstance(val_fold, bool) or isinstance(test_fold, bool) \
            or val_fold == test_fold:
        raise GradpromError(f"lizard: val_fold and test_fold must be two different folds from 1, 2, 3; "
                            f"got {val_fold!r} / {test_fold!r}")
    root = dataset_folder("lizard", data_root, EXPECTED, SOURCE, (f"{LABELS}/info.csv", *IMAGE_DIRS))
    groups = list_patches(root, patch, int(val_fold), int(test_fold))
    splits = [load_split(cap(g, n, seed + i), patch, image_size)
              for i, (g, n) in enumerate(zip(groups, (n_train, n_val, n_test), strict=True))]
    return TaskData(name="lizard", task=task, num_classes=7, channels=3, image_size=image_size,
                    class_names=list(SEG_NAMES), train=splits[0], val=splits[1], test=splits[2])
