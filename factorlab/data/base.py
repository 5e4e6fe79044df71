"""The data-set contract every registered data set follows.

A registered data-set factory is called as

    factory(config, *, split: str, image_size: int, factors: dict[str, Factor]) -> FactorDataset

`split` is "train", "val" or "test". `factors` holds the resolved factors the run uses; the data
set returns a label for each of them (and may return more). Labels are integer ids into
`dataset.classes[factor]`, which follow the factor's canonical class order when the factor has one
(`Factor.classes`); samples whose class is not among a factor's classes are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from factorlab.errors import DataError


class FactorDataset(Dataset):
    """Images with integer labels for one or more factors.

    `__getitem__(i)` returns `{"image": uint8 tensor (3, H, W), "<factor>": int, ...}`.
    Subclasses set `classes` (factor -> class names in label-id order) and implement
    `__len__`, `image(i)` and `labels(factor)`.
    """

    classes: dict[str, list[str]]

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, index: int) -> np.ndarray:
        """The image of sample `index` as uint8 (H, W, 3)."""
        raise NotImplementedError

    def labels(self, factor: str) -> np.ndarray:
        """All labels of `factor` as an int64 array of length len(self), without decoding images."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
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
        raise DataError(f"{where}: classes {missing} are not among its classes {list(native)}")
    lookup = np.full(len(native), -1, dtype=np.int64)
    for new_id, name in enumerate(target):
        lookup[list(native).index(name)] = new_id
    labels = np.asarray(labels, dtype=np.int64)
    mapped = lookup[labels]
    keep = mapped >= 0
    return keep, mapped[keep]
