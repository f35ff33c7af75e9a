"""COVID-CT (UCSD-AI4H): CT slices cropped from papers, COVID vs non-COVID, read as downloaded.

- Images: `Images-processed/CT_COVID/` (349, .png) and `Images-processed/CT_NonCOVID/` (397, .png and
  .jpg mixed); the repository ships them as `CT_COVID.zip` / `CT_NonCOVID.zip`, unzip them in place.
- Official split: `Data-split/COVID/{train,val,test}CT_COVID.txt` and
  `Data-split/NonCOVID/{train,val,test}CT_NonCOVID.txt`, one bare file name per line (extension as on
  disk; names contain `%` and spaces). Outer whitespace is stripped and a name listed twice is kept once.
  Without `Data-split/`, train/val/test are carved 80/10/10 per class from the image folders, seeded.

Task: classification, 0 covid, 1 noncovid (the official baseline numbers COVID as 0). Greyscale and RGB
files are mixed: every image is converted to greyscale (1 channel), padded to a square and resized (see
`files.pad_resize`). Only the samples kept by the `n_*` caps are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradprom.datasets import disk
from gradprom.datasets.base import TaskData, register_dataset
from gradprom.datasets.files import carve, dataset_folder, decode_image_sample, read_text_lines
from gradprom.errors import GradpromError

SOURCE = "https://github.com/UCSD-AI4H/COVID-CT"
EXPECTED = "Images-processed/CT_COVID/ and Images-processed/CT_NonCOVID/ (official split in Data-split/)"
CLASSES = ("covid", "noncovid")
FOLDERS = ("CT_COVID", "CT_NonCOVID")  # Images-processed/<folder>, in class order
SPLIT_DIRS = ("COVID", "NonCOVID")  # Data-split/<dir>/<split>CT_<name>.txt, in class order
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    image: Path
    label: int

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.image,)


def class_folder(root: Path, label: int) -> Path:
    """Images-processed/CT_COVID or CT_NonCOVID; a still-zipped folder gets its own hint."""
    folder = root / "Images-processed" / FOLDERS[label]
    if not folder.is_dir():
        zipped = folder.with_name(f"{FOLDERS[label]}.zip")
        hint = f"unzip {zipped} in place" if zipped.is_file() else f"get it from {SOURCE}"
        raise GradpromError(f"{folder} is missing; the COVID-CT folder is incomplete ({hint})")
    return folder


def official_split(root: Path, folders: list[Path]) -> list[list[Sample]]:
    """[train, val, test] from Data-split/; a listed name missing on disk is a bad file (decode names it)."""
    groups: list[list[Sample]] = []
    for split in SPLITS:
        group = []
        for label, folder in enumerate(folders):
            listing = root / "Data-split" / SPLIT_DIRS[label] / f"{split}CT_{SPLIT_DIRS[label]}.txt"
            group.extend(Sample(folder / name, label) for name in read_text_lines(listing))
        groups.append(group)
    return groups


def carved_split(folders: list[Path], seed: int) -> list[list[Sample]]:
    """[train, val, test] carved per class (so both classes keep their share in every split)."""
    groups: list[list[Sample]] = [[], [], []]
    for label, folder in enumerate(folders):
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for group, part in zip(groups, carve(names, seed + label), strict=True):
            group.extend(Sample(folder / name, label) for name in part)
    return groups


def list_samples(root: Path, task: str, seed: int, image_size: int) -> list[list[Sample]]:
    """[train, val, test] samples: the official split when Data-split/ exists, else a seeded carve."""
    folders = [class_folder(root, label) for label in range(len(CLASSES))]
    if (root / "Data-split").is_dir():
        return official_split(root, folders)
    return carved_split(folders, seed)


LOADER = disk.DiskLoader(
    name="covid_ct", channels=1, class_names={"classification": list(CLASSES)},
    locate=lambda data_root, task: dataset_folder("covid_ct", data_root, EXPECTED, SOURCE, ("Images-processed",)),
    list_samples=list_samples,
    decode=lambda sample, task, size: decode_image_sample(sample, task, size, 1, ""),
    empty="a COVID-CT split is empty; check Data-split/ or the image folders",
)


@register_dataset("covid_ct", tasks=("classification",), loader=LOADER,
                  help="COVID-CT slices (UCSD-AI4H), covid vs noncovid, official split, greyscale")
def covid_ct(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
             n_test: int = 0, skip_bad: bool = False, cache_dir: str = "") -> TaskData:
    """COVID-CT from `data_root`/covid_ct; `n_*` cap each split (0: all), chosen by a seeded shuffle."""
    return disk.load(LOADER, task, image_size, seed, data_root, (n_train, n_val, n_test), skip_bad, cache_dir)
