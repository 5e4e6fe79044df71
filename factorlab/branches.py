"""Branches: trunk features -> a named code (the paper's B_exp and B_non-exp are `conv4`)."""

from __future__ import annotations

import math

from torch import nn

from factorlab.builtins.parts import (  # their options live with their registration
    Conv4Config,
    IdentityConfig,
    MLPBranchConfig,
)
from factorlab.errors import RecipeError


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
