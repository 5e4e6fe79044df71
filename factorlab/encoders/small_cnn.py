"""A small, fast CNN trunk for tests and the CPU quickstart."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from factorlab.recipe import Size


class SmallCNNConfig(BaseModel):
    """Options of the `small_cnn` encoder."""

    model_config = ConfigDict(extra="forbid")

    widths: list[Size] = Field(
        default_factory=lambda: [32, 64, 128, 256],
        min_length=1,
        description="Output channels of each stage; each stage is a stride-2 3x3 conv, a norm layer and ReLU, "
        "so the feature map is image_size / 2**len(widths) (64x64 -> 256x4x4 by default).",
    )
    norm: Literal["batch", "group", "none"] = Field(
        "batch",
        description="Normalisation after each conv: 'batch' (BatchNorm), 'group' (GroupNorm, 8 groups: "
        "independent of the batch, so a distributed run computes exactly what one process would), or 'none'.",
    )


class SmallCNN(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> features (B, widths[-1], H / 2**n, W / 2**n)."""

    def __init__(self, widths: list[int], norm: str = "batch") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            # no conv bias when a norm layer follows: its shift replaces it
            layers.append(nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(width))
            elif norm == "group":
                layers.append(nn.GroupNorm(min(8, width), width))
            layers.append(nn.ReLU(inplace=True))
            in_channels = width
        self.features = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images * 2.0 - 1.0)  # [0, 1] -> [-1, 1]


def small_cnn(config: SmallCNNConfig, *, image_size: int) -> SmallCNN:
    """A few stride-2 conv + BatchNorm + ReLU stages."""
    return SmallCNN(config.widths, config.norm)


PARTS = [
    ("small_cnn", small_cnn, SmallCNNConfig, "A small fast CNN (stride-2 conv, BatchNorm, ReLU stages) for tests."),
]
