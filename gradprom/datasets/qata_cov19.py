"""QaTa-COV19 (chest X-rays, Qatar University / Tampere University), read as downloaded from Kaggle.

Layout (folder names contain spaces):
`QaTa-COV19/QaTa-COV19-v2/{Train Set,Test Set}/Images/covid_1.png` with the infection mask
`…/Ground-truths/mask_covid_1.png` (0 background, 255 infection), and the control group (no masks) in
`QaTa-COV19/Control_Group/Control_Group_I/` and `Control_Group_II/`. The dataset folder may hold
`QaTa-COV19/` or be it.

Tasks:
- segmentation: infection masks (labels 0 background, 1 infection). train = `Train Set` minus a seeded 10%
  validation carve, test = `Test Set`.
- classification: COVID-19 (the `Train Set`/`Test Set` images, label 1 "covid") vs control (every image
  under `Control_Group/`, searched recursively, label 0 "control"). COVID images follow the official
  train/test split with the same seeded validation carve as segmentation (same images in val for both
  tasks); control images are carved 80/10/10, seeded. Needs `QaTa-COV19/Control_Group/`.

Images are read as greyscale, padded to a square and resized (see `files.pad_resize`). Images are picked
by extension (.png, .jpg, .jpeg), so stray text files and hidden files are ignored; only the samples that
survive the `n_*` caps are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradprom.datasets import disk
from gradprom.datasets.base import TaskData, register_dataset
from gradprom.datasets.files import carve, dataset_folder, decode_image_sample
from gradprom.errors import DataMissing, GradpromError

SOURCE = "https://www.kaggle.com/datasets/aysendegerli/qatacov19-dataset"
EXPECTED = "QaTa-COV19/QaTa-COV19-v2/ (with 'Train Set/' and 'Test Set/')"
V2 = "QaTa-COV19-v2"
CONTROL = "Control_Group"
CLASS_NAMES = ["control", "covid"]
SEG_NAMES = ["background", "infection"]
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None  # the expected mask path (may not exist); None for control images
    label: int

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.image,) if self.mask is None else (self.image, self.mask)


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def covid_samples(v2: Path, split: str) -> list[Sample]:
    """The images of `Train Set` or `Test Set`, each with its expected mask `Ground-truths/mask_<name>`."""
    folder = v2 / split / "Images"
    if not folder.is_dir():
        raise GradpromError(f"{folder} is missing; expected {V2}/{split}/Images/ and Ground-truths/ "
                            f"(get the dataset from {SOURCE})")
    return [Sample(p, v2 / split / "Ground-truths" / f"mask_{p.name}", 1)
            for p in sorted(folder.iterdir(), key=lambda p: p.name) if is_image(p)]


def control_samples(base: Path) -> list[Sample]:
    """Every image under `Control_Group/` (Control_Group_I, Control_Group_II, any depth), sorted by path;
    files in a `Ground-truths` folder or named `mask_*` are skipped in case a copy ships lung masks."""
    folder = base / CONTROL
    if not folder.is_dir():
        raise DataMissing(f"qata_cov19: classification needs QaTa-COV19/{CONTROL}/ (the control group: "
                            f"Control_Group_I/, Control_Group_II/); {folder} is missing. Get it from {SOURCE}")
    paths = sorted((p for p in folder.rglob("*") if is_image(p) and not p.name.startswith("mask_")
                    and "Ground-truths" not in p.relative_to(folder).parts), key=lambda p: p.as_posix())
    if not paths:
        raise GradpromError(f"qata_cov19: {folder} holds no images (.png/.jpg); classification needs the control "
                            "group")
    return [Sample(p, None, 0) for p in paths]


def find_base(root: Path) -> Path:
    """The folder holding QaTa-COV19-v2/ (and Control_Group/): root/QaTa-COV19, or root itself."""
    nested = root / "QaTa-COV19"
    return nested if (nested / V2).is_dir() else root


def list_samples(root: Path, task: str, seed: int, image_size: int) -> list[list[Sample]]:
    """[train, val, test] samples for `task`."""
    base = find_base(root)
    train, val, _ = carve(covid_samples(base / V2, "Train Set"), seed, test=False)
    test = covid_samples(base / V2, "Test Set")
    if task == "segmentation":
        return [train, val, test]
    control = carve(control_samples(base), seed)
    return [covid + ctrl for covid, ctrl in zip((train, val, test), control, strict=True)]


LOADER = disk.DiskLoader(
    name="qata_cov19", channels=1, class_names={"segmentation": SEG_NAMES, "classification": CLASS_NAMES},
    locate=lambda data_root, task: dataset_folder("qata_cov19", data_root, EXPECTED, SOURCE,
                                                  (f"QaTa-COV19/{V2}", V2)),
    list_samples=list_samples,
    decode=lambda sample, task, size: decode_image_sample(sample, task, size, 1, "infection"),
    empty="a QaTa-COV19 split is empty; check the 'Train Set/', 'Test Set/' and Control_Group/ folders",
)


@register_dataset("qata_cov19", tasks=("segmentation", "classification"), loader=LOADER,
                  help="QaTa-COV19 chest X-rays: COVID-19 infection segmentation, or COVID-19 vs control "
                       "(needs Control_Group/)")
def qata_cov19(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
               n_test: int = 0, skip_bad: bool = False, cache_dir: str = "") -> TaskData:
    """QaTa-COV19 from `data_root`/qata_cov19; `n_*` cap each split (0: all), chosen by a seeded shuffle."""
    return disk.load(LOADER, task, image_size, seed, data_root, (n_train, n_val, n_test), skip_bad, cache_dir)
