"""CK+ (extended Cohn-Kanade): labelled sequences, subject ids as identities, subject-independent folds.

The last `last_frames` frames of each labelled sequence carry its label; the first frame is neutral
when `neutral_first` is set. Subjects are dealt into `folds` folds (seeded); `fold` is the test fold,
the next one the validation fold (when `val_fold`), and the rest is training. No subject is in two folds.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from factorlab.data.records import (
    Problems,
    Sample,
    Scan,
    Source,
    SourceConfig,
    Table,
    check_image_file,
    require_dir,
)

#: CK+ emotion code -> canonical expression class name.
EMOTIONS = {0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class CKPlusConfig(SourceConfig):
    """Options of the CK+ data set."""

    align: Literal["mtcnn", "none"] = Field(
        "mtcnn", description="'mtcnn' crops the face MTCNN finds (frames are 640x490); 'none' keeps the central square."
    )
    last_frames: int = Field(3, ge=1, description="How many frames at the end of a labelled sequence carry its label.")
    neutral_first: bool = Field(True, description="Label the first frame of each labelled sequence 'neutral'.")
    folds: int = Field(10, ge=2, description="Number of subject-independent folds.")
    fold: int = Field(0, ge=0, description="The test fold (0-based); must be below `folds`.")
    val_fold: bool = Field(True, description="Use the fold after `fold` as the validation split (else val is empty).")
    seed: int = Field(0, description="Seed that deals subjects into folds.")

    @model_validator(mode="after")
    def _fold_in_range(self) -> CKPlusConfig:
        if self.fold >= self.folds:
            raise ValueError(f"fold={self.fold} must be below folds={self.folds}")
        if self.val_fold and self.folds < 3:
            raise ValueError("val_fold needs folds >= 3 (one test fold, one validation fold, the rest for training)")
        return self


def scan(config: CKPlusConfig) -> Scan:
    """List the labelled frames of every labelled sequence, with subject ids as identities."""
    images, emotions = config.root / "cohn-kanade-images", config.root / "Emotion"
    require_dir(config.root, "CK+ root")
    require_dir(images, "CK+ image folder")
    require_dir(emotions, "CK+ label folder")
    problems = Problems(config.on_error)
    found: list[tuple[str, str, int]] = []  # (relative image path, subject, code)
    for label_file in sorted(emotions.glob("*/*/*_emotion.txt")):
        subject, sequence = label_file.parent.parent.name, label_file.parent.name
        where = f"{label_file}:1"
        code = emotion_code(label_file.read_text(errors="replace"), where, problems)
        if code is None:
            continue
        folder = images / subject / sequence
        frames = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not frames:
            problems(where, f"its sequence folder {folder} holds no images")
            continue
        labelled = frames[-config.last_frames :]
        chosen = [(frame, code) for frame in labelled]
        if config.neutral_first and frames[0] not in labelled:
            chosen.insert(0, (frames[0], 0))
        for frame, frame_code in chosen:
            if check_image_file(frame, str(frame), problems):
                found.append((str(frame.relative_to(config.root)), subject, frame_code))
    subjects = sorted({subject for _, subject, _ in found})
    subject_id = {s: i for i, s in enumerate(subjects)}
    samples = [
        Sample(path, path, {"expression": code, "identity": subject_id[subject]}, group=subject)
        for path, subject, code in found
    ]
    return Scan(samples, {"expression": list(EMOTIONS.values()), "identity": subjects}, problems.skipped)


def emotion_code(text: str, where: str, problems: Problems) -> int | None:
    """The emotion code 0-7 from a label file's text such as '   3.0000000e+00', or None (reported)."""
    if not text.strip():
        problems(where, "label file is empty; expected one number such as 3.0000000e+00")
        return None
    try:
        value = float(text.split()[0])
    except ValueError:
        problems(where, f"label {text.strip()!r} is not a number such as 3.0000000e+00")
        return None
    if not math.isfinite(value) or value != int(value) or int(value) not in EMOTIONS:
        problems(where, f"label {value:g} is out of range: CK+ emotion codes are 0-7")
        return None
    return int(value)


def subject_folds(subjects: list[str], folds: int, seed: int) -> dict[str, int]:
    """Deal the sorted subjects, shuffled by `seed`, round-robin into `folds` folds."""
    order = np.random.default_rng(seed).permutation(len(subjects))
    return {sorted(subjects)[j]: position % folds for position, j in enumerate(order)}


def select(config: CKPlusConfig, table: Table, split: str) -> np.ndarray:
    """Subject-independent folds: test = `fold`, val = the next fold, train = the others."""
    # every listed subject (a cache keeps them all, even one whose frames prepare skipped), so the
    # folds from a cache are the folds from the files
    subjects = sorted(set(table.classes.get("identity", [])) | set(table.groups.tolist()))
    fold_of = subject_folds(subjects, config.folds, config.seed)
    folds = np.array([fold_of[g] for g in table.groups], dtype=np.int64)
    test, val = config.fold, (config.fold + 1) % config.folds if config.val_fold else -1
    if split == "test":
        return np.nonzero(folds == test)[0]
    if split == "val":
        return np.nonzero(folds == val)[0]
    return np.nonzero((folds != test) & (folds != val))[0]


SOURCE = Source("ckplus", CKPlusConfig, scan, "CK+ (expression + identity; subject-independent folds)", select=select)

build = SOURCE.build
