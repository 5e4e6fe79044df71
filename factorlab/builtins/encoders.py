"""Built-in encoders (shared trunks: image -> feature map)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from factorlab.hookspecs import Register, hookimpl
from factorlab.recipe import Size

# The encoders' options models live here, beside their registration and free of torch (see builtins/parts.py).
Cut = Literal["conv2d_4b", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8"]


class TimmConfig(BaseModel):
    """Options of the `timm` encoder."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("resnet18", description="A timm model name (`timm.list_models()`), e.g. 'resnet18'.")
    out_index: int = Field(
        -1,
        description="Which feature stage to return (timm's `out_indices`, one index; negative counts from "
        "the deepest stage, -1 is the last).",
    )
    weights: str = Field(
        "none",
        description="'none' (random initialisation), 'timm' (timm's pretrained weights: downloaded, or read from "
        "the Hugging Face cache when offline), or a path to a local weights file for this model.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for `timm.create_model`, e.g. {img_size = 64} for a ViT.",
    )


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


class InceptionResnetV1Config(BaseModel):
    """Options of the `inception_resnet_v1` encoder."""

    model_config = ConfigDict(extra="forbid")

    weights: str = Field(
        "vggface2",
        description="'vggface2' (the paper), 'casia-webface', a path to a local weights file, or 'none' "
        "(random initialisation). See the weights guide for getting them offline.",
    )
    cut: Cut = Field(
        "repeat_2",
        description="Last layer of the trunk; later layers are dropped. At 160x160 the features are "
        "256x17x17 (conv2d_4b, repeat_1), 896x8x8 (mixed_6a, repeat_2), 1792x3x3 (mixed_7a, repeat_3, block8).",
    )
    freeze_bn: bool | Literal["auto"] = Field(
        "auto",
        description="Keep the trunk's BatchNorm layers in eval mode during training, so their running "
        "statistics stay the pretrained ones (their scale and shift still train). 'auto': true when "
        "weights are loaded or the trunk is frozen, false for weights='none'.",
    )
    freeze: bool = Field(
        False, description="Freeze the trunk: its parameters get no gradient (a fixed feature extractor)."
    )


@hookimpl
def factorlab_register_encoders(register: Register) -> None:
    register(
        "inception_resnet_v1",
        "factorlab.encoders.facenet:inception_resnet_v1",
        config=InceptionResnetV1Config,
        description="facenet-pytorch's Inception-ResNet-V1 (VGGFace2 / CASIA-WebFace weights), truncated at a layer.",
    )
    register(
        "timm",
        "factorlab.encoders.timm_encoder:timm_encoder",
        config=TimmConfig,
        description="Any timm model as a feature extractor (features_only).",
    )
    register(
        "small_cnn",
        "factorlab.encoders.small_cnn:small_cnn",
        config=SmallCNNConfig,
        description="A small fast CNN (stride-2 conv, BatchNorm, ReLU stages) for tests.",
    )
