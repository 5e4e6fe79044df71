"""From a recipe's [data] section to batches on the device: data sets, epoch order, augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from factorlab.data.base import FactorDataset
from factorlab.errors import DataError
from factorlab.factors import Factor


def build_dataset(recipe, split: str, factors: dict[str, Factor]) -> FactorDataset:
    """The recipe's data set for `split` ("train", "val" or "test")."""
    from factorlab.plugins import get_host

    entry = get_host().get("datasets", recipe.data.dataset)
    dataset = entry.factory(recipe.data.options, split=split, image_size=recipe.data.image_size, factors=factors)
    if len(dataset) == 0:
        raise DataError(
            f"data set {recipe.data.dataset!r} has no samples in its {split!r} split; check data.root and its options"
        )
    missing = [name for name in factors if name not in dataset.classes]
    if missing:
        raise DataError(
            f"data set {recipe.data.dataset!r} has no labels for factor(s) {missing}; it labels {sorted(dataset.classes)}"
        )
    return dataset


def to_float_images(images) -> torch.Tensor:
    """uint8 images (N, H, W, 3), an array or a list of them -> float (N, 3, H, W) in [0, 1], as encoders take."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)


def dataset_images(dataset: FactorDataset, indices) -> torch.Tensor:
    """The images of `indices` of a data set as float (N, 3, H, W) in [0, 1]."""
    return to_float_images([dataset.image(int(i)) for i in indices])


def make_loader(
    dataset: Dataset, order: np.ndarray, batch_size: int, *, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader over `order` (already sharded for this process), full batches only."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order.tolist(),  # any sized iterable of indices is a sampler
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def eval_loader(dataset: Dataset, batch_size: int, *, num_workers: int = 0) -> DataLoader:
    """A DataLoader over the whole split in order (last batch may be short)."""
    # its own generator: drawing worker seeds from the global RNG would make a resumed run differ
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
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
