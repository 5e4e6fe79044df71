"""The data-set contract every registered data set follows.

A registered data-set factory is called as

    factory(config, *, split: str, image_size: int, factors: dict[str, Factor]) -> FactorDataset

`split` is "train", "val" or "test". `factors` holds the resolved factors the run uses; the data
set returns a label for each of them (and may return more). Labels are integer ids into
`dataset.classes[factor]`, which follow the factor's canonical class order when the factor has one
(`Factor.classes`); samples whose class is not among a factor's classes are dropped and counted.

A factor without canonical classes (identity) takes as classes the names its TRAIN split shows, in
every split, so classifiers (heads, adversaries and the adversary's uniform target) are built over the
classes training can see: a subject held out for val or test is never a class. Its samples keep a
distinct negative label, -(1 + j) for `dataset.unseen_classes[factor][j]`, so evaluation can still tell
held-out subjects apart (verification, probes) while no classifier is trained or scored on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from factorlab.errors import DataError

if TYPE_CHECKING:
    import torch


class FactorDataset:
    """Images with integer labels for one or more factors: a map-style data set torch's DataLoader reads.

    `__getitem__(i)` returns `{"image": uint8 tensor (3, H, W), "<factor>": int, ...}`.
    Subclasses set `classes` (factor -> class names in label-id order) and implement
    `__len__`, `image(i)` and `labels(factor)`; a data set that keeps ground truth (e.g. SynthFaces'
    continuous yaw) returns it from `ground_truth()`, from which factors may derive their own labels.
    (It does not subclass torch's `Dataset`, so that listing and validating data sets never imports torch.)
    """

    classes: dict[str, list[str]]
    #: factor -> names of classes that only val/test show (label -(1 + j) is name j); see the module docstring
    unseen_classes: dict[str, list[str]] = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, index: int) -> np.ndarray:
        """The image of sample `index` as uint8 (H, W, 3)."""
        raise NotImplementedError

    def labels(self, factor: str) -> np.ndarray:
        """All labels of `factor` as an int64 array of length len(self), without decoding images."""
        raise NotImplementedError

    def ground_truth(self) -> dict[str, np.ndarray]:
        """Ground-truth values per sample (key -> array of length len(self)); none by default."""
        return {}

    def image_batch(self, indices: np.ndarray) -> np.ndarray:
        """The images of `indices` as one uint8 (N, H, W, 3) array (override with a faster gather if you can)."""
        return np.stack([self.image(int(i)) for i in indices])

    def get_batch(self, indices) -> dict[str, torch.Tensor]:
        """A training batch in one call: uint8 images (N, 3, H, W) and int64 labels, as the collated
        `__getitem__` samples would be. The loaders fetch whole batches this way (no per-sample collation)."""
        import torch

        indices = np.asarray(indices, dtype=np.int64)
        images = torch.from_numpy(np.ascontiguousarray(self.image_batch(indices))).permute(0, 3, 1, 2).contiguous()
        batch: dict[str, torch.Tensor] = {"image": images}
        for factor in self.classes:
            batch[factor] = torch.from_numpy(np.asarray(self.labels(factor))[indices].astype(np.int64))
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        import torch

        image = torch.from_numpy(np.ascontiguousarray(self.image(index))).permute(2, 0, 1)
        item: dict[str, torch.Tensor | int] = {"image": image}
        for factor in self.classes:
            item[factor] = int(self.labels(factor)[index])
        return item


def remap_labels(
    labels: np.ndarray, native: Sequence[str], target: Sequence[str], *, where: str = "data set"
) -> tuple[np.ndarray, np.ndarray]:
    """Map ids over `native` class names onto ids over `target` names.

    Returns `(keep, new_labels)`: a boolean mask of samples whose class is in `target`, and their
    new ids. A target name that the data set does not know is an error.
    """
    missing = [name for name in target if name not in native]
    if missing:
        raise DataError(
            f"{where}: the data set has no class {', '.join(map(repr, missing))} (it has {', '.join(native)}); "
            "choose the factor's classes it has (e.g. [factors.expression] classes = 7 for the seven basic "
            "expressions) or a data set with these classes"
        )
    lookup = np.full(len(native), -1, dtype=np.int64)
    for new_id, name in enumerate(target):
        lookup[list(native).index(name)] = new_id
    labels = np.asarray(labels, dtype=np.int64)
    mapped = lookup[labels]
    keep = mapped >= 0
    return keep, mapped[keep]


def train_split_classes(native: Sequence[str], train_ids: np.ndarray) -> tuple[list[str], list[str], np.ndarray]:
    """Classes of a factor without canonical classes: those its train split shows.

    `train_ids`: the native ids (over `native`) of the train split's samples. Returns `(classes, unseen,
    lookup)`: the native names the train split shows (in native order), the other names, and an array
    that maps a native id to its id over `classes`, or to -(1 + j) for `unseen[j]`.
    """
    seen = np.zeros(len(native), dtype=bool)
    seen[np.asarray(train_ids, dtype=np.int64)] = True
    lookup = np.empty(len(native), dtype=np.int64)
    lookup[seen] = np.arange(int(seen.sum()))
    lookup[~seen] = -1 - np.arange(int((~seen).sum()))
    classes = [name for name, s in zip(native, seen, strict=True) if s]
    unseen = [name for name, s in zip(native, seen, strict=True) if not s]
    return classes, unseen, lookup


def evaluation_labels(labels: np.ndarray, classes: Sequence[str], unseen: Sequence[str]) -> tuple[np.ndarray, list]:
    """Labels and class names with the unseen classes appended (-(1 + j) -> len(classes) + j), for evaluation only."""
    labels = np.asarray(labels, dtype=np.int64)
    if not len(unseen):
        return labels, list(classes)
    return np.where(labels < 0, len(classes) - 1 - labels, labels), [*classes, *unseen]


def labels_for_evaluation(dataset, factor: str) -> tuple[np.ndarray, list[str]]:
    """A data set's labels of `factor` and class names, held-out classes appended (see `evaluation_labels`)."""
    unseen = getattr(dataset, "unseen_classes", {}).get(factor, [])
    return evaluation_labels(dataset.labels(factor), dataset.classes[factor], unseen)
