"""Decoders: concatenated codes -> image in [0, 1] (the paper's De is `deconv6`; `resup` is a stronger one).

The decoder's input is the channel concatenation of the codes (`concat_codes`): a flat code (B, D) is
viewed as (B, D, 1, 1) and, when other codes are spatial, repeated over their H x W.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from factorlab.builtins.parts import Deconv6Config, Five, ResUpConfig  # their options live with their registration
from factorlab.errors import RecipeError


def concat_codes(codes: Sequence[Tensor]) -> Tensor:
    """Channel-concatenate codes (B, D) or (B, C, H, W) into one (B, sum C, H, W) tensor."""
    maps = [c if c.dim() == 4 else c.flatten(1)[:, :, None, None] for c in codes]
    sizes = {tuple(m.shape[-2:]) for m in maps if m.shape[-2:] != (1, 1)}
    if len(sizes) > 1:
        raise RecipeError(
            f"codes with different spatial sizes {sorted(sizes)} cannot be concatenated for the decoder; "
            f"give the branches the same strides, or make all but one code flat."
        )
    h, w = sizes.pop() if sizes else (1, 1)
    return torch.cat([m.expand(-1, -1, h, w) for m in maps], dim=1)


def code_hw(in_shape: tuple[int, ...], decoder: str) -> tuple[int, int]:
    """The spatial size of the decoder's input: (1, 1) for flat codes (C,), (H, W) for maps (C, H, W)."""
    if len(in_shape) not in (1, 3):
        raise RecipeError(f"decoder {decoder} takes codes of shape (C,) or (C, H, W), got {tuple(in_shape)}")
    return (1, 1) if len(in_shape) == 1 else (in_shape[1], in_shape[2])


def code_grid(codes: Tensor | Sequence[Tensor], in_hw: tuple[int, int]) -> Tensor:
    """Codes (concatenated when several) as a (B, C, H, W) map of the decoder's input size."""
    x = codes if isinstance(codes, Tensor) else concat_codes(codes)
    if x.dim() == 2:
        x = x[:, :, None, None]
    if tuple(x.shape[-2:]) != in_hw:
        x = F.adaptive_avg_pool2d(x, in_hw)
    return x


def to_image_size(x: Tensor, image_size: int) -> Tensor:
    """Bilinearly resize a decoded image to `image_size` (a convex combination: it stays in [0, 1])."""
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x


class Deconv6(nn.Module):
    """Six ConvTranspose2d layers, leaky ReLU between them, sigmoid last: codes -> (B, 3, size, size) in [0, 1].

    Layer 1 (stride 1) maps the code map (h, w) onto a base grid of side s = ceil(size / 32): with kernel
    (s - h + 1, s - w + 1) it is exact, and on a 1x1 (flat) code it is a learned projection onto the grid,
    as in DCGAN. A code map larger than the grid is average-pooled down to it first. Layers 2-6 (kernel 4,
    stride 2, padding 1) each double the side: s * 32. Only when `size` is not a multiple of 32 is the
    image bilinearly resized to `size` at the end (a convex combination, so it stays in [0, 1]).
    """

    def __init__(self, in_channels: int, in_hw: tuple[int, int], image_size: int, widths: Five, slope: float) -> None:
        super().__init__()
        self.image_size = image_size
        self.grid = math.ceil(image_size / 32)
        self.in_hw = (min(in_hw[0], self.grid), min(in_hw[1], self.grid))
        h, w = self.in_hw
        channels = [in_channels, *widths, 3]
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_channels, widths[0], (self.grid - h + 1, self.grid - w + 1))]
        for c_in, c_out in zip(channels[1:-1], channels[2:], strict=True):
            layers += [nn.LeakyReLU(slope, inplace=True), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        layers.append(nn.Sigmoid())
        self.layers = nn.Sequential(*layers)

    def forward(self, codes: Tensor | Sequence[Tensor]) -> Tensor:
        x = code_grid(codes, self.in_hw)
        x = self.layers(x)
        return to_image_size(x, self.image_size)


def deconv6(config: Deconv6Config, *, in_shape: tuple[int, ...], image_size: int) -> Deconv6:
    """Six deconvolutions with leaky ReLU, sigmoid last (the paper's De); `in_shape` is (C,) or (C, H, W)."""
    hw = code_hw(in_shape, "deconv6")
    return Deconv6(in_shape[0], hw, image_size, config.widths, config.negative_slope)


def _norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer of `kind` over `channels` (group norm: up to 32 groups that divide `channels`)."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class ResBlockUp(nn.Module):
    """Pre-activation residual block that doubles the side: norm-act-up-conv3-norm-act-conv3, plus up-conv1 skip."""

    def __init__(self, c_in: int, c_out: int, norm: str, slope: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(norm, c_in),
            nn.LeakyReLU(slope),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(norm, c_out),
            nn.LeakyReLU(slope),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class ResUp(nn.Module):
    """Residual upsampling decoder: codes -> (B, 3, size, size) in [0, 1].

    A stem maps the code map onto a base grid of side s = ceil(size / 2**n) (n = len(widths)) with
    `widths[0]` channels, as `Deconv6` does (a transposed conv of kernel s - h + 1; a larger map is
    average-pooled first). Then n residual blocks (`ResBlockUp`), each doubling the side, with
    normalisation (group norm by default: independent of the batch, so a swap decodes the same alone
    or in a batch), and a norm-act-conv3x3 to 3 channels, sigmoid last. When size is not s * 2**n the
    image is bilinearly resized (a convex combination: it stays in [0, 1]).
    """

    def __init__(
        self, in_channels: int, in_hw: tuple[int, int], image_size: int, widths: Sequence[int], norm: str, slope: float
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.grid = math.ceil(image_size / 2 ** len(widths))
        self.in_hw = (min(in_hw[0], self.grid), min(in_hw[1], self.grid))
        h, w = self.in_hw
        self.stem = nn.ConvTranspose2d(in_channels, widths[0], (self.grid - h + 1, self.grid - w + 1))
        channels = [widths[0], *widths]
        self.blocks = nn.Sequential(
            *(ResBlockUp(c_in, c_out, norm, slope) for c_in, c_out in zip(channels[:-1], channels[1:], strict=True))
        )
        self.to_rgb = nn.Sequential(
            _norm(norm, widths[-1]), nn.LeakyReLU(slope), nn.Conv2d(widths[-1], 3, 3, padding=1), nn.Sigmoid()
        )

    def forward(self, codes: Tensor | Sequence[Tensor]) -> Tensor:
        x = code_grid(codes, self.in_hw)
        x = self.to_rgb(self.blocks(self.stem(x)))
        return to_image_size(x, self.image_size)


def resup(config: ResUpConfig, *, in_shape: tuple[int, ...], image_size: int) -> ResUp:
    """Residual upsampling blocks with normalisation, sigmoid last; `in_shape` is (C,) or (C, H, W)."""
    hw = code_hw(in_shape, "resup")
    return ResUp(in_shape[0], hw, image_size, config.widths, config.norm, config.negative_slope)
