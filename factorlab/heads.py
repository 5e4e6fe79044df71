"""Heads: supervised classifiers code -> factor logits (the paper's C_exp is `linear`)."""

from __future__ import annotations

from torch import nn

from factorlab.builtins.parts import LinearHeadConfig, MLPHeadConfig  # their options live with their registration


def mlp_classifier(
    in_features: int, num_classes: int, hidden: list[int] | tuple[int, ...] = (), dropout: float = 0.0
) -> nn.Sequential:
    """Flatten, then (Linear, ReLU, Dropout) per hidden size, then Linear to `num_classes` logits."""
    layers: list[nn.Module] = [nn.Flatten()]  # codes may be (B, C, H, W)
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    if dropout > 0 and not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def linear(config: LinearHeadConfig, *, in_features: int, num_classes: int) -> nn.Sequential:
    """Flatten + one linear layer (the paper's C_exp)."""
    return mlp_classifier(in_features, num_classes, (), config.dropout)


def mlp(config: MLPHeadConfig, *, in_features: int, num_classes: int) -> nn.Sequential:
    """Flatten + a multi-layer perceptron."""
    return mlp_classifier(in_features, num_classes, config.hidden, config.dropout)
