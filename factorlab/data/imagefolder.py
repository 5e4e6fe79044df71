"""Image folders: `root/<class>/<image>` (or `root/{train,val,test}/<class>/<image>`) labelling one factor.

With `factor = "identity"` this reads CASIA-WebFace-style trees (one folder per identity). Folder
names map to the factor's class names through `class_map` (names not in it are used as they are).
Without train/val/test folders, `val_fraction` and `test_fraction` of the images are held out by a
seeded hash of their paths.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from factorlab.data.records import (
    SPLITS,
    Problems,
    Sample,
    Scan,
    Source,
    SourceConfig,
    Table,
    check_image_file,
    holdout_mask,
    require_dir,
)
from factorlab.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderConfig(SourceConfig):
    """Options of an image-folder data set."""

    factor: str = Field("expression", description="The factor the folder names label, e.g. 'expression' or 'identity'.")
    class_map: dict[str, str] = Field(
        default_factory=dict,
        description="Folder name -> class name, e.g. {Happiness = 'happy'}; others map to themselves.",
    )
    align: Literal["none", "mtcnn"] = Field(
        "none", description="'none' keeps the central square; 'mtcnn' detects the face."
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Held-out fraction for 'val' (no train/val/test folders)."
    )
    test_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Held-out fraction for 'test' (no train/val/test folders)."
    )
    seed: int = Field(0, description="Seed of the hold-out.")


def split_folders(config: ImageFolderConfig) -> list[tuple[str, str]]:
    """(part, folder relative to root): the train/val/test folders when root has them, else root itself."""
    subdirs = {p.name for p in config.root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in subdirs and subdirs <= set(SPLITS):
        return [(part, part) for part in SPLITS if part in subdirs]
    return [("", "")]


def scan(config: ImageFolderConfig) -> Scan:
    """One sample per image file; the class is its folder's (mapped) name."""
    require_dir(config.root, "image-folder root")
    problems, dropped, found = Problems(config.on_error), {}, []
    for part, folder in split_folders(config):
        base = config.root / folder
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            name = config.class_map.get(class_dir.name, class_dir.name)
            for path in sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    dropped["files without an image suffix"] = dropped.get("files without an image suffix", 0) + 1
                    continue
                if check_image_file(path, str(path), problems):
                    found.append((str(path.relative_to(config.root)), name, part))
    if not found and not problems.skipped:
        raise DataError(
            f"image-folder root {config.root} holds no <class>/<image> files; see docs/datasets/imagefolder.md"
        )
    classes = sorted({name for _, name, _ in found})
    class_id = {c: i for i, c in enumerate(classes)}
    group = config.factor == "identity"
    samples = [
        Sample(path, path, {config.factor: class_id[name]}, part, group=name if group else "")
        for path, name, part in found
    ]
    return Scan(samples, {config.factor: classes}, problems.skipped, dropped)


def select(config: ImageFolderConfig, table: Table, split: str) -> np.ndarray:
    """The split's folder, or a seeded hash hold-out (test first, then val) when there are no split folders."""
    if (table.parts != "").any():
        return np.nonzero(table.parts == split)[0]
    test = holdout_mask(table.sources, config.test_fraction, config.seed)
    val = holdout_mask(table.sources, config.val_fraction / max(1e-12, 1 - config.test_fraction), config.seed + 1)
    chosen = {"test": test, "val": val & ~test, "train": ~val & ~test}[split]
    return np.nonzero(chosen)[0]


SOURCE = Source(
    "imagefolder", ImageFolderConfig, scan, "any root/<class>/<image> tree (CASIA-WebFace too)", select=select
)

build = SOURCE.build
