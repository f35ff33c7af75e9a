"""CAMUS (2D echocardiography, 500 patients), read as downloaded; both releases.

- 2023 NIfTI release: `database_nifti/patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES}[_gt].nii.gz`, with the
  official split in `database_split/subgroup_{training,validation,testing}.txt`.
- 2019 MetaImage release: `training/patientXXXX/…_{ED,ES}[_gt].mhd` + `.raw` (and `testing/`, which has
  no masks); train/val/test are carved from `training/` by patient, seeded (80/10/10).

Tasks: segmentation (0 background, 1 LV cavity, 2 myocardium, 3 left atrium) and classification of the
view's `ImageQuality` from `Info_{view}.cfg` (good / medium / poor). ED and ES frames of both views.
Frames are rotated 90° clockwise (the usual apex-up view, as public loaders do), then padded to a square
and resized (see `files.pad_resize`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gradprom.datasets import disk
from gradprom.datasets.base import TaskData, register_dataset
from gradprom.datasets.files import carve, check_mask_size, dataset_folder, pad_resize, read_text_lines
from gradprom.errors import GradpromError

SOURCE = "https://www.creatis.insa-lyon.fr/Challenge/camus/ (registration required)"
EXPECTED = "database_nifti/ and database_split/ (2023 release) or training/ (2019 release)"
QUALITY = ("good", "medium", "poor")
SEG_NAMES = ["background", "LV cavity", "myocardium", "left atrium"]
SPLITS = ("training", "validation", "testing")
MET_TYPES = {"MET_UCHAR": np.uint8, "MET_CHAR": np.int8, "MET_USHORT": np.uint16, "MET_SHORT": np.int16,
             "MET_UINT": np.uint32, "MET_INT": np.int32, "MET_FLOAT": np.float32, "MET_DOUBLE": np.float64}


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    quality: str
    cfg: Path  # Info_{view}.cfg, where `quality` came from

    @property
    def files(self) -> tuple[Path, ...]:
        """What decoding reads: frames (a MetaImage header and its .raw/.zraw data), mask and Info cfg."""
        frames = [p for p in (self.image, self.mask) if p is not None]
        data = [p.with_suffix(s) for p in frames if p.suffix == ".mhd" for s in (".raw", ".zraw")]
        return (*frames, *data, self.cfg)


def read_cfg(path: Path) -> dict[str, str]:
    """`Key: value` lines of an Info_*.cfg file."""
    pairs = (line.split(":", 1) for line in read_text_lines(path) if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def read_metaimage(path: Path) -> np.ndarray:
    """A MetaImage (.mhd header + raw data file) as an array (frames, H, W), or (H, W) for one frame."""
    header = {}
    for line in read_text_lines(path):
        if "=" in line:
            key, value = line.split("=", 1)
            header[key.strip()] = value.strip()
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        dtype = np.dtype(MET_TYPES[header["ElementType"]])
        data_file = path.parent / header["ElementDataFile"]
    except (KeyError, ValueError) as exc:
        raise GradpromError(f"{path}: not a MetaImage header this loader understands ({exc}); "
                            "expected DimSize, ElementType and ElementDataFile") from exc
    if header.get("BinaryDataByteOrderMSB", "False").lower() == "true":
        dtype = dtype.newbyteorder(">")
    if not data_file.is_file():
        raise GradpromError(f"{path}: its data file {data_file.name} is missing")
    raw = data_file.read_bytes()
    if header.get("CompressedData", "False").lower() == "true":
        raw = zlib.decompress(raw)
    count = int(np.prod(dims))
    if len(raw) != count * dtype.itemsize:
        raise GradpromError(f"{data_file}: holds {len(raw)} bytes, the header promises {count * dtype.itemsize} "
                            "(truncated or corrupt); download it again")
    return np.frombuffer(raw, dtype=dtype).reshape(dims[::-1]).squeeze()


def read_frame(path: Path) -> np.ndarray:
    """One ED/ES frame, rotated to the apex-up view; any decoding problem names the file."""
    if not path.is_file():
        raise GradpromError(f"{path} is missing; the CAMUS folder is incomplete")
    try:
        if path.suffix == ".mhd":
            array = read_metaimage(path)
        else:
            import nibabel

            array = np.asanyarray(nibabel.load(str(path)).dataobj)
    except GradpromError:
        raise
    except Exception as exc:
        raise GradpromError(f"{path}: unreadable ({type(exc).__name__}: {exc}); the file is truncated or "
                            "corrupt, download it again") from exc
    if array.ndim == 3 and 1 in array.shape:
        array = array.squeeze()
    if array.ndim != 2:
        raise GradpromError(f"{path}: expected one 2-D frame, got an array of shape {array.shape}")
    return np.ascontiguousarray(np.rot90(array, k=-1))


def _patient_samples(folder: Path, patient: str, views: list[str], phases: list[str], ext: str) -> list[Sample]:
    out = []
    for view in views:
        cfg = folder / patient / f"Info_{view}.cfg"
        quality = read_cfg(cfg).get("ImageQuality", "").lower() if cfg.is_file() else ""
        for phase in phases:
            image = folder / patient / f"{patient}_{view}_{phase}{ext}"  # a missing one is a bad file
            mask = folder / patient / f"{patient}_{view}_{phase}_gt{ext}"
            out.append(Sample(image, mask if mask.is_file() else None, quality, cfg))
    return out


def list_samples(root: Path, views: list[str], phases: list[str], seed: int) -> list[list[Sample]]:
    """[train, val, test] samples of either release, by patient: a patient's frames stay in one split."""
    nifti = next((p for p in (root / "database_nifti", root / "CAMUS_public" / "database_nifti") if p.is_dir()),
                 None)
    if nifti is not None:
        split_dir = nifti.parent / "database_split"
        if split_dir.is_dir():
            groups = [read_text_lines(split_dir / f"subgroup_{s}.txt") for s in SPLITS]
        else:
            groups = carve(sorted(p.name for p in nifti.iterdir() if p.is_dir()), seed)
        return [[s for p in g for s in _patient_samples(nifti, p, views, phases, ".nii.gz")] for g in groups]
    training = root / "training"
    patients = sorted(p.name for p in training.iterdir() if p.is_dir())
    return [[s for p in g for s in _patient_samples(training, p, views, phases, ".mhd")]
            for g in carve(patients, seed)]


