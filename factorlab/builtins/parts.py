"""Built-in branches, heads, adversaries, decoders and reconstruction losses (pixel, SSIM, perceptual, GAN)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factorlab.hookspecs import Register, hookimpl
from factorlab.recipe import Size

# The parts' options models live here, beside their registration and free of torch, so that `factorlab
# validate` and `ls` never import torch; the parts themselves (factorlab.branches, ...) import them.
Four = tuple[Size, Size, Size, Size]
Five = tuple[Size, Size, Size, Size, Size]
Reduction = Literal["mean", "image_sum"]


class ReconstructionConfig(BaseModel):
    """Options of a reconstruction loss."""

    model_config = ConfigDict(extra="forbid")

    reduction: Reduction = Field(
        "mean",
        description="'mean': average over every pixel and channel (independent of image size); "
        "'image_sum': sum over each image, averaged over the batch (the paper's literal ||x - x'||^2).",
    )


class Deconv6Config(BaseModel):
    """Options of the `deconv6` decoder."""

    model_config = ConfigDict(extra="forbid")

    widths: Five = Field(
        (256, 128, 64, 32, 16),
        description="Output channels of the first five deconv layers; the sixth outputs the 3 image channels.",
    )
    negative_slope: float = Field(0.2, ge=0.0, description="Slope of the leaky ReLUs for negative inputs.")


class ResUpConfig(BaseModel):
    """Options of the `resup` decoder."""

    model_config = ConfigDict(extra="forbid")

    widths: list[Size] = Field(
        default_factory=lambda: [256, 128, 64, 32],
        min_length=1,
        description="Channels of the stem and of each residual upsampling block; one block per width, each doubles "
        "the side: 4 blocks draw 64 px from a 4x4 grid and 160 px from 10x10.",
    )
    norm: Literal["group", "batch", "instance", "none"] = Field(
        "group", description="Normalisation in the blocks ('group' does not depend on the batch)."
    )
    negative_slope: float = Field(0.2, ge=0.0, description="Slope of the leaky ReLUs for negative inputs.")


class SSIMLossConfig(BaseModel):
    """Options of the `ssim` loss (1 - SSIM)."""

    model_config = ConfigDict(extra="forbid")

    window: int = Field(11, ge=3, description="Side of the Gaussian window (odd; Wang et al. 2004: 11).")
    sigma: float = Field(1.5, gt=0.0, description="Standard deviation of the Gaussian window.")

    @field_validator("window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"the window side must be odd, got {value}")
        return value


PerceptualLayer = Literal["conv2d_2b", "conv2d_3b", "conv2d_4a", "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2"]


class PerceptualConfig(BaseModel):
    """Options of the `perceptual` loss (feature distance on a frozen face network)."""

    model_config = ConfigDict(extra="forbid")

    weights: str = Field(
        "casia-webface",
        description="Inception-ResNet-V1 weight set (as encoder.weights): 'casia-webface' works offline "
        "(factorlab weights fetch casia-webface), 'vggface2', or a file path.",
    )
    layers: list[PerceptualLayer] = Field(
        default_factory=lambda: ["conv2d_2b", "conv2d_4a", "repeat_1"],
        min_length=1,
        description="Trunk layers whose features are compared (each unit-normalised over channels, squared "
        "difference averaged, the layers averaged).",
    )
    image_size: int | None = Field(
        None, ge=75, description="Resize both images to this side before the network (None: as they are)."
    )


class PatchGANConfig(BaseModel):
    """Options of the `patchgan` loss (an image discriminator trained in its own step)."""

    model_config = ConfigDict(extra="forbid")

    loss: Literal["hinge", "nonsaturating"] = Field(
        "hinge", description="GAN loss: 'hinge' (SAGAN/BigGAN) or 'nonsaturating' (Goodfellow et al. 2014)."
    )
    widths: list[Size] = Field(
        default_factory=lambda: [64, 128, 256],
        min_length=1,
        description="Channels of the stride-2 4x4 convs; then a stride-1 4x4 conv gives one score per patch.",
    )
    spectral_norm: bool = Field(True, description="Spectral normalisation of every conv of the discriminator.")


class LossTerm(BaseModel):
    """One term of the `sum` loss."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="A registered reconstruction loss, e.g. 'l1', 'ssim', 'perceptual', 'patchgan'.")
    weight: float = Field(1.0, ge=0.0, description="Weight of the term.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the term's loss.")


