"""Built-in encoders (shared trunks: image -> feature map)."""

from __future__ import annotations

from factorlab.hookspecs import Register, hookimpl


@hookimpl
def factorlab_register_encoders(register: Register) -> None:
    register(
        "inception_resnet_v1",
        "factorlab.encoders.facenet:inception_resnet_v1",
        config="factorlab.encoders.facenet:InceptionResnetV1Config",
        description="facenet-pytorch's Inception-ResNet-V1 (VGGFace2 / CASIA-WebFace weights), truncated at a layer.",
    )
    register(
        "timm",
        "factorlab.encoders.timm_encoder:timm_encoder",
        config="factorlab.encoders.timm_encoder:TimmConfig",
        description="Any timm model as a feature extractor (features_only).",
    )
    register(
        "small_cnn",
        "factorlab.encoders.small_cnn:small_cnn",
        config="factorlab.encoders.small_cnn:SmallCNNConfig",
        description="A small fast CNN (stride-2 conv, BatchNorm, ReLU stages) for tests.",
    )
