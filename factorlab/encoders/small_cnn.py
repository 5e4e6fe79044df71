"""A small, fast CNN trunk for tests and the CPU quickstart."""

from __future__ import annotations

from torch import Tensor, nn

from factorlab.builtins.encoders import SmallCNNConfig  # their options live with their registration


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
