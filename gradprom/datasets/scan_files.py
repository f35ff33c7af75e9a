"""One scan file as a float image in [0, 1] (or a label map), whatever it was saved as.

The folder dataset reads what a clinic exports: PNG/JPEG (8- or 16-bit), TIFF (any depth, float too), NIfTI (a 2-D
image or one slice of a volume) and DICOM (pydicom; rescale slope/intercept to modality units, e.g. Hounsfield,
then a window). Intensities become [0, 1] floats without passing through 8 bits, so a 12-bit CT keeps its levels.
One rule maps every file of a folder, so a scan and its clean twin stay comparable:

- `window=""` (the default): a DICOM's own VOI window (WindowCenter/WindowWidth) where it has one; unsigned integer
  pixels over their type's range (8-bit /255, 16-bit /65535); any other pixels (signed, float, a DICOM without a
  window) as stored, which must then lie in [0, 1] (else one line asking for a window);
- `window=C:W`, e.g. `40:400` (CT soft tissue in HU): every file clipped to [C − W/2, C + W/2] and scaled;
- `window=minmax`: every file min-max per image (scan and twin each on its own range: for data without twins).

Label maps (masks) are read with the same readers and never rescaled. Every failure is one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradprom.errors import GradpromError

#: file name endings the folder dataset reads, by reader
SUFFIXES = {".png": "pil", ".jpg": "pil", ".jpeg": "pil", ".tif": "tiff", ".tiff": "tiff", ".nii": "nifti",
            ".nii.gz": "nifti", ".dcm": "dicom", ".dicom": "dicom"}
LUMA = np.array([0.299, 0.587, 0.114])
DICOM_MAGIC = b"DICM"  # at byte 128 of a DICOM file (many scanners save them without an extension)


def suffix_of(path: Path) -> str:
    """The reader-relevant ending of a name (`.nii.gz` counts as one)."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def stem_of(path: Path) -> str:
    """The name without its ending, so `a.dcm` and its mask `a.png` match."""
    return path.name[: len(path.name) - len(suffix_of(path))]


def reader_of(path: Path) -> str | None:
    """Which reader takes `path` ('pil', 'tiff', 'nifti', 'dicom'), or None for a file that is no scan (notes,
    thumbnails' sidecars). A file with no extension is a DICOM when it carries the DICOM preamble."""
    kind = SUFFIXES.get(suffix_of(path))
    if kind is None and not path.suffix:
        try:
            with open(path, "rb") as fh:
                kind = "dicom" if fh.read(132)[128:] == DICOM_MAGIC else None
        except OSError:
            return None
    return kind


def parse_window(window: str) -> tuple[float, float] | str:
    """'' or 'minmax' as given; 'C:W' as (center, width) with width > 0; else one line saying what is wanted."""
    if window in ("", "minmax"):
        return window
    try:
        center, width = (float(v) for v in window.split(":"))
    except ValueError:
        center, width = 0.0, 0.0
    if not width > 0 or not np.isfinite(center):
        raise GradpromError(f"window must be '' (each file's own), 'minmax' or CENTER:WIDTH with WIDTH > 0 "
                            f"(e.g. 40:400 for CT soft tissue), got '{window}'")
    return center, width


def read_scan(path: Path, channels: int, window: str = "", nifti_slice: int = -1) -> np.ndarray:
    """`path` as float32 [H, W] (channels 1) or [H, W, 3] (channels 3) in [0, 1]."""
    array, own_window, inverted = _read(path, nifti_slice)
    top = float(np.iinfo(array.dtype).max) if array.dtype.kind == "u" else None  # unsigned: over the type's range
    if array.ndim == 3:
        array = array[..., :3]
        if channels == 1:  # colour to luminance (ITU-R 601, as PIL's "L")
            array = array.astype(np.float64) @ LUMA
    elif channels == 3:
        array = np.repeat(array[..., None], 3, axis=-1)
    unit = _to_unit(path, array, parse_window(window), own_window, top)
    return 1.0 - unit if inverted else unit


def read_labels(path: Path, nifti_slice: int = -1) -> np.ndarray:
    """A label map [H, W] of integers as stored (colour masks: their first channel)."""
    array, _, _ = _read(path, nifti_slice, modality=False)
    array = array[..., 0] if array.ndim == 3 else array
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) or np.any(array < 0):
        raise GradpromError(f"{path}: a mask must hold whole numbers >= 0 (labels), found other values")
    return array.astype(np.int64)


