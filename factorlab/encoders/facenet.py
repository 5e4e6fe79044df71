"""facenet-pytorch's Inception-ResNet-V1 (the paper's En_base), truncated at a named layer.

The trunk is the real `facenet_pytorch.InceptionResnetV1` module: it is built whole, its weights are
loaded (`factorlab.weights.load_inception_resnet_v1`), then every layer after `cut` is dropped so the
encoder holds no unused parameters. Images in [0, 1] are normalised on the device as facenet expects:
(255 x - 127.5) / 128.

Feature maps at 160x160 (WEIGHTS.md): conv2d_4b and repeat_1 256x17x17, mixed_6a and repeat_2 896x8x8,
mixed_7a, repeat_3 and block8 1792x3x3.

Default cut `repeat_2`: the paper puts four conv layers on top of the trunk, which needs a spatial map,
and an 8x8 map leaves room for them (1792x3x3 does not). Its 896 channels are late, face-specific
features from the VGGFace2 weights, yet before `mixed_7a`/`repeat_3`/`block8`, the stages closest to the
identity embedding, which VGGFace2 training pushes to discard expression. Measured at 160x160: the
trunk up to repeat_2 holds 9.6M of the full model's 23.5M parameters and costs 2.46 of its 2.83 GFLOP
(the later stages run on 3x3 maps).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
from torch import Tensor, nn

from factorlab.builtins.encoders import InceptionResnetV1Config  # their options live with their registration
from factorlab.errors import RecipeError

# InceptionResnetV1's layers in forward order, up to the last one with a spatial output
LAYERS = (
    "conv2d_1a",
    "conv2d_2a",
    "conv2d_2b",
    "maxpool_3a",
    "conv2d_3b",
    "conv2d_4a",
    "conv2d_4b",
    "repeat_1",
    "mixed_6a",
    "repeat_2",
    "mixed_7a",
    "repeat_3",
    "block8",
)
# layers that change the spatial size: (kernel, stride, padding); the others keep it
_RESIZING = {
    "conv2d_1a": (3, 2, 0),
    "conv2d_2a": (3, 1, 0),
    "maxpool_3a": (3, 2, 0),
    "conv2d_4a": (3, 1, 0),
    "conv2d_4b": (3, 2, 0),
    "mixed_6a": (3, 2, 0),
    "mixed_7a": (3, 2, 0),
}


def feature_size(image_size: int, cut: str) -> int:
    """Side of the trunk's square feature map for a square input of `image_size`, cut after `cut`."""
    size = image_size
    for name in LAYERS[: LAYERS.index(cut) + 1]:
        if name in _RESIZING:
            kernel, stride, padding = _RESIZING[name]
            size = (size + 2 * padding - kernel) // stride + 1
    return size


def min_image_size(cut: str) -> int:
    """Smallest square input that leaves a non-empty feature map after `cut`."""
    size = 1
    while feature_size(size, cut) < 1:
        size += 1
    return size


class InceptionResnetV1Encoder(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> the truncated trunk's feature map (B, C, h, w)."""

    def __init__(self, trunk: nn.Sequential, *, freeze_bn: bool, freeze: bool) -> None:
        super().__init__()
        self.trunk = trunk
        self.freeze_bn = freeze_bn
        self.freeze = freeze
        if freeze:
            self.trunk.requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionResnetV1Encoder:
        super().train(mode)
        if self.freeze_bn:
            for module in self.trunk.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        x = (images - 0.5) * (255.0 / 128.0)  # = (255 x - 127.5) / 128, facenet's fixed_image_standardization
        if self.freeze:
            with torch.no_grad():  # a frozen trunk needs no activations kept for backward
                return self.trunk(x)
        return self.trunk(x)

    def extra_repr(self) -> str:
        return f"freeze_bn={self.freeze_bn}, freeze={self.freeze}"


def inception_resnet_v1(config: InceptionResnetV1Config, *, image_size: int) -> InceptionResnetV1Encoder:
    """facenet-pytorch's Inception-ResNet-V1 truncated at `cut` (the paper's En_base)."""
    smallest = min_image_size(config.cut)
    if image_size < smallest:
        raise RecipeError(
            f"data.image_size = {image_size} is too small for encoder inception_resnet_v1 cut at {config.cut!r}: "
            f"the feature map would be empty. Use data.image_size >= {smallest} or an earlier encoder.cut."
        )
    # imported here: facenet_pytorch takes ~2 s to import and only this encoder needs it
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    full = InceptionResnetV1()  # random init; never lets facenet-pytorch download anything itself
    if config.weights != "none":
        from factorlab.weights import load_inception_resnet_v1, needs_frozen_bn

        load_inception_resnet_v1(full, config.weights)
        if config.freeze_bn is False and needs_frozen_bn(config.weights):
            warnings.warn(
                f"encoder.freeze_bn = false with weights {config.weights!r}, whose BatchNorm is folded into the "
                f"convs (running mean 0, variance 1): training BN on batch statistics discards the pretrained "
                f"normalisation. Set encoder.freeze_bn = true (or 'auto') unless this is what you want.",
                stacklevel=2,
            )
    kept = LAYERS[: LAYERS.index(config.cut) + 1]
    trunk = nn.Sequential(OrderedDict((name, getattr(full, name)) for name in kept))
    freeze_bn = (config.weights != "none" or config.freeze) if config.freeze_bn == "auto" else config.freeze_bn
    encoder = InceptionResnetV1Encoder(trunk, freeze_bn=freeze_bn, freeze=config.freeze)
    return encoder.train()