def decode(s: Sample, task: str, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frame, target) of one sample: the 4-label mask, or the view's ImageQuality class."""
    frame = read_frame(s.image)
    if task != "segmentation":
        if s.quality not in QUALITY:
            raise GradpromError(f"{s.cfg}: ImageQuality '{s.quality}' is not one of {', '.join(QUALITY)}")
        return pad_resize(frame, image_size, is_mask=False), torch.tensor(QUALITY.index(s.quality))
    if s.mask is None:
        raise GradpromError(f"{s.image} has no ground-truth mask (_gt); segmentation needs one")
    mask = read_frame(s.mask)
    check_mask_size(s.mask, mask.shape, frame.shape)
    if mask.min() < 0 or mask.max() > 3:
        raise GradpromError(f"{s.mask}: labels must be 0..3, found {int(mask.min())}..{int(mask.max())}")
    return pad_resize(frame, image_size, is_mask=False), pad_resize(mask, image_size, is_mask=True)


def samples_for(root: Path, task: str, seed: int, image_size: int, views: str = "2CH,4CH",
                phases: str = "ED,ES") -> list[list[Sample]]:
    """[train, val, test] samples of the chosen views and phases (comma-separated)."""
    view_list, phase_list = [v.strip() for v in views.split(",")], [p.strip() for p in phases.split(",")]
    if not set(view_list) <= {"2CH", "4CH"} or not set(phase_list) <= {"ED", "ES"}:
        raise GradpromError(f"camus: views must be from 2CH,4CH and phases from ED,ES; got '{views}' / '{phases}'")
    return list_samples(root, view_list, phase_list, seed)


LOADER = disk.DiskLoader(
    name="camus", channels=1, class_names={"segmentation": SEG_NAMES, "classification": list(QUALITY)},
    locate=lambda data_root, task: dataset_folder("camus", data_root, EXPECTED, SOURCE,
                                                  ("database_nifti", "CAMUS_public/database_nifti", "training")),
    list_samples=samples_for,
    decode=decode,
    empty="a CAMUS split is empty; check database_split/ or the patient folders",
)


@register_dataset("camus", tasks=("segmentation", "classification"), loader=LOADER,
                  help="CAMUS echocardiography (2019 or 2023 release): 4-label segmentation or ImageQuality")
def camus(task: str, image_size: int, seed: int, data_root: str = "", n_train: int = 0, n_val: int = 0,
          n_test: int = 0, skip_bad: bool = False, cache_dir: str = "", views: str = "2CH,4CH",
          phases: str = "ED,ES") -> TaskData:
    """CAMUS from `data_root`/camus; `n_*` cap each split (0: all), chosen by a seeded shuffle."""
    return disk.load(LOADER, task, image_size, seed, data_root, (n_train, n_val, n_test), skip_bad, cache_dir,
                     views=views, phases=phases)
