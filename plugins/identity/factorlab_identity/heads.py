"""The `cosine` head: normalised code and class weights times a learned scale (face recognition's classifier)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from factorlab_identity import CosineHeadConfig


class CosineHead(nn.Module):
    """logits = scale * cos(code, class weight): the normalised-softmax classifier of face recognition."""

    def __init__(self, in_features: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, in_features) / in_features**0.5)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        cosine = nn.functional.normalize(code.flatten(1), dim=1) @ nn.functional.normalize(self.weight, dim=1).T
        return self.log_scale.exp() * cosine


def cosine_head(config: CosineHeadConfig, *, in_features: int, num_classes: int) -> CosineHead:
    """A cosine (normalised-softmax) classifier, for identity codes."""
    return CosineHead(in_features, num_classes, config.scale)
