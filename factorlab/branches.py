"""Branches: trunk features -> a named code (the paper's B_exp and B_non-exp are `conv4`)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from factorlab.errors import RecipeError
from factorlab.recipe import Size

Four = tuple[Size, Size, Size, Size]


class Conv4Config(BaseModel):
    """Options of the `conv4` branch.

    Defaults: on the paper's trunk (Inception-ResNet-V1 cut at repeat_2, 896x8x8 at 160x160) the strides
    1, 2, 1, 2 halve the map twice, 8 -> 4 -> 2, and the widths narrow 896 channels to 128, so the code is
    128x2x2 = 512 values: the size of the trunk's own face embedding, at 3.1M parameters per branch.
    On small_cnn at 64x64 (256x4x4) the same branch gives a 128x1x1 code.
    """

    model_config = ConfigDict(extra="forbid")

    widths: Four = Field((256, 256, 128, 128), description="Output channels of the four conv layers.")
    strides: Four = Field((1, 2, 1, 2), description="Strides of the four conv layers.")
    kernel_size: int = Field(3, ge=1, description="Kernel size of every conv layer; padding is kernel_size // 2.")
    negative_slope: float = Field(
        0.2,
        ge=0.0,
        description="Slope of the leaky ReLUs for negative inputs (paper: unstated; tf.nn.leaky_relu's 0.2).",
    )


class MLPBranchConfig(BaseModel):
    """Options of the `mlp` branch."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[Size] = Field(default_factory=lambda: [512], description="Sizes of the hidden layers.")
    out_features: int = Field(256, ge=1, description="Size of the code.")
    negative_slope: float = Field(0.2, ge=0.0, description="Slope of the leaky ReLUs for negative inputs.")


class IdentityConfig(BaseModel):
    """Options of the `identity` branch."""

    model_config = ConfigDict(extra="forbid")

    flatten: bool = Field(False, description="Flatten the features to (B, C*H*W) instead of passing them as they are.")


def conv4(config: Conv4Config, *, in_shape: tuple[int, ...]) -> nn.Sequential:
    """Four conv layers, each followed by a leaky ReLU (the paper's branch): (B, C, H, W) -> (B, C', H', W')."""
    if len(in_shape) != 3:
        raise RecipeError(
            f"branch conv4 needs a spatial feature map (C, H, W) from the encoder, got shape {tuple(in_shape)}. "
            f"Use branch = 'mlp' for flat features, or an encoder that returns a feature map."
        )
    layers: list[nn.Module] = []
    in_channels = in_shape[0]
    for width, stride in zip(config.widths, config.strides, strict=True):
        conv = nn.Conv2d(in_channels, width, config.kernel_size, stride=stride, padding=config.kernel_size // 2)
        layers += [conv, nn.LeakyReLU(config.negative_slope, inplace=True)]
        in_channels = width
    return nn.Sequential(*layers)


def mlp(config: MLPBranchConfig, *, in_shape: tuple[int, ...]) -> nn.Sequential:
    """Flatten + linear layers, each followed by a leaky ReLU: features -> (B, out_features)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for size in [*config.hidden, config.out_features]:
        layers += [nn.Linear(width, size), nn.LeakyReLU(config.negative_slope, inplace=True)]
        width = size
    return nn.Sequential(*layers)


def identity(config: IdentityConfig, *, in_shape: tuple[int, ...]) -> nn.Module:
    """The trunk's features are the code (optionally flattened)."""
    return nn.Flatten() if config.flatten else nn.Identity()


KIND = "branches"
PARTS = [
    ("conv4", conv4, Conv4Config, "Four conv layers, each followed by a leaky ReLU (the paper's B_exp / B_non-exp)."),
    ("mlp", mlp, MLPBranchConfig, "Flatten + linear layers with leaky ReLU."),
    ("identity", identity, IdentityConfig, "The encoder's features, unchanged (or flattened), are the code."),
]
