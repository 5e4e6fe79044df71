"""FER2013: one CSV whose rows hold the 48x48 grayscale pixels; Usage gives the split.

Training -> train, PublicTest -> val, PrivateTest -> test (the usual protocol).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from factorlab.data.records import (
    AlignMode,
    Problems,
    Sample,
    Scan,
    Source,
    SourceConfig,
    Table,
    csv_records,
    require_dir,
    require_file,
)

#: FER2013 emotion id -> canonical expression class name (FER2013 has no contempt).
EMOTIONS = {0: "anger", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}
#: FER2013 Usage -> split.
USAGES = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
COLUMNS = ("emotion", "pixels", "Usage")
SIDE = 48


class FER2013Config(SourceConfig):
    """Options of the FER2013 data set."""

    file: str = Field("fer2013.csv", description="Name of the CSV file under root.")


def scan(config: FER2013Config) -> Scan:
    """Parse every row: label, 48x48 pixels and Usage."""
    require_dir(config.root, "FER2013 root")
    path = config.root / config.file
    require_file(path, "FER2013 file")
    problems, samples = Problems(config.on_error), []
    for where, line, value in csv_records(path, COLUMNS, COLUMNS, problems):
        if not value["emotion"].isdigit() or int(value["emotion"]) not in EMOTIONS:
            problems(where, f"emotion {value['emotion']!r} is out of range: FER2013 labels are 0-6")
            continue
        if value["Usage"] not in USAGES:
            problems(where, f"Usage {value['Usage']!r} is not one of {', '.join(USAGES)}")
            continue
        words = value["pixels"].split()
        try:
            pixels = np.array(words, dtype=np.int64)
        except (ValueError, OverflowError):  # not integers, or past int64
            pixels = None
        if pixels is None or pixels.size != SIDE * SIDE or pixels.min() < 0 or pixels.max() > 255:
            what = f"found {len(words)} values" + ("" if pixels is not None else ", not all of them integers")
            problems(where, f"pixels must be {SIDE * SIDE} integers 0-255 (48x48); {what}")
            continue
        image = pixels.astype(np.uint8).reshape(SIDE, SIDE)
        label, part = int(value["emotion"]), USAGES[value["Usage"]]
        source = f"{config.file}:{line}"
        samples.append(Sample(source, where, {"expression": label}, part, pixels=image))
    return Scan(samples, {"expression": list(EMOTIONS.values())}, problems.skipped)


def read(config: FER2013Config, sample: Sample) -> np.ndarray:
    """The row's grayscale pixels as RGB."""
    return np.repeat(sample.pixels[:, :, None], 3, axis=2)


def select(config: FER2013Config, table: Table, split: str) -> np.ndarray:
    """The rows whose Usage maps to `split`."""
    return np.nonzero(table.parts == split)[0]


def align(config: FER2013Config) -> AlignMode:
    return "none"  # FER2013 faces are already registered 48x48 crops


SOURCE = Source(
    "fer2013", FER2013Config, scan, "FER2013 (7 expressions, 48x48 grayscale)", read=read, select=select, align=align
)

build = SOURCE.build
