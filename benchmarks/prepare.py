"""Throughput of `factorlab prepare` (with and without MTCNN) and of the cached loader at 160x160.

    python benchmarks/prepare.py [--images 300] [--load-images 4000] [--workers 1]

Builds a CASIA-style image-folder tree of 250x250 JPEGs cut from scikit-image's astronaut photo
(a real face, so MTCNN has something to find), prepares it, then reads a 160x160 cache through
torch's DataLoader the way training does. One torch thread per process; numbers are images/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from factorlab.commands.prepare import source_of
from factorlab.data import imagefolder
from factorlab.data.loading import make_loader
from factorlab.data.prepare import prepare
from factorlab.data.sampling import FaceAugment, epoch_order
from factorlab.factors import Factor


def make_tree(root: Path, n: int, seed: int = 0) -> Path:
    """n 250x250 JPEGs in 10 identity folders, each a shifted, rescaled cut of the astronaut's head."""
    from skimage.data import astronaut

    photo, rng = astronaut(), np.random.default_rng(seed)
    for i in range(n):
        side = int(rng.integers(220, 300))
        x, y = int(rng.integers(90, 130)), int(rng.integers(0, 30))
        cut = Image.fromarray(photo[y : y + side, x : x + side]).resize((250, 250))
        folder = root / f"{i % 10:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        cut.save(folder / f"{i:04d}.jpg", quality=90)
    return root


def time_prepare(root: Path, out: Path, align: str, workers: int, size: int) -> float:
    config = imagefolder.ImageFolderConfig(root=root, align=align, on_error="skip", factor="identity")
    start = time.perf_counter()
    result = prepare(source_of("imagefolder"), config, out, image_size=size, shard_size=100, workers=workers)
    rate = result.images / (time.perf_counter() - start)
    print(
        f"prepare align={align:6s} workers={workers}: {result.images} images, {result.skipped} skipped, {rate:8.1f} images/s"
    )
    return rate


def time_loading(cache: Path, root: Path, batch_size: int, workers: int, balanced: bool, augment: bool) -> float:
    config = imagefolder.ImageFolderConfig(root=root, cache=cache, factor="identity", val_fraction=0, test_fraction=0)
    data = imagefolder.build(config, split="train", image_size=160, factors={"identity": Factor("identity")})
    labels = data.labels("identity")
    order = epoch_order(labels, len(labels), seed=0, epoch=0, balanced=balanced)
    loader = make_loader(data, order, batch_size, num_workers=workers)
    flip_crop_jitter = FaceAugment(flip=True, crop=0.1, color_jitter=0.2)
    seen, start = 0, time.perf_counter()
    for batch in loader:
        images = flip_crop_jitter(batch["image"]) if augment else batch["image"]
        seen += images.shape[0]
    rate = seen / (time.perf_counter() - start)
    print(
        f"cached loading 160x160 batch={batch_size} loader_workers={workers} balanced={balanced} "
        f"augment={augment}: {rate:8.0f} images/s"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="images in the prepare benchmark")
    parser.add_argument("--load-images", type=int, default=4000, help="images in the loading benchmark's cache")
    parser.add_argument("--workers", type=int, default=1, help="prepare worker processes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_tree(tmp / "faces", args.images)
        time_prepare(root, tmp / "plain", "none", args.workers, 160)
        time_prepare(root, tmp / "mtcnn", "mtcnn", args.workers, 160)
        # A larger tree for the loading benchmark (prepared without MTCNN, which is not what is timed here).
        big = make_tree(tmp / "big", args.load_images, seed=1)
        time_prepare(big, tmp / "big-cache", "none", args.workers, 160)
        for workers, balanced, augment in ((0, False, False), (1, False, False), (0, True, False), (0, False, True)):
            time_loading(tmp / "big-cache", big, 256, workers, balanced, augment)


if __name__ == "__main__":
    main()
