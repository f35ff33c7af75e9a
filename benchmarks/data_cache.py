"""How much the preprocessing cache saves: decode-and-resize every JPEG vs. read the cached arrays.

Writes an ISIC 2018 Task 1 folder of N dermoscopy-sized JPEGs (600×450, textured from scikit-image's
retina photograph, with 0/255 masks) to a temporary folder, then times three loads of
`get_dataset("isic2018", task="segmentation")`: without the cache, the first cached load (decodes and
writes the entry) and a second cached load (reads it). Prints one JSON line; `--record` also adds it as a row
to benchmarks/README.md (or `--readme PATH`). Run: `python benchmarks/data_cache.py [--images N] [--record]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for `benchmarks.record`
from benchmarks.record import parse, record  # noqa: E402
from gradprom.datasets import get_dataset  # noqa: E402


def write_isic(root: Path, count: int) -> None:
    from skimage import data

    retina = np.asarray(Image.fromarray(data.retina()).resize((900, 900)))
    inputs = root / "isic2018" / "ISIC2018_Task1-2_Training_Input"
    truth = root / "isic2018" / "ISIC2018_Task1_Training_GroundTruth"
    inputs.mkdir(parents=True)
    truth.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:450, :600]
    for k in range(count):
        y, x = rng.integers(0, 450), rng.integers(0, 300)
        crop = retina[y:y + 450, x:x + 600]
        cy, cx, r = rng.integers(150, 300), rng.integers(200, 400), rng.integers(60, 140)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.uint8) * 255
        Image.fromarray(crop).save(inputs / f"ISIC_{k:07d}.jpg", quality=90)
        Image.fromarray(mask).save(truth / f"ISIC_{k:07d}_segmentation.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=64)
    args = parse(parser)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_isic(root, args.images)

        def timed(cache: str) -> float:
            start = time.perf_counter()
            get_dataset("isic2018", task="segmentation", image_size=args.image_size, data_root=str(root),
                        cache_dir=cache)
            return time.perf_counter() - start

        uncached = timed("")
        first = timed(str(root / "cache"))
        warm = timed(str(root / "cache"))
    record("data_cache", {"images": args.images, "image_size": args.image_size, "uncached_s": round(uncached, 2),
                          "first_cached_s": round(first, 2), "warm_cached_s": round(warm, 3),
                          "speedup": round(uncached / warm, 1)}, args)


if __name__ == "__main__":
    main()
