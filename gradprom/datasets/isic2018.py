"""ISIC 2018 (dermoscopy), read as downloaded from the challenge site; Task 1 and Task 3.

- Task 1, lesion segmentation: `ISIC2018_Task1-2_Training_Input/ISIC_XXXXXXX.jpg` with
  `ISIC2018_Task1_Training_GroundTruth/ISIC_XXXXXXX_segmentation.png` (0 background, 255 lesion → label 1).
  The official `_Validation_` / `_Test_` input and ground-truth folders are used when both are present;
  a split without them is carved from training instead (10% each, seeded).
- Task 3, diagnosis: `ISIC2018_Task3_Training_Input/<image>.jpg` with the one-hot
  `ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv` (MEL, NV, BCC, AKIEC, BKL,
  DF, VASC, in that order). Train/val/test are carved from training (80/10/10, seeded); with
  `ISIC2018_Task3_Training_LesionGroupings.csv` present they are carved by `lesion_id`, so one lesion's
  images stay in one split.

Only files with an image extension are read (the folders also hold ATTRIBUTION.txt and LICENSE.txt).
Images are RGB, padded to a square and resized (see `files.pad_resize`). Licence: CC BY-NC 4.0.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from gradprom.datasets import disk
from gradprom.datasets.base import TaskData, register_dataset
from gradprom.datasets.files import carve, dataset_folder, decode_image_sample
from gradprom.errors import GradpromError

SOURCE = "https://challenge.isic-archive.com/data/#2018 (CC BY-NC 4.0)"
SEG_INPUT = "ISIC2018_Task1-2_{split}_Input"
SEG_TRUTH = "ISIC2018_Task1_{split}_GroundTruth"
CLS_INPUT = "ISIC2018_Task3_Training_Input"
CLS_TRUTH = "ISIC2018_Task3_Training_GroundTruth"
CLS_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"
GROUPINGS_CSV = "ISIC2018_Task3_Training_LesionGroupings.csv"
EXPECTED = {"segmentation": "ISIC2018_Task1-2_Training_Input/ and ISIC2018_Task1_Training_GroundTruth/ (Task 1)",
            "classification": f"{CLS_INPUT}/ and {CLS_TRUTH}/{CLS_CSV} (Task 3)"}
MARKERS = {"segmentation": (SEG_INPUT.format(split="Training"),), "classification": (CLS_INPUT,)}
CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
SEG_NAMES = ["background", "lesion"]
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    label: int

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.image,) if self.mask is None else (self.image, self.mask)


def image_files(folder: Path) -> list[Path]:
    """The images of an input folder, sorted; other files (ATTRIBUTION.txt, LICENSE.txt) are skipped."""
    if not folder.is_dir():
        raise GradpromError(f"{folder} is missing; the ISIC 2018 folder is incomplete (get it from {SOURCE})")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def segmentation_samples(root: Path, seed: int) -> list[list[Sample]]:
    """[train, val, test] Task 1 samples: official folders where present, otherwise carved from training."""

    def samples(split: str) -> list[Sample]:
        truth = root / SEG_TRUTH.format(split=split)
        return [Sample(p, truth / f"{p.stem}_segmentation.png", 0)
                for p in image_files(root / SEG_INPUT.format(split=split))]

    official = {s: (root / SEG_INPUT.format(split=s)).is_dir() and (root / SEG_TRUTH.format(split=s)).is_dir()
                for s in ("Validation", "Test")}
    training = {s.image.stem: s for s in samples("Training")}
    groups = carve(sorted(training), seed, val=not official["Validation"], test=not official["Test"])
    out = [[training[name] for name in g] for g in groups]
    for i, split in ((1, "Validation"), (2, "Test")):
        if official[split]:
            out[i] = samples(split)
    return out


def find_csv(root: Path, name: str) -> Path | None:
    """A CSV in the ground-truth folder (as shipped) or beside it."""
    return next((p for p in (root / CLS_TRUTH / name, root / name) if p.is_file()), None)


def read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV whose header must hold `columns`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a byte-order mark (Excel) is dropped
            reader = csv.DictReader(f)
            header = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in columns if c not in header]
            if missing:
                raise GradpromError(f"{path}: header lacks column(s) {', '.join(missing)}; expected "
                                    f"{','.join(columns)}")
            reader.fieldnames = header
            return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None})
                    for row in reader]
    except OSError as exc:
        raise GradpromError(f"cannot read {path} ({exc.strerror}); check the dataset folder") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise GradpromError(f"{path}: not a readable CSV ({exc}); download it again") from exc


def one_hot_class(path: Path, line: int, row: dict[str, str]) -> int:
    """The class index of a one-hot ground-truth row (exactly one 1.0, the rest 0.0)."""
    try:
        values = [float(row[c]) for c in CLASSES]
    except ValueError:
        values = []
    if sorted(values) != [0.0] * (len(CLASSES) - 1) + [1.0]:
        raise GradpromError(f"{path}, line {line} ({row.get('image', '')}): class columns must be one-hot "
                            f"(one 1.0, the rest 0.0), got {','.join(row[c] for c in CLASSES)}")
    return values.index(1.0)


def classification_samples(root: Path, seed: int) -> list[list[Sample]]:
    """[train, val, test] Task 3 samples, carved 80/10/10 from training by lesion_id when groupings exist."""
    truth = find_csv(root, CLS_CSV)
    if truth is None:
        raise GradpromError(f"{root / CLS_TRUTH / CLS_CSV} is missing; Task 3 needs its ground truth "
                            f"(get it from {SOURCE})")
    images = {p.stem: p for p in image_files(root / CLS_INPUT)}
    samples = {}
    for line, row in read_csv(truth, ("image", *CLASSES)):
        name = row["image"].removesuffix(".jpg")  # an image missing on disk is a bad file (decode names it)
        samples[name] = Sample(images.get(name, root / CLS_INPUT / f"{name}.jpg"), None,
                               one_hot_class(truth, line, row))
    if not samples:
        raise GradpromError(f"{truth} lists no images")
    lesion = {name: name for name in samples}  # without groupings every image is its own group
    groupings = find_csv(root, GROUPINGS_CSV)
    if groupings is not None:
        rows = {row["image"].removesuffix(".jpg"): row["lesion_id"]
                for _, row in read_csv(groupings, ("image", "lesion_id"))}
        missing = sorted(set(samples) - set(rows))
        if missing:
            raise GradpromError(f"{groupings}: no lesion_id for {len(missing)} image(s) of {truth.name}, e.g. "
                                f"{missing[0]}; the two files do not match")
        lesion = {name: rows[name] for name in samples}
    members: dict[str, list[str]] = {}
    for name in sorted(samples):
        members.setdefault(lesion[name], []).append(name)
    return [[samples[n] for n in sorted(n for g in groups for n in members[g])]
            for groups in carve(sorted(members), seed)]


def list_samples(root: Path, task: str, seed: int, image_size: int) -> list[list[Sample]]:
    return segmentation_samples(root, seed) if task == "segmentation" else classification_samples(root, seed)


LOADER = disk.DiskLoader(
    name="isic2018", channels=3,
    class_names={"segmentation": SEG_NAMES, "classification": list(CLASSES)},
    locate=lambda data_root, task: dataset_folder("isic2018", data_root, EXPECTED[task], SOURCE, MARKERS[task]),
    list_samples=list_samples,
    decode=lambda sample, task, size: decode_image_sample(sample, task, size, 3, "lesion"),
    empty="an ISIC 2018 split is empty; an official input folder holds no images, or training has too few to "
          "carve val/test from",
)


@register_dataset("isic2018", tasks=("segmentation", "classification"), loader=LOADER,
                  help="ISIC 2018 dermoscopy (RGB): Task 1 lesion segmentation or Task 3 7-class diagnosis")
def isic2018(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
             n_test: int = 0, skip_bad: bool = False, cache_dir: str = "") -> TaskData:
    """ISIC 2018 from `data_root`/isic2018; `n_*` cap each split (0: all), chosen by a seeded shuffle."""
    return disk.load(LOADER, task, image_size, seed, data_root, (n_train, n_val, n_test), skip_bad, cache_dir)
