"""From a recipe's [data] section to batches on the device: data sets, epoch order, augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from factorlab.data.base import FactorDataset
from factorlab.errors import DataError
from factorlab.factors import Factor, label_check


def build_dataset(recipe, split: str, factors: dict[str, Factor]) -> FactorDataset:
    """The recipe's data set for `split` ("train", "val" or "test").

    Factors with `derive` label themselves from the data set's ground truth; the others are labelled
    by the data set. What the registration declares was checked when the recipe was read (`label_check`);
    what the built data set really holds is checked here.
    """
    from factorlab.plugins import get_host

    name = recipe.data.dataset
    entry = get_host().get("datasets", name)
    native = {k: f for k, f in factors.items() if f.derive is None}
    derived = {k: f for k, f in factors.items() if f.derive is not None}
    dataset = entry.factory(recipe.data.options, split=split, image_size=recipe.data.image_size, factors=native)
    if len(dataset) == 0:
        raise DataError(f"data set {name!r} has no samples in its {split!r} split; check data.root and its options")
    missing = [k for k in native if k not in dataset.classes]
    if missing:
        raise DataError(f"data set {name!r} has no labels for factor(s) {missing}; it labels {sorted(dataset.classes)}")
    if derived:
        dataset = DerivedLabels(dataset, derived, name)
    return dataset


class DerivedLabels(FactorDataset):
    """A data set plus labels that factors derive from its ground truth (same samples, same order)."""

    def __init__(self, base: FactorDataset, factors: dict[str, Factor], name: str = "data set") -> None:
        truth = base.ground_truth()
        self.base = base
        self.classes = {k: v for k, v in base.classes.items() if k not in factors}
        self._derived: dict[str, np.ndarray] = {}
        self.unseen_classes = (
            base.unseen_classes
        )  # held-out classes of the wrapped set (identity), not the base default
        for key, factor in factors.items():
            problem = label_check(name, None, list(truth), factor)
            if problem:
                raise DataError(problem)
            ids = np.asarray(factor.derive(truth))
            if ids.shape != (len(base),) or not np.issubdtype(ids.dtype, np.integer):
                raise DataError(
                    f"factor {key!r}: derive(ground_truth) must return one integer class id per sample "
                    f"({len(base)}), got an array of shape {ids.shape} and dtype {ids.dtype}"
                )
            if len(ids) and (ids.min() < 0 or ids.max() >= len(factor.classes)):
                raise DataError(
                    f"factor {key!r}: derived class ids must lie in 0..{len(factor.classes) - 1} "
                    f"(its classes {list(factor.classes)}), got {int(ids.min())}..{int(ids.max())}"
                )
            self._derived[key] = ids.astype(np.int64)
            self.classes[key] = list(factor.classes)

    def __len__(self) -> int:
        return len(self.base)

    def image(self, index: int) -> np.ndarray:
        return self.base.image(index)

    def image_batch(self, indices: np.ndarray) -> np.ndarray:
        return self.base.image_batch(indices)

    def labels(self, factor: str) -> np.ndarray:
        return self._derived[factor] if factor in self._derived else self.base.labels(factor)

    def ground_truth(self) -> dict[str, np.ndarray]:
        truth = dict(self.base.ground_truth())
        truth.update({f"{k}_label": v for k, v in self._derived.items()})
        return truth

    def __getattr__(self, name: str):  # render_with, params, ... of the wrapped data set
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


def to_float_images(images) -> torch.Tensor:
    """uint8 images (N, H, W, 3), an array or a list of them -> float (N, 3, H, W) in [0, 1], as encoders take."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)


def dataset_images(dataset: FactorDataset, indices) -> torch.Tensor:
    """The images of `indices` of a data set as float (N, 3, H, W) in [0, 1]."""
    return to_float_images([dataset.image(int(i)) for i in indices])


class Batched(Dataset):
    """A FactorDataset whose DataLoader fetches each batch in one `get_batch` call (no per-sample collation)."""

    def __init__(self, dataset: FactorDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.dataset.get_batch(indices)


def _whole_batch(batch):
    return batch  # Batched already returns a collated batch


def _batched(dataset: Dataset) -> tuple[Dataset, object]:
    """(dataset, collate_fn): FactorDatasets fetch whole batches; other data sets collate as usual.

    A data set that defines its own `__getitem__` (as 0.1 plugins could, to add keys) keeps being read item by item.
    """
    own_items = isinstance(dataset, FactorDataset) and type(dataset).__getitem__ is not FactorDataset.__getitem__
    if isinstance(dataset, FactorDataset) and not own_items:
        return Batched(dataset), _whole_batch
    return dataset, None


def make_loader(
    dataset: Dataset, order: np.ndarray, batch_size: int, *, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader over `order` (already sharded for this process), full batches only."""
    source, collate = _batched(dataset)
    return DataLoader(
        source,
        batch_size=batch_size,
        sampler=order.tolist(),  # any sized iterable of indices is a sampler
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        collate_fn=collate,
    )


def eval_loader(dataset: Dataset, batch_size: int, *, num_workers: int = 0) -> DataLoader:
    """A DataLoader over the whole split in order (last batch may be short)."""
    source, collate = _batched(dataset)
    # its own generator: drawing worker seeds from the global RNG would make a resumed run differ
    return DataLoader(
        source,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
        collate_fn=collate,
    )


def to_device(
    batch: dict, device: torch.device, *, channels_last: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """uint8 images -> float [0, 1] on the device (normalised there, not in workers), labels -> int64."""
    images = batch["image"].to(device, non_blocking=True)
    images = images.float().div_(255.0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = {k: v.to(device, non_blocking=True).long() for k, v in batch.items() if k != "image"}
    return images, labels
