"""RAF-DB (basic): EmoLabel/list_patition_label.txt (sic) with 1-based labels; train_/test_ names give the split.

`val_fraction` of the training images is held out as the validation split.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from factorlab.data.records import (
    Problems,
    Sample,
    Scan,
    Source,
    SourceConfig,
    check_image_file,
    require_dir,
    require_file,
)

#: RAF-DB basic label (1-based) -> canonical expression class name (RAF-DB has no contempt).
EMOTIONS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "anger", 7: "neutral"}
LIST_FILE = "EmoLabel/list_patition_label.txt"  # the official spelling


class RAFDBConfig(SourceConfig):
    """Options of the RAF-DB (basic) data set."""

    images: Literal["aligned", "original"] = Field(
        "aligned", description="'aligned' reads Image/aligned/<name>_aligned.jpg (100x100); 'original' Image/original/."
    )
    align: Literal["none", "mtcnn"] = Field(
        "none", description="'none' for the aligned images; 'mtcnn' to detect the face in the original images."
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of the training images held out as the 'val' split (seeded hash)."
    )
    seed: int = Field(0, description="Seed of the train/val hold-out.")


def image_path(config: RAFDBConfig, name: str) -> str:
    """Where the list file's `name` (e.g. train_00001.jpg) lives for the chosen image set."""
    if config.images == "aligned":
        stem, _, suffix = name.rpartition(".")
        return f"Image/aligned/{stem}_aligned.{suffix}"
    return f"Image/original/{name}"


def scan(config: RAFDBConfig) -> Scan:
    """Parse the list file: image name, 1-based label; the name's prefix (train_/test_) is the part."""
    require_dir(config.root, "RAF-DB root")
    path = config.root / LIST_FILE
    require_file(path, "RAF-DB list file")
    problems, samples = Problems(config.on_error), []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        where = f"{path}:{number}"
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            problems(where, f"has {len(fields)} field, expected 2 (image name and label, e.g. 'train_00001.jpg 5')")
            continue
        name, text = fields[0], fields[1]
        if text == "NULL":
            problems(where, "label is NULL")
            continue
        if not text.isdigit() or int(text) not in EMOTIONS:
            problems(where, f"label {text!r} is out of range: RAF-DB basic labels are 1-7")
            continue
        part = name.split("_")[0]
        if part not in ("train", "test"):
            problems(where, f"image name {name!r} starts with neither train_ nor test_")
            continue
        source = image_path(config, name)
        if check_image_file(config.root / source, where, problems):
            samples.append(Sample(source, where, {"expression": int(text) - 1}, part))
    return Scan(samples, {"expression": [EMOTIONS[k] for k in sorted(EMOTIONS)]}, problems.skipped)


SOURCE = Source("rafdb", RAFDBConfig, scan, "RAF-DB basic (7 expressions)")

build = SOURCE.build
