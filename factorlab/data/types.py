"""The plain data types the real data sets, face alignment and the cache share (a leaf: imports no factorlab module).

`records` (listing and split selection), `align` (face crops) and `cache` (prepared shards) all use
these; keeping them here lets each of those modules import the others at the top without a cycle.
They stay importable from `factorlab.data.records`, where they were defined before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

AlignMode = Literal["none", "box", "landmarks", "mtcnn"]


@dataclass
class Sample:
    """One labelled image as listed by a data set."""

    source: str  # image path relative to root, or "" when the pixels sit in the list file (FER2013)
    where: str  # what messages name: "list file:line" or the image path
    labels: dict[str, int]  # factor -> id over the data set's native class names
    part: str = ""  # official partition ("train", "test", ...), "" when the data set has none
    group: str = ""  # subject id, for subject-disjoint folds
    box: tuple[float, float, float, float] | None = None  # x, y, width, height of the face
    landmarks: np.ndarray | None = None  # (K, 2) points, x then y
    pixels: np.ndarray | None = None  # the image itself when the list file holds it (FER2013)


@dataclass
class Skipped:
    """A row or image that was left out, and why."""

    where: str
    reason: str


@dataclass
class Scan:
    """The samples of a data set, its native class names per factor, and what was left out."""

    samples: list[Sample]
    classes: dict[str, list[str]]
    skipped: list[Skipped] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # expected exclusions (e.g. AffectNet's "None"), counted


@dataclass
class Table:
    """Per-sample columns that split selection needs; built from a scan or read from a cache."""

    sources: list[str]
    wheres: list[str]
    parts: np.ndarray  # str
    groups: np.ndarray  # str
    labels: dict[str, np.ndarray]  # factor -> int64 native ids
    classes: dict[str, list[str]]

    @classmethod
    def from_samples(cls, samples: list[Sample], classes: dict[str, list[str]]) -> Table:
        """Columns of `samples`."""
        return cls(
            sources=[s.source for s in samples],
            wheres=[s.where for s in samples],
            parts=np.array([s.part for s in samples], dtype=str),
            groups=np.array([s.group for s in samples], dtype=str),
            labels={f: np.array([s.labels[f] for s in samples], dtype=np.int64) for f in classes},
            classes=classes,
        )

    def __len__(self) -> int:
        return len(self.sources)
