"""AffectNet, both releases: the CSV lists with boxes and landmarks, and the `train_set`/`val_set` npy release.

The official validation set is the test split (500 images per class); `val_fraction` of the training
list is held out as the validation split. Ids 8-10 (None, Uncertain, No-Face) are not expressions:
they are dropped and counted.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

import numpy as np
from pydantic import Field

from factorlab.data.records import (
    Problems,
    Sample,
    Scan,
    Source,
    SourceConfig,
    check_image_file,
    csv_records,
    require_dir,
    require_file,
)
from factorlab.errors import DataError

#: AffectNet expression id -> canonical class name (ids 0-7; the canonical order is AffectNet's own).
EXPRESSIONS = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger", 7: "contempt"}
#: Ids that are not expressions; samples carrying them are dropped and counted.
NOT_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no-face"}
CSV_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
CSV_LISTS = {"train": "training.csv", "test": "validation.csv"}  # official validation = our test split
NPY_SETS = {"train": "train_set", "test": "val_set"}


class AffectNetConfig(SourceConfig):
    """Options of the AffectNet data set."""

    release: Literal["auto", "csv", "npy"] = Field(
        "auto",
        description="'csv' = Manually_Annotated_file_lists/*.csv + Manually_Annotated_Images/; 'npy' = train_set/ "
        "and val_set/ with per-image .npy annotations; 'auto' picks the one found under root.",
    )
    align: Literal["box", "landmarks", "mtcnn", "none"] = Field(
        "box",
        description="'box' crops the annotated face box; 'landmarks' aligns eyes, nose and mouth from the 68 "
        "landmarks; 'mtcnn' detects the face again; 'none' keeps the central square (the npy release is pre-cropped).",
    )
    val_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="Fraction of the training list held out as the 'val' split (seeded hash)."
    )
    seed: int = Field(0, description="Seed of the train/val hold-out.")


def find_release(config: AffectNetConfig) -> str:
    """'csv' or 'npy': the release given, or the one found under root."""
    require_dir(config.root, "AffectNet root")
    if config.release != "auto":
        return config.release
    if (config.root / "Manually_Annotated_file_lists").is_dir():
        return "csv"
    if (config.root / "train_set").is_dir() or (config.root / "val_set").is_dir():
        return "npy"
    raise DataError(
        f"AffectNet root {config.root} holds neither Manually_Annotated_file_lists/ (CSV release) nor train_set/ "
        "and val_set/ (npy release); see docs/datasets/affectnet.md"
    )


def scan(config: AffectNetConfig) -> Scan:
    """List AffectNet's samples (both official parts) with native expression ids."""
    problems, dropped = Problems(config.on_error), Counter()
    if find_release(config) == "csv":
        samples = [s for part, name in CSV_LISTS.items() for s in scan_csv(config, part, name, problems, dropped)]
    else:
        samples = [s for part, name in NPY_SETS.items() for s in scan_npy(config, part, name, problems, dropped)]
    return Scan(samples, {"expression": list(EXPRESSIONS.values())}, problems.skipped, dict(dropped))


def expression_id(text: str, where: str, problems: Problems, dropped: Counter) -> int | None:
    """The expression id 0-7, or None when the value is bad (reported) or 8-10 (dropped and counted)."""
    try:
        value = float(text)
    except ValueError:
        problems(where, f"expression {text!r} is not a number")
        return None
    if not math.isfinite(value) or value != int(value) or not 0 <= value <= 10:
        problems(where, f"expression {text} is out of range: AffectNet ids are 0-10")
        return None
    if int(value) in NOT_EXPRESSIONS:
        dropped[f"expression {int(value)} ({NOT_EXPRESSIONS[int(value)]})"] += 1
        return None
    return int(value)


def scan_csv(config: AffectNetConfig, part: str, name: str, problems: Problems, dropped: Counter) -> list[Sample]:
    """Samples of one CSV list file."""
    path = config.root / "Manually_Annotated_file_lists" / name
    require_file(path, "AffectNet list file")
    needed = ["subDirectory_filePath", "expression"]
    needed += {"box": ["face_x", "face_y", "face_width", "face_height"], "landmarks": ["facial_landmarks"]}.get(
        config.align, []
    )
    samples = []
    for where, _, value in csv_records(path, CSV_COLUMNS, needed, problems):
        label = expression_id(value["expression"], where, problems, dropped)
        if label is None:
            continue
        try:
            box = tuple(float(value[c]) for c in ("face_x", "face_y", "face_width", "face_height"))
        except ValueError:
            box = None
        if config.align == "box" and box is None:
            problems(where, "face box (face_x, face_y, face_width, face_height) is not numeric")
            continue
        landmarks = None
        if config.align == "landmarks":
            landmarks = parse_landmarks(value["facial_landmarks"], where, problems)
            if landmarks is None:
                continue
        source = f"Manually_Annotated_Images/{value['subDirectory_filePath']}"
        if not check_image_file(config.root / source, where, problems):
            continue
        samples.append(Sample(source, where, {"expression": label}, part, box=box, landmarks=landmarks))
    return samples


def parse_landmarks(text: str, where: str, problems: Problems) -> np.ndarray | None:
    """68 points from 'x;y;x;y;...', or None when malformed (reported)."""
    try:
        values = np.array([float(v) for v in text.split(";") if v.strip()])
    except ValueError:
        problems(where, "facial_landmarks is not a ';'-separated list of numbers")
        return None
    if values.size != 136:
        problems(where, f"facial_landmarks has {values.size} numbers, expected 136 (68 points as x;y)")
        return None
    return values.reshape(68, 2)


def scan_npy(config: AffectNetConfig, part: str, name: str, problems: Problems, dropped: Counter) -> list[Sample]:
    """Samples of one set of the npy release (images/<id>.jpg, annotations/<id>_exp.npy)."""
    images, annotations = config.root / name / "images", config.root / name / "annotations"
    require_dir(images, "AffectNet image folder")
    require_dir(annotations, "AffectNet annotation folder")
    samples = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        exp_file = annotations / f"{image.stem}_exp.npy"
        where = str(exp_file)
        try:
            text = str(np.load(exp_file).item())
        except FileNotFoundError:
            problems(where, f"annotation file is missing for image {image}")
            continue
        except (ValueError, OSError) as exc:
            problems(where, f"annotation file is not a readable .npy scalar ({exc})")
            continue
        label = expression_id(text, where, problems, dropped)
        if label is None:
            continue
        landmarks = None
        if config.align == "landmarks":
            try:
                landmarks = np.load(annotations / f"{image.stem}_lnd.npy").astype(np.float64).reshape(-1, 2)
            except (FileNotFoundError, ValueError, OSError) as exc:
                problems(str(annotations / f"{image.stem}_lnd.npy"), f"landmarks cannot be read ({exc})")
                continue
        source = str(image.relative_to(config.root))
        if check_image_file(image, str(image), problems):
            samples.append(Sample(source, where, {"expression": label}, part, landmarks=landmarks))
    return samples


SOURCE = Source("affectnet", AffectNetConfig, scan, "AffectNet (8 expressions; both releases)")

build = SOURCE.build
