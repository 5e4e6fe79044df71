"""The model parts: encoders, branches, heads, adversaries and the decoder, each built from its config."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from factorlab import branches, heads
from factorlab.adversaries import Adversary, GRLConfig, UniformConfig, dann_lambda, grad_reverse, grl, uniform
from factorlab.branches import Conv4Config, IdentityConfig, MLPBranchConfig, conv4
from factorlab.decoders import Deconv6Config, concat_codes, deconv6
from factorlab.encoders.facenet import (
    LAYERS,
    InceptionResnetV1Config,
    feature_size,
    inception_resnet_v1,
    min_image_size,
)
from factorlab.encoders.small_cnn import SmallCNNConfig, small_cnn
from factorlab.encoders.timm_encoder import TimmConfig, timm_encoder
from factorlab.errors import RecipeError, UnknownNameError
from factorlab.heads import LinearHeadConfig, MLPHeadConfig
from factorlab.losses import adversary_loss, uniform_confusion
from factorlab.plugins import get_host

KINDS = ("encoders", "branches", "heads", "adversaries", "decoders", "losses")
# every built-in part, walked from the registry the hooks filled (timm-style conformance test)
ALL_PARTS = [
    (kind, entry.name, entry.factory, entry.config, entry.description)
    for kind in KINDS
    for entry in get_host().registry(kind)
    if entry.plugin.startswith("core.")
]
# keyword-only arguments of each kind's factory (factorlab/hookspecs.py)
FACTORY_KEYWORDS = {
    "encoders": ["image_size"],
    "branches": ["in_shape"],
    "heads": ["in_features", "num_classes"],
    "adversaries": ["in_features", "num_classes"],
    "decoders": ["in_shape", "image_size"],
    "losses": [],
}

# facenet-pytorch feature maps at 160x160 (WEIGHTS.md)
FACENET_SHAPES_160 = {
    "conv2d_4b": (256, 17, 17),
    "repeat_1": (256, 17, 17),
    "mixed_6a": (896, 8, 8),
    "repeat_2": (896, 8, 8),
    "mixed_7a": (1792, 3, 3),
    "repeat_3": (1792, 3, 3),
    "block8": (1792, 3, 3),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------- registration contract


@pytest.mark.parametrize("kind, name, factory, config, description", ALL_PARTS, ids=[p[1] for p in ALL_PARTS])
def test_every_part_has_a_strict_documented_config_and_the_hookspec_signature(
    kind, name, factory, config, description
) -> None:
    assert description
    with pytest.raises(ValidationError, match="bogus"):
        config.model_validate({"bogus": 1})
    config.model_validate({})  # every option has a default
    for field_name, field in config.model_fields.items():
        assert field.description, f"{kind}.{name}: option {field_name!r} has no description (recipe docs need it)"
    params = list(inspect.signature(factory).parameters.values())
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    keywords = [p.name for p in params[1:]]
    assert keywords == FACTORY_KEYWORDS[kind]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])


def test_every_kind_has_built_in_parts_from_the_core_plugins() -> None:
    assert {kind for kind, *_ in ALL_PARTS} == set(KINDS)


# ----------------------------------------------------------------------------------------- inception_resnet_v1


def facenet(**options) -> nn.Module:
    return inception_resnet_v1(InceptionResnetV1Config(weights="none", **options), image_size=160)


@pytest.fixture(scope="module")
def facenet_block8() -> nn.Module:
    return facenet(cut="block8")


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))


def test_facenet_cut_gives_the_feature_shapes_of_weights_md(facenet_block8, faces) -> None:
    # one forward of the whole trunk, checking the map after every cut point
    x = (faces - 0.5) * (255 / 128)
    seen = {}
    with torch.no_grad():
        for name, layer in facenet_block8.trunk.named_children():
            x = layer(x)
            seen[name] = tuple(x.shape[1:])
    assert list(seen) == list(LAYERS)
    for cut, shape in FACENET_SHAPES_160.items():
        assert seen[cut] == shape, cut
        assert feature_size(160, cut) == shape[1]


@pytest.mark.parametrize("cut", list(FACENET_SHAPES_160))
def test_facenet_truncated_at_each_cut_drops_the_later_layers(cut) -> None:
    torch.manual_seed(0)
    encoder = facenet(cut=cut)
    kept = list(LAYERS[: LAYERS.index(cut) + 1])
    assert [name for name, _ in encoder.trunk.named_children()] == kept
    assert not any(n.split(".")[1] not in kept for n, _ in encoder.named_parameters())
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    full = InceptionResnetV1()
    assert sum(p.numel() for p in encoder.parameters()) == sum(
        p.numel() for name in kept for p in getattr(full, name).parameters()
    )


def test_facenet_forward_at_the_default_cut_and_160(faces) -> None:
    encoder = facenet()
    assert InceptionResnetV1Config().cut == "repeat_2"
    with torch.no_grad():
        assert encoder(faces).shape == (2, *FACENET_SHAPES_160["repeat_2"])


def test_facenet_trunk_is_facenets_network_with_its_normalisation(facenet_block8, faces) -> None:
    # the trunk + facenet's own head must give facenet's own embedding of fixed_image_standardization(255 x)
    from facenet_pytorch import InceptionResnetV1, fixed_image_standardization

    full = InceptionResnetV1().eval()
    full.load_state_dict(facenet_block8.trunk.state_dict(), strict=False)
    facenet_block8.eval()
    with torch.no_grad():
        features = facenet_block8(faces)
        x = full.last_bn(full.last_linear(full.avgpool_1a(features).flatten(1)))
        ours = F.normalize(x, dim=1)
        theirs = full(fixed_image_standardization(faces * 255))
    facenet_block8.train()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_facenet_rejects_an_image_too_small_for_the_cut() -> None:
    smallest = min_image_size("block8")
    assert feature_size(smallest, "block8") == 1 and feature_size(smallest - 1, "block8") == 0
    with pytest.raises(RecipeError, match=f"image_size >= {smallest}"):
        inception_resnet_v1(InceptionResnetV1Config(weights="none", cut="block8"), image_size=smallest - 1)


def test_facenet_runs_at_its_smallest_image_size() -> None:
    smallest = min_image_size("repeat_2")
    encoder = inception_resnet_v1(InceptionResnetV1Config(weights="none", cut="repeat_2"), image_size=smallest)
    with torch.no_grad():
        assert encoder(torch.rand(2, 3, smallest, smallest)).shape == (2, 896, 1, 1)


def bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def test_freeze_bn_keeps_running_statistics_in_train_mode() -> None:
    frozen = facenet(cut="conv2d_4b", freeze_bn=True).train()
    free = facenet(cut="conv2d_4b", freeze_bn=False).train()
    assert frozen.training and free.training
    assert not any(m.training for m in frozen.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.rand(2, 3, 64, 64)
    before_frozen, before_free = bn_state(frozen), bn_state(free)
    frozen(x).sum().backward()
    free(x).sum().backward()
    for key, value in bn_state(frozen).items():
        assert torch.equal(value, before_frozen[key]), key
    assert any(not torch.equal(value, before_free[key]) for key, value in bn_state(free).items())
    # BN's scale and shift still train
    assert all(p.grad is not None for n, p in frozen.named_parameters() if n.endswith("bn.weight"))


def test_freeze_bn_auto_follows_the_weights() -> None:
    assert facenet(cut="conv2d_4b").freeze_bn is False  # weights = none: BN must learn its statistics
    assert facenet(cut="conv2d_4b", freeze=True).freeze_bn is True


def test_freeze_stops_gradients_into_the_trunk() -> None:
    encoder = facenet(cut="conv2d_4b", freeze=True)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder(torch.rand(2, 3, 64, 64)).requires_grad


def test_facenet_loads_a_local_weights_file(tmp_path) -> None:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(1)
    source = InceptionResnetV1()
    path = tmp_path / "trunk.pt"
    torch.save(source.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain file has no folded BN: no warning about freeze_bn
        encoder = inception_resnet_v1(InceptionResnetV1Config(weights=str(path), cut="conv2d_4b"), image_size=160)
    assert encoder.freeze_bn is True  # 'auto' with loaded weights
    for name, value in encoder.trunk.state_dict().items():
        assert torch.equal(value, source.state_dict()[name]), name


# ----------------------------------------------------------------------------------------- timm and small_cnn


def test_timm_encoder_gives_features_and_normalises_with_the_models_stats() -> None:
    encoder = timm_encoder(TimmConfig(name="resnet18"), image_size=64)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert encoder(images).shape == (2, 512, 2, 2)
    torch.testing.assert_close(encoder.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    stage = timm_encoder(TimmConfig(name="resnet18", out_index=2), image_size=64)
    with torch.no_grad():
        assert stage(images).shape == (2, 128, 8, 8)


def test_timm_encoder_loads_a_local_weights_file(tmp_path) -> None:
    import timm

    torch.manual_seed(2)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    encoder = timm_encoder(TimmConfig(name="resnet18", weights=str(path)), image_size=64)
    torch.testing.assert_close(encoder.model.conv1.weight, source.conv1.weight)
    with pytest.raises(RecipeError, match="no such file"):
        timm_encoder(TimmConfig(name="resnet18", weights=str(tmp_path / "missing.pth")), image_size=64)


def test_timm_encoder_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):
        timm_encoder(TimmConfig(name="resnet_18"), image_size=64)


@pytest.mark.parametrize("widths, size, expected", [([32, 64, 128, 256], 64, (256, 4, 4)), ([8, 16], 32, (16, 8, 8))])
def test_small_cnn_gives_features(widths, size, expected) -> None:
    encoder = small_cnn(SmallCNNConfig(widths=widths), image_size=size)
    features = encoder(torch.rand(2, 3, size, size))
    assert features.shape == (2, *expected)
    features.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


# ----------------------------------------------------------------------------------------- branches and heads


def test_conv4_is_four_convs_each_followed_by_leaky_relu() -> None:
    branch = conv4(Conv4Config(), in_shape=(896, 8, 8))
    layers = list(branch.children())
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and len(layers) == 8
    assert all(isinstance(layers[i + 1], nn.LeakyReLU) for i in convs)
    assert all(m.negative_slope == 0.2 for m in layers if isinstance(m, nn.LeakyReLU))
    # the default maps the paper's trunk (repeat_2 at 160x160) to a 128x2x2 code: the size of facenet's embedding
    assert branch(torch.randn(2, 896, 8, 8)).shape == (2, 128, 2, 2)


def test_conv4_options_and_shape_errors() -> None:
    config = Conv4Config(widths=(8, 8, 8, 4), strides=(2, 2, 2, 2), kernel_size=5, negative_slope=0.1)
    branch = conv4(config, in_shape=(16, 16, 16))
    assert branch(torch.randn(2, 16, 16, 16)).shape == (2, 4, 1, 1)
    assert [m.kernel_size for m in branch if isinstance(m, nn.Conv2d)] == [(5, 5)] * 4
    with pytest.raises(ValidationError):
        Conv4Config(widths=(8, 8, 8))  # the paper's branch has four layers
    with pytest.raises(RecipeError, match="spatial feature map"):
        conv4(Conv4Config(), in_shape=(512,))


def test_mlp_and_identity_branches() -> None:
    mlp = branches.mlp(MLPBranchConfig(hidden=[32], out_features=16), in_shape=(8, 2, 2))
    assert mlp(torch.randn(3, 8, 2, 2)).shape == (3, 16)
    x = torch.randn(3, 8, 2, 2)
    assert torch.equal(branches.identity(IdentityConfig(), in_shape=(8, 2, 2))(x), x)
    assert branches.identity(IdentityConfig(flatten=True), in_shape=(8, 2, 2))(x).shape == (3, 32)


def test_linear_head_is_one_linear_layer_on_the_flat_code() -> None:
    head = heads.linear(LinearHeadConfig(), in_features=512, num_classes=8)
    assert [type(m) for m in head] == [nn.Flatten, nn.Linear]
    assert head(torch.randn(2, 128, 2, 2)).shape == (2, 8)


def test_mlp_head() -> None:
    head = heads.mlp(MLPHeadConfig(hidden=[32, 16], dropout=0.1), in_features=24, num_classes=5)
    assert sum(isinstance(m, nn.Linear) for m in head) == 3
    assert sum(isinstance(m, nn.Dropout) for m in head) == 2
    assert head(torch.randn(4, 24)).shape == (4, 5)


# ----------------------------------------------------------------------------------------- adversaries


def test_grad_reverse_is_identity_forward_and_negated_scaled_gradient() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    weights = torch.randn(3, 4)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * weights)


def test_dann_lambda_ramps_from_zero_to_one() -> None:
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values[0] == 0.0
    assert values[-1] == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert dann_lambda(2.0) == dann_lambda(1.0)  # progress is clamped to [0, 1]
    assert dann_lambda(0.5, gamma=1.0) < dann_lambda(0.5, gamma=10.0)


def frozen(adversary: Adversary) -> Adversary:
    adversary.requires_grad_(False)  # as the trainer does in the main step
    return adversary


def test_uniform_adversary_trains_the_code_towards_uniform_confusion() -> None:
    adversary = uniform(UniformConfig(), in_features=12, num_classes=5)
    assert [type(m) for m in adversary.classifier] == [nn.Flatten, nn.Linear]  # the paper's linear C_adv
    code = torch.randn(4, 3, 2, 2, requires_grad=True)
    target = torch.randint(0, 5, (4,))
    assert adversary(code).shape == (4, 5)
    loss = frozen(adversary).encoder_loss(code, target, progress=0.3)
    torch.testing.assert_close(loss, uniform_confusion(adversary(code)))
    loss.backward()
    assert code.grad is not None and code.grad.abs().sum() > 0
    assert all(p.grad is None for p in adversary.parameters())


def test_grl_adversary_gives_the_code_the_reversed_ramped_gradient() -> None:
    torch.manual_seed(0)
    adversary = frozen(grl(GRLConfig(gamma=5.0, hidden=[8]), in_features=6, num_classes=3))
    assert sum(isinstance(m, nn.Linear) for m in adversary.classifier) == 2
    code = torch.randn(4, 6, requires_grad=True)
    target = torch.randint(0, 3, (4,))
    progress = 0.4
    loss = adversary.encoder_loss(code, target, progress)
    torch.testing.assert_close(loss, adversary_loss(adversary(code), target))
    (reversed_grad,) = torch.autograd.grad(loss, code)
    (plain_grad,) = torch.autograd.grad(adversary_loss(adversary(code), target), code)
    torch.testing.assert_close(reversed_grad, -dann_lambda(progress, 5.0) * plain_grad)


def test_adversary_base_requires_an_encoder_loss() -> None:
    with pytest.raises(NotImplementedError):
        Adversary(nn.Linear(2, 2)).encoder_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), 0.0)


# ----------------------------------------------------------------------------------------- decoder


def test_deconv6_is_six_deconvs_with_leaky_relu_between_and_sigmoid_last() -> None:
    decoder = deconv6(Deconv6Config(), in_shape=(256, 2, 2), image_size=160)
    layers = list(decoder.layers)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in decoder.modules()) == 6
    assert isinstance(layers[-1], nn.Sigmoid) and isinstance(layers[-2], nn.ConvTranspose2d)
    assert [type(m) for m in layers[:-1]] == [nn.ConvTranspose2d] + [nn.LeakyReLU, nn.ConvTranspose2d] * 5
    assert layers[-2].out_channels == 3


@pytest.mark.parametrize("size", [32, 48, 64, 100, 112, 128, 160])
@pytest.mark.parametrize("in_shape", [(8, 2, 2), (8,), (8, 9, 9)], ids=["map", "flat", "large-map"])
def test_deconv6_outputs_images_in_unit_range_at_the_input_size(size, in_shape) -> None:
    decoder = deconv6(Deconv6Config(widths=(16, 8, 8, 4, 4)), in_shape=in_shape, image_size=size)
    codes = torch.randn(2, *in_shape) * 10
    image = decoder(codes)
    assert image.shape == (2, 3, size, size)
    assert image.min() >= 0 and image.max() <= 1
    image.mean().backward()
    assert all(p.grad is not None for p in decoder.parameters())


def test_deconv6_interpolates_only_when_the_size_is_not_a_multiple_of_32() -> None:
    decoder = deconv6(Deconv6Config(), in_shape=(8, 2, 2), image_size=160)
    # without the final resize the six layers already give 160 = 5 * 32
    assert decoder.layers(torch.randn(1, 8, 2, 2)).shape[-1] == 160


def test_concat_codes_joins_maps_and_tiles_flat_codes() -> None:
    a, b, flat = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 3, 3), torch.randn(2, 6)
    joined = concat_codes([a, flat, b])
    assert joined.shape == (2, 15, 3, 3)
    assert torch.equal(joined[:, :4], a) and torch.equal(joined[:, 10:], b)
    assert torch.equal(joined[:, 4:10, 1, 2], flat)
    assert concat_codes([flat, flat]).shape == (2, 12, 1, 1)
    with pytest.raises(RecipeError, match="different spatial sizes"):
        concat_codes([a, torch.randn(2, 4, 2, 2)])
    decoder = deconv6(Deconv6Config(), in_shape=(15, 3, 3), image_size=64)
    assert decoder([a, flat, b]).shape == (2, 3, 64, 64)


def test_facenet_warns_when_folded_bn_weights_would_train_their_bn(tmp_path) -> None:
    import json

    from facenet_pytorch import InceptionResnetV1

    from factorlab.weights import manifest_path, sha256_file

    path = tmp_path / "folded.pt"
    torch.save(InceptionResnetV1().state_dict(), path)
    manifest = {"name": "folded", "size": path.stat().st_size, "sha256": sha256_file(path), "folded_bn": True}
    manifest_path(path).write_text(json.dumps(manifest))
    config = InceptionResnetV1Config(weights=str(path), cut="conv2d_4b", freeze_bn=False)
    with pytest.warns(UserWarning, match="freeze_bn = false"):
        inception_resnet_v1(config, image_size=160)


def test_classify_gives_each_head_the_logits_of_its_own_code(tmp_path) -> None:
    from factorlab import build_model
    from factorlab.recipe import load_recipe

    recipe = load_recipe("recipes/quickstart.toml", ["data.image_size=32", f"run.output={tmp_path}"])
    net = build_model(recipe).net.eval()
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        codes = net.encode(images)
        logits = net.classify(codes)
        assert logits.keys() == net(images)["logits"].keys() == {link.key for link in net.head_links}
        for link in net.head_links:  # the same logits as forward, and a head reads nothing but its code
            assert torch.allclose(logits[link.key], net(images)["logits"][link.key], atol=1e-6)
            others = {name: code if name == link.code else torch.randn_like(code) for name, code in codes.items()}
            assert torch.equal(net.classify(others)[link.key], logits[link.key])