class SumLossConfig(BaseModel):
    """Options of the `sum` loss: a weighted sum of reconstruction losses."""

    model_config = ConfigDict(extra="forbid")

    terms: list[LossTerm] = Field(
        default_factory=lambda: [LossTerm(type="l2")],
        min_length=1,
        description='The terms, e.g. [{ type = "l1", weight = 1.0 }, { type = "ssim", weight = 0.5 }]; '
        "default: the paper's l2 alone.",
    )

    @model_validator(mode="after")
    def _known_terms(self) -> SumLossConfig:
        from factorlab.plugins import get_host

        registry = get_host().registry("losses")
        for k, term in enumerate(self.terms):
            if term.type == "sum":
                raise ValueError(f"terms.{k}.type: 'sum' cannot be a term of itself; list its terms here instead")
            if term.type not in registry:
                raise ValueError(f"terms.{k}.type: {registry.unknown_message(term.type)}")
            try:
                registry.get(term.type).config.model_validate(term.options)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"terms.{k}.options ({term.type}): {problems}") from None
        return self


class UniformConfig(BaseModel):
    """Options of the `uniform` adversary."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[Size] = Field(
        default_factory=list, description="Hidden layer sizes of the classifier; empty = linear (the paper's C_adv)."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the classifier.")


class GRLConfig(UniformConfig):
    """Options of the `grl` adversary."""

    gamma: float = Field(
        10.0, ge=0.0, description="Steepness of the DANN ramp lambda = 2 / (1 + exp(-gamma * progress)) - 1."
    )


class LinearHeadConfig(BaseModel):
    """Options of the `linear` head."""

    model_config = ConfigDict(extra="forbid")

    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the code before the linear layer (paper: 0).")


class MLPHeadConfig(BaseModel):
    """Options of the `mlp` head."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[Size] = Field(default_factory=lambda: [256], description="Sizes of the hidden layers (ReLU).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


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


@hookimpl
def factorlab_register_branches(register: Register) -> None:
    for name, factory, config, description in [
        (
            "conv4",
            "conv4",
            Conv4Config,
            "Four conv layers, each followed by a leaky ReLU (the paper's B_exp / B_non-exp).",
        ),
        ("mlp", "mlp", MLPBranchConfig, "Flatten + linear layers with leaky ReLU."),
        ("identity", "identity", IdentityConfig, "The encoder's features, unchanged (or flattened), are the code."),
    ]:
        register(name, f"factorlab.branches:{factory}", config=config, description=description)


@hookimpl
def factorlab_register_heads(register: Register) -> None:
    for name, config, description in [
        ("linear", LinearHeadConfig, "Flatten + one linear layer (the paper's C_exp)."),
        ("mlp", MLPHeadConfig, "Flatten + a multi-layer perceptron with ReLU."),
    ]:
        register(name, f"factorlab.heads:{name}", config=config, description=description)


@hookimpl
def factorlab_register_adversaries(register: Register) -> None:
    for name, config, description in [
        ("uniform", UniformConfig, "The paper's adversary: encoder pushed to a uniform prediction (eq. 2)."),
        ("grl", GRLConfig, "Gradient reversal (DANN) with the ramp lambda = 2/(1+exp(-gamma p)) - 1."),
    ]:
        register(name, f"factorlab.adversaries:{name}", config=config, description=description)


@hookimpl
def factorlab_register_decoders(register: Register) -> None:
    register(
        "deconv6",
        "factorlab.decoders:deconv6",
        config=Deconv6Config,
        description="Six transposed convolutions with leaky ReLU, sigmoid last (the paper's De).",
    )
    register(
        "resup",
        "factorlab.decoders:resup",
        config=ResUpConfig,
        description="Residual upsampling blocks with normalisation, sigmoid last (sharper than deconv6).",
    )


@hookimpl
def factorlab_register_losses(register: Register) -> None:
    for name, description in [
        ("l2", "Squared error between image and reconstruction (the paper's L_r)."),
        ("l1", "Absolute error between image and reconstruction."),
    ]:
        register(name, f"factorlab.losses:{name}", config=ReconstructionConfig, description=description)
    for name, factory, config, description in [
        ("ssim", "ssim", SSIMLossConfig, "1 - SSIM (Wang et al. 2004, Gaussian window), mean over the batch."),
        (
            "perceptual",
            "perceptual",
            PerceptualConfig,
            "Feature distance on a frozen Inception-ResNet-V1 (CASIA-WebFace: offline).",
        ),
        (
            "patchgan",
            "patchgan",
            PatchGANConfig,
            "A PatchGAN image discriminator trained in its own step (hinge or non-saturating loss).",
        ),
        ("sum", "weighted_sum", SumLossConfig, "A weighted sum of reconstruction losses (terms = [{type, weight}])."),
    ]:
        register(name, f"factorlab.image_losses:{factory}", config=config, description=description)
