"""Class-balanced sampling and face-safe augmentation applied to whole batches on the device.

AffectNet's training list is ~35:1 imbalanced (happy vs contempt); drawing each class equally often
is what strong results use. The augmentations are the ones that keep a face a face with the same
expression and identity: horizontal flip, a small random crop resized back, and brightness /
contrast / saturation jitter (no hue shift, which turns skin an unnatural colour; no large rotation).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from factorlab.errors import DataError

GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights 1 / (count of its class), so every present class has the same total weight."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        raise DataError("class-balanced sampling needs at least one labelled sample")
    counts = np.bincount(labels)
    return 1.0 / counts[labels]


def epoch_order(labels: np.ndarray | None, size: int, *, seed: int, epoch: int, balanced: bool = False) -> np.ndarray:
    """The sample order of one epoch: a seeded permutation, or a class-balanced draw with replacement.

    A pure function of (seed, epoch), so a resumed run and every process of a distributed run agree.
    """
    rng = np.random.default_rng([seed, epoch])
    if not balanced:
        return rng.permutation(size)
    weights = class_weights(labels)
    return rng.choice(size, size=size, replace=True, p=weights / weights.sum())


class FaceAugment(nn.Module):
    """Random flip, small crop and colour jitter for a batch (B, 3, H, W) of uint8 or [0, 1] float images.

    Returns float images in [0, 1] of the same size, on the input's device; each image draws its own
    parameters. `crop` is the largest fraction of the side that is cut away before resizing back;
    `color_jitter` the largest relative change of brightness, contrast and saturation.
    """

    def __init__(self, flip: bool = False, crop: float = 0.0, color_jitter: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= crop < 1.0 or not 0.0 <= color_jitter <= 1.0:
            raise ValueError(f"crop must be in [0, 1) and color_jitter in [0, 1]; got {crop}, {color_jitter}")
        self.flip, self.crop, self.color_jitter = flip, crop, color_jitter

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        b, device = x.shape[0], x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(b, device=device, generator=generator)

        flip = uniform(0.0, 1.0) < 0.5 if self.flip else torch.zeros(b, dtype=torch.bool, device=device)
        if self.crop > 0:
            # One batched resampling does crop, resize back and flip: the grid maps output to input coordinates.
            side = uniform(1.0 - self.crop, 1.0)
            shift_x, shift_y = uniform(-1.0, 1.0) * (1 - side), uniform(-1.0, 1.0) * (1 - side)
            theta = torch.zeros(b, 2, 3, device=device)
            theta[:, 0, 0] = torch.where(flip, -side, side)
            theta[:, 1, 1] = side
            theta[:, 0, 2], theta[:, 1, 2] = shift_x, shift_y
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        elif self.flip:
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.color_jitter > 0:
            j = self.color_jitter
            gray_weights = torch.tensor(GRAY, device=device).view(1, 3, 1, 1)
            x = x * uniform(1 - j, 1 + j).view(b, 1, 1, 1)
            mean = (x * gray_weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = (x - mean) * uniform(1 - j, 1 + j).view(b, 1, 1, 1) + mean
            gray = (x * gray_weights).sum(1, keepdim=True)
            x = (x - gray) * uniform(1 - j, 1 + j).view(b, 1, 1, 1) + gray
        return x.clamp(0.0, 1.0)
