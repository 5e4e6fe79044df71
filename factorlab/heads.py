"""Heads: supervised classifiers code -> factor logits (the paper's C_exp is `linear`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from factorlab.recipe import Size


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


class LinearHeadConfig(BaseModel):
    """Options of the `linear` head."""

    model_config = ConfigDict(extra="forbid")

    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the code before the linear layer (paper: 0).")


class MLPHeadConfig(BaseModel):
    """Options of the `mlp` head."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[Size] = Field(default_factory=lambda: [256], description="Sizes of the hidden layers (ReLU).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


def linear(config: LinearHeadConfig, *, in_features: int, num_classes: int) -> nn.Sequential:
    """Flatten + one linear layer (the paper's C_exp)."""
    return mlp_classifier(in_features, num_classes, (), config.dropout)


def mlp(config: MLPHeadConfig, *, in_features: int, num_classes: int) -> nn.Sequential:
    """Flatten + a multi-layer perceptron."""
    return mlp_classifier(in_features, num_classes, config.hidden, config.dropout)


KIND = "heads"
PARTS = [
    ("linear", linear, LinearHeadConfig, "Flatten + one linear layer (the paper's C_exp)."),
    ("mlp", mlp, MLPHeadConfig, "Flatten + a multi-layer perceptron with ReLU."),
]
