"""Losses of the paper (eq. 1-3), as functions and as `nn.Module`s.

Every loss is mean-reduced over the batch and returns a float32 scalar whatever the input dtype:
log-softmax and squared errors are computed in float32 with autocast switched off, so bf16/fp16
logits up to +-1e4 stay finite. Nothing here synchronises with the host (no `.item()`, no
data-dependent shapes), so each loss compiles with `torch.compile(fullgraph=True)`.

- `classification_loss`: L_exp (eq. 1), cross-entropy of a head's logits to the labels.
- `adversary_loss`: L_adv_exp (eq. 2), the same cross-entropy, for the adversary's own step.
- `uniform_confusion`: L_adv_En (eq. 2), cross-entropy of the adversary's prediction against the
  uniform distribution, `-(1/K) sum_i log p_i`; minimal (= log K) when the adversary is maximally unsure.
- `reconstruction_loss`: L_r, the paper's squared L2 error (see `ReconstructionLoss` for the reduction).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from factorlab.builtins.parts import ReconstructionConfig, Reduction  # their options live with their registration


def _log_softmax32(logits: Tensor) -> Tensor:
    # autocast would otherwise be free to run this in bf16/fp16, where log p of a logit 1e4 below the max overflows
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.log_softmax(logits.float(), dim=-1)


def uniform_confusion(logits: Tensor) -> Tensor:
    """Cross-entropy of softmax(logits) against the uniform distribution, mean over the batch (L_adv_En)."""
    return -_log_softmax32(logits).mean(dim=-1).mean()


def adversary_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of the adversary's logits to the true labels, mean over the batch (L_adv_exp)."""
    return F.nll_loss(_log_softmax32(logits), target)


def classification_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of a head's logits to the labels, mean over the batch (L_exp)."""
    return F.nll_loss(_log_softmax32(logits), target)


def reconstruction_loss(
    x: Tensor, x_hat: Tensor, kind: Literal["l2", "l1"] = "l2", reduction: Reduction = "mean"
) -> Tensor:
    """Reconstruction error of `x_hat` against `x` in float32: squared (l2) or absolute (l1).

    `reduction="mean"` averages over every element, so the loss does not grow with the image size and
    beta_rec keeps its meaning across resolutions; `"image_sum"` sums over each image and averages over
    the batch, the paper's literal ||x - x'||^2 (= mean * C*H*W).
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        diff = x.float() - x_hat.float()
        err = diff.square() if kind == "l2" else diff.abs()
        if reduction == "image_sum":
            return err.flatten(1).sum(dim=1).mean()
        return err.mean()


class UniformConfusion(nn.Module):
    """`uniform_confusion` as a module: logits -> scalar."""

    def forward(self, logits: Tensor) -> Tensor:
        return uniform_confusion(logits)


class AdversaryLoss(nn.Module):
    """`adversary_loss` as a module: (logits, target) -> scalar."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return adversary_loss(logits, target)


class ClassificationLoss(nn.Module):
    """`classification_loss` as a module: (logits, target) -> scalar."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return classification_loss(logits, target)


class ReconstructionLoss(nn.Module):
    """`reconstruction_loss` as a module: (x, x_hat) -> scalar."""

    def __init__(self, kind: Literal["l2", "l1"] = "l2", reduction: Reduction = "mean") -> None:
        super().__init__()
        if kind not in ("l2", "l1"):
            raise ValueError(f"ReconstructionLoss kind must be 'l2' or 'l1', got {kind!r}")
        if reduction not in ("mean", "image_sum"):
            raise ValueError(f"ReconstructionLoss reduction must be 'mean' or 'image_sum', got {reduction!r}")
        self.kind = kind
        self.reduction = reduction

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return reconstruction_loss(x, x_hat, self.kind, self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, reduction={self.reduction!r}"


def l2(config: ReconstructionConfig) -> ReconstructionLoss:
    """Squared error (the paper's L_r)."""
    return ReconstructionLoss("l2", config.reduction)


def l1(config: ReconstructionConfig) -> ReconstructionLoss:
    """Absolute error."""
    return ReconstructionLoss("l1", config.reduction)