def _to_unit(path: Path, array: np.ndarray, window: tuple[float, float] | str,
             own: tuple[float, float] | None, top: float | None) -> np.ndarray:
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise GradpromError(f"{path}: holds NaN or infinite pixels; fix or remove the file")
    if window == "" and own is not None:
        window = own
    if isinstance(window, tuple):
        center, width = window
        low = center - width / 2
        return np.clip((values - low) / width, 0.0, 1.0).astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if window == "" and top is not None:
        return (values / top).astype(np.float32)
    if window == "":
        if low < 0 or high > 1:
            raise GradpromError(f"{path}: pixel values span [{low:g}, {high:g}], not [0, 1]: give a window "
                                "(--data-option window=CENTER:WIDTH, e.g. 40:400 for CT in HU) or window=minmax")
        return values.astype(np.float32)
    return ((values - low) / (high - low) if high > low else np.zeros_like(values)).astype(np.float32)


def _read(path: Path, nifti_slice: int, modality: bool = True) -> tuple[np.ndarray, tuple[float, float] | None, bool]:
    """(pixels, the file's own window or None, whether bright means low); DICOM pixels in modality units when
    `modality`."""
    if not path.is_file():
        raise GradpromError(f"{path} is missing; the dataset folder is incomplete")
    kind = reader_of(path)
    try:
        if kind == "dicom":
            return _read_dicom(path, nifti_slice, modality)
        if kind == "nifti":
            return _read_nifti(path, nifti_slice), None, False
        if kind == "tiff":
            import tifffile

            return _plane(path, np.asarray(tifffile.imread(path)), nifti_slice), None, False
        return _read_pil(path), None, False
    except GradpromError:
        raise
    except Exception as exc:
        raise GradpromError(f"{path}: unreadable ({type(exc).__name__}: {exc}); the file is truncated or corrupt, "
                            "export it again or leave it out (--skip-bad)") from exc


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float greyscale: no trip through 8 bits
            return np.asarray(img)
        return np.asarray(img.convert("L" if img.mode in ("1", "L", "LA", "P") and "transparency" not in img.info
                                      else "RGB"))


def _read_nifti(path: Path, index: int) -> np.ndarray:
    import nibabel

    array = np.asanyarray(nibabel.load(str(path)).dataobj)  # applies scl_slope/scl_inter
    # NIfTI stores (x, y[, z]); rows are y, so transpose the plane (images and masks alike)
    return _plane(path, np.squeeze(array), index, last_axis=True).T


def _plane(path: Path, array: np.ndarray, index: int, last_axis: bool = False) -> np.ndarray:
    """A 2-D image (or an RGB one) from `array`: itself, or slice `index` (-1: the middle) of a volume, taken along
    the last axis for NIfTI (x, y, z) and the first for TIFF/DICOM stacks (z, y, x)."""
    array = np.squeeze(array)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4) and not last_axis):
        return array
    if array.ndim != 3:
        raise GradpromError(f"{path}: expected a 2-D image or a 3-D volume, got an array of shape {array.shape}")
    depth = array.shape[-1] if last_axis else array.shape[0]
    at = depth // 2 if index < 0 else index
    if at >= depth:
        raise GradpromError(f"{path}: nifti_slice={index} is past the volume's {depth} slices (0…{depth - 1}; "
                            "-1 takes the middle one)")
    return array[..., at] if last_axis else array[at]


def _read_dicom(path: Path, index: int, modality: bool) -> tuple[np.ndarray, tuple[float, float] | None, bool]:
    import pydicom
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise GradpromError(f"{path}: a DICOM file without pixel data (a report or a structured document)")
    pixels = ds.pixel_array
    if ds.get("PhotometricInterpretation", "") == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = _plane(path, pixels, index)
    if not modality:
        return pixels, None, False
    # modality units (e.g. HU for CT): stored value × RescaleSlope + RescaleIntercept
    values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0)
                                                                                        or 0)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    own = None
    if center is not None and width is not None:  # several windows may be stored: the first is the default
        center, width = (float(v[0] if isinstance(v, pydicom.multival.MultiValue) else v) for v in (center, width))
        own = (center, width) if width > 0 else None
    # MONOCHROME1: bright means low; flipped after windowing, to the usual sense
    return values, own, ds.get("PhotometricInterpretation", "") == "MONOCHROME1"
