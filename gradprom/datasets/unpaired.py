"""`r2c_release`: the unpaired chest X-ray folders of the public R2C-GAN (TensorFlow) release, read as shipped.

Layout, under DATA_ROOT/r2c_release/ (or DATA_ROOT itself when it is that folder):
`trainA/**/*.png` poor-quality training images, `trainB/**/*.png` good-quality training images (different
X-rays: the pools are unpaired), `testA/**/*.png` poor-quality test images. Files are found at any depth
(.png, also .jpg/.jpeg), sorted by path; hidden files are ignored. The label follows the release's rule: 1
"covid" when the image's path below the dataset folder contains "covid" (any case), else 0 "normal". (So a
folder named e.g. `non_covid` would count as COVID-19, as in the release; rename such a folder.)

Splits: train = trainA + trainB minus a seeded 10% validation carve of trainA, val = that carve (poor-quality
images), test = testA. The result is an `UnpairedData`: a `TaskData` whose `pools` says, per training image,
0 poor-quality (trainA) or 1 good-quality (trainB); registry meta `unpaired=True` says so without loading.
No image has a clean counterpart, so a restorer trained on it has no PSNR/SSIM (the `r2c_gan` pipeline
reports NaN there) and `degradation` is not applied: the poor images are poor already.

Images are read as greyscale (1 channel), padded to a square and resized (`files.pad_resize`); `n_*` cap each
split (train: both pools together, seeded choice), bad files stop the run or, with `skip_bad`, are left out,
and decoded splits are cached, as for every dataset read from disk (`datasets.disk`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from gradprom.datasets import disk
from gradprom.datasets.base import Split, TaskData, register_dataset
from gradprom.datasets.files import carve, dataset_folder, decode_image_sample
from gradprom.errors import GradpromError

SOURCE = "https://github.com/meteahishali/R2C-GAN"
FOLDERS = ("trainA", "trainB", "testA")
EXPECTED = ("trainA/ (poor-quality), trainB/ (good-quality) and testA/ (poor-quality test) folders of images "
            "(**/*.png)")
CLASS_NAMES = ["normal", "covid"]
POOR, GOOD = 0, 1
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


@dataclass
class UnpairedData(TaskData):
    """TaskData of an unpaired dataset: `pools[i]` is 0 when training image i is of poor quality, 1 good."""

    pools: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    def to(self, device: torch.device | str) -> UnpairedData:
        moved = super().to(device)
        return UnpairedData(**{f.name: getattr(moved, f.name) for f in dataclasses.fields(TaskData)},
                            pools=self.pools.to(device))


@dataclass(frozen=True)
class Sample:
    image: Path
    label: int
    pool: int  # POOR (trainA, testA) or GOOD (trainB)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.image,)


def folder_samples(root: Path, folder: str, pool: int) -> list[Sample]:
    """Every image below root/folder, sorted by path, labelled from its path below root."""
    base = root / folder
    if not base.is_dir():
        raise GradpromError(f"r2c_release: {base} is missing; expected {root}/ to hold {EXPECTED}")
    paths = sorted((p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                    and not p.name.startswith(".")), key=lambda p: p.as_posix())
    if not paths:
        raise GradpromError(f"r2c_release: {base} holds no images (.png); expected {EXPECTED}")
    return [Sample(p, int("covid" in p.relative_to(root).as_posix().lower()), pool) for p in paths]


def list_samples(root: Path, task: str, seed: int, image_size: int) -> list[list[Sample]]:
    """[train (trainA part + trainB), val (carved from trainA), test (testA)]."""
    poor, good, test = (folder_samples(root, f, pool) for f, pool in zip(FOLDERS, (POOR, GOOD, POOR), strict=True))
    poor_train, val, _ = carve(poor, seed, test=False)
    return [poor_train + good, val, test]


def decode_with_pool(sample: Sample, task: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, [label, pool]): the pool rides along with the label through decoding, `skip_bad` and the cache,
    so it stays attached to the right image; `r2c_release` splits it off again."""
    image, label = decode_image_sample(sample, task, size, 1, "")
    return image, torch.tensor([int(label), sample.pool])


#: what `gradprom datasets check` and the split counts use: plain labels
LOADER = disk.DiskLoader(
    name="r2c_release", channels=1, class_names={"classification": CLASS_NAMES},
    locate=lambda data_root, task: dataset_folder("r2c_release", data_root, EXPECTED, SOURCE, FOLDERS),
    list_samples=list_samples,
    decode=lambda sample, task, size: decode_image_sample(sample, task, size, 1, ""),
    empty="an r2c_release split is empty; check the trainA/, trainB/ and testA/ folders",
)
_POOLED = dataclasses.replace(LOADER, decode=decode_with_pool)  # what training loads (targets [label, pool])


@register_dataset("r2c_release", tasks=("classification",), loader=LOADER, unpaired=True,
                  help="R2C-GAN release chest X-rays: unpaired poor (trainA) / good (trainB) pools, testA; "
                       "covid vs normal from the path; no clean targets (PSNR/SSIM NaN)")
def r2c_release(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
                n_test: int = 0, skip_bad: bool = False, cache_dir: str = "") -> UnpairedData:
    """The release from `data_root`/r2c_release; `n_*` cap each split (0: all), chosen by a seeded shuffle."""
    data = disk.load(_POOLED, task, image_size, seed, data_root, (n_train, n_val, n_test), skip_bad, cache_dir)
    splits = [Split(s.images, s.targets[:, 0].contiguous()) for s in (data.train, data.val, data.test)]
    pools = data.train.targets[:, 1].contiguous()
    return UnpairedData(name=data.name, task=task, num_classes=data.num_classes, channels=data.channels,
                        image_size=image_size, class_names=list(data.class_names), train=splits[0], val=splits[1],
                        test=splits[2], skipped=list(data.skipped), fingerprint=data.fingerprint, pools=pools)
