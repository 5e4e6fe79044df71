"""Use a trained model on images: `factorlab.load(RUNDIR)` -> a `Predictor` with `predict()` and `encode()`.

A predictor takes image paths, PIL images, uint8 arrays (H, W, 3) and float tensors ((3, H, W) or
(N, 3, H, W) in [0, 1]), crops faces the way `align` says, runs the encoder, branches and heads (never the
decoder) in batches on one device, and gives each face's class and class probabilities for every head,
and its codes. `Predictor.predict_files` streams over files for the `factorlab predict` command: images
are decoded in threads ahead of the model, bad ones are reported and skipped, and results come back in
input order one image at a time, so a folder of any size never sits in memory.

A predictor runs the PyTorch model of a run folder or an ONNX file written by `factorlab export`
(through ONNX Runtime), with the same results.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from factorlab.errors import FactorlabError

Align = Literal["none", "box", "mtcnn"]
ALIGN_MODES: tuple[str, ...] = ("none", "box", "mtcnn")
IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp"})
MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS)
DETECT_SIDE = 2048  # MTCNN sees photos shrunk to this longer side: bounded time and memory on 12-50 Mpx photos
ONNX_META = "factorlab"  # key of the JSON metadata in an exported ONNX model


class BadImage(FactorlabError):
    """An input that is not a readable image; the message names it and says why."""


# ---------------------------------------------------------------------------------------------
# Reading images


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = MAX_PIXELS,
    limit_hint: str = "raise it with --max-pixels if the file is trusted",
) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3), turned upright by its EXIF orientation; BadImage when it cannot be.

    The one reader of image files given by hand (`factorlab predict`, `factorlab swap`). `max_pixels` is checked
    on the header, before any pixel is decoded; `limit_hint` ends the message of an image over it (how to fix).
    """
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise BadImage(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BadImage(f"{path}: empty file")
    try:
        # the limit is checked here on the header: Pillow's warning between its limit and twice it is noise
        quiet = warnings.catch_warnings(action="ignore", category=Image.DecompressionBombWarning)
        with quiet, Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise BadImage(
                    f"{path}: {image.width}x{image.height} pixels is more than the limit of {max_pixels:,} "
                    f"(a decompression bomb or a huge image); {limit_hint}"
                )
            return np.array(ImageOps.exif_transpose(image).convert("RGB"))
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit: refused before the header check
        raise BadImage(f"{path}: too large to decode safely ({exc}); {limit_hint}") from None
    except UnidentifiedImageError:
        raise BadImage(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt data
        raise BadImage(f"{path}: corrupt image ({exc})") from None


def list_images(specs: Sequence[str | os.PathLike], stdin: Iterable[str] | None = None) -> Iterator[Path]:
    """Image paths from `specs`: files as given, folders recursively (image extensions only, sorted), and `-` for
    one path per line of `stdin`. A path that does not exist is yielded too: the reader reports it and goes on."""
    for spec in specs:
        if str(spec) == "-":
            for line in stdin if stdin is not None else sys.stdin:
                if line.strip():
                    yield Path(line.rstrip("\r\n"))
            continue
        path = Path(spec)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        yield Path(root) / name
        else:
            yield path


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Prediction:
    """One face: where it is, each head's predicted class and class probabilities, and (if asked) its codes."""

    image: int  # index of the input image
    face: int  # index of the face in its image (largest first; 0 without detection)
    box: tuple[float, float, float, float] | None  # x, y, width, height in the image; None without detection
    classes: dict[str, str]  # head -> predicted class
    probabilities: dict[str, dict[str, float]]  # head -> class -> probability
    codes: dict[str, list[float]] | None = None  # code name -> flattened code
    detection: float | None = None  # MTCNN's face probability

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `factorlab predict --format json/jsonl` writes, less the path)."""
        out: dict[str, Any] = {"face": self.face, "box": list(self.box) if self.box else None}
        if self.detection is not None:
            out["detection"] = self.detection
        out["predictions"] = {
            head: {"class": self.classes[head], "probabilities": self.probabilities[head]} for head in self.classes
        }
        if self.codes is not None:
            out["codes"] = self.codes
        return out


@dataclass
class ImageResult:
    """What `predict_files` says about one input file: its faces, none found, or why it was skipped."""

    path: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None
    index: int = 0  # position of the path in the input

    @property
    def status(self) -> str:
        return "skipped" if self.error else "ok" if self.predictions else "no face"


# ---------------------------------------------------------------------------------------------
# Backends: PyTorch (a run folder) and ONNX Runtime (an exported file)


def head_names(links: Sequence[tuple[str, str]]) -> list[str]:
    """The name of each (factor, code) head in results: its factor, or `factor/code` when two heads share it."""
    factors = [factor for factor, _ in links]
    return [factor if factors.count(factor) == 1 else f"{factor}/{code}" for factor, code in links]


class TorchBackend:
    """Encoder, branches and heads of a trained model on one device (the decoder is never run)."""

    def __init__(self, model, device: torch.device) -> None:
        self.net = model.net.to(device).eval()
        self.device = device
        self.links = [(link.factor, link.code) for link in self.net.head_links]
        self.keys = [link.key for link in self.net.head_links]
        self.code_names = list(self.net.branches)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        codes = self.net.encode(images.to(self.device, non_blocking=True))
        logits = self.net.classify(codes)
        return [logits[key] for key in self.keys], codes


class OnnxBackend:
    """An ONNX model written by `factorlab export`, run by ONNX Runtime on the CPU (or a GPU provider)."""

    def __init__(self, path: Path, meta: dict, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise FactorlabError('running an .onnx model needs ONNX Runtime: pip install "factorlab[export]"') from None

        options = onnxruntime.SessionOptions()
        # as many threads as PyTorch uses, and no spinning: the image-decoding threads need the cores between runs
        options.intra_op_num_threads = torch.get_num_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.links = [(h["factor"], h["code"]) for h in meta["heads"]]
        self.logit_outputs = [h["output"] for h in meta["heads"]]
        self.code_names = list(meta["codes"])
        self.code_outputs = [meta["codes"][name] for name in self.code_names]
        self.device = torch.device("cpu")

    def __call__(self, images: torch.Tensor) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        outputs = self.session.run(
            self.logit_outputs + self.code_outputs, {"images": images.detach().cpu().float().contiguous().numpy()}
        )
        logits = [torch.from_numpy(o) for o in outputs[: len(self.logit_outputs)]]
        codes = {
            n: torch.from_numpy(o) for n, o in zip(self.code_names, outputs[len(self.logit_outputs) :], strict=True)
        }
        return logits, codes


def read_onnx_metadata(path: Path) -> dict:
    """The factorlab metadata of an exported ONNX file (classes, heads, codes, input size); a clear error otherwise."""
    try:
        import onnx
    except ImportError:
        raise FactorlabError('reading an .onnx model needs onnx: pip install "factorlab[export]"') from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise FactorlabError(f"{path}: not an ONNX model ({exc}); export one with factorlab export RUNDIR") from None
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_META not in props:
        raise FactorlabError(
            f"{path}: an ONNX model without factorlab metadata; only files written by `factorlab export` can be loaded"
        )
    return json.loads(props[ONNX_META])


# ---------------------------------------------------------------------------------------------
# The predictor


class Predictor:
    """A trained model ready for images: `predict(images)` and `encode(images)`."""

    def __init__(
        self,
        backend: TorchBackend | OnnxBackend,
        classes: dict[str, list[str]],
        image_size: int,
        *,
        align: Align = "none",
        margin: float = 0.2,
        batch_size: int = 32,
        source: str = "",
    ) -> None:
        if align not in ALIGN_MODES:
            raise FactorlabError(f"align={align!r}: choose one of {', '.join(ALIGN_MODES)}")
        if batch_size < 1:
            raise FactorlabError(f"batch_size={batch_size}: give a positive number of images per batch")
        self.backend = backend
        self.heads = head_names(backend.links)
        self.classes = {
            name: list(classes[factor]) for name, (factor, _) in zip(self.heads, backend.links, strict=True)
        }
        self.image_size, self.align, self.margin, self.batch_size = image_size, align, margin, batch_size
        self.source = source
        self._detector = None

    # --- construction

    @classmethod
    def from_run(
        cls,
        rundir: str | os.PathLike,
        *,
        checkpoint: str | None = None,
        device: str = "auto",
        align: Align = "none",
        batch_size: int = 32,
    ) -> Predictor:
        """The model of a run folder on `device` ('auto', 'cpu', 'cuda', 'cuda:1', ...); `checkpoint` 'best' or 'last',
        None for the recipe's run.checkpoint (the one summary.json scores)."""
        from factorlab.rundir import load_run

        on = resolve(device)  # a wrong device is said before the checkpoint is read
        recipe, model = load_run(Path(rundir), checkpoint)
        return cls(
            TorchBackend(model, on),
            model.classes,
            recipe.data.image_size,
            align=align,
            margin=getattr(recipe.data.options, "margin", 0.2),
            batch_size=batch_size,
            source=str(rundir),
        )

    @classmethod
    def from_onnx(
        cls, path: str | os.PathLike, *, align: Align = "none", batch_size: int = 32, providers: list[str] | None = None
    ) -> Predictor:
        """An ONNX file written by `factorlab export`, run by ONNX Runtime (CPU unless `providers` says otherwise)."""
        path = Path(path)
        if not path.is_file():
            raise FactorlabError(f"ONNX file not found: {path}; write one with factorlab export RUNDIR --out {path}")
        meta = read_onnx_metadata(path)
        return cls(
            OnnxBackend(path, meta, providers),
            meta["classes"],
            int(meta["image_size"]),
            align=align,
            margin=float(meta.get("margin", 0.2)),
            batch_size=batch_size,
            source=str(path),
        )

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def code_names(self) -> list[str]:
        return list(self.backend.code_names)

    def code_sizes(self) -> dict[str, int]:
        """Each code's flattened size (one forward pass of a blank image)."""
        _, codes = self.backend(torch.zeros(1, 3, self.image_size, self.image_size))
        return {name: int(code[0].numel()) for name, code in codes.items()}

    def __repr__(self) -> str:
        heads = ", ".join(f"{h} ({len(c)} classes)" for h, c in self.classes.items())
        return f"Predictor({self.source!r}: {heads}; {self.image_size}px, align={self.align}, {self.device})"

    # --- faces

    @property
    def detector(self):
        if self._detector is None:  # facenet-pytorch's MTCNN ships its weights: no download
            from factorlab.data.align import MTCNNDetector

            device = str(self.device) if self.device.type == "cuda" else "cpu"
            self._detector = MTCNNDetector(device, batch_size=self.batch_size)
        return self._detector

    def prepare(self, image: np.ndarray | torch.Tensor) -> tuple[np.ndarray | torch.Tensor, float]:
        """What `faces` needs of one image, small enough to queue: with align='none' its square crop at the model's
        size; for MTCNN the image shrunk to at most DETECT_SIDE pixels on its longer side, and the factor back."""
        if self.align == "none":
            return _square(image, self.image_size), 1.0
        array = _as_uint8(image)
        scale = max(array.shape[:2]) / DETECT_SIDE
        if scale <= 1:
            return array, 1.0
        h, w = array.shape[:2]
        size = (max(1, round(w / scale)), max(1, round(h / scale)))  # a 1 x 5000 strip keeps one pixel row
        shrunk = Image.fromarray(array).resize(size, Image.Resampling.BILINEAR)
        return np.array(shrunk), scale

    def faces(self, prepared: list[tuple[np.ndarray | torch.Tensor, float]]) -> list[list[tuple]]:
        """Per prepared image: its faces as (box in the original's pixels or None, float (3, S, S) crop, detection
        probability or None)."""
        from factorlab.data.align import crop_box

        if self.align == "none":
            return [[(None, crop, None)] for crop, _ in prepared]
        found = self.detector.detect_all([image for image, _ in prepared])
        out = []
        for (image, scale), hits in zip(prepared, found, strict=True):
            hits = hits[:1] if self.align == "box" else hits
            out.append([
                (tuple(v * scale for v in box), _float_chw(crop_box(image, box, self.image_size, self.margin)), p)
                for box, _, p in hits
            ])  # fmt: skip
        return out

    # --- the model

    def _run(self, crops: list[torch.Tensor], *, codes: bool) -> Iterator[tuple[dict, dict, dict | None]]:
        """(classes, probabilities, codes) of each crop, the model running `batch_size` crops at a time."""
        for start in range(0, len(crops), self.batch_size):
            batch = torch.stack(crops[start : start + self.batch_size])
            yield from self._run_batch(batch, codes=codes)

    def _run_batch(self, batch: torch.Tensor, *, codes: bool) -> Iterator[tuple[dict, dict, dict | None]]:
        logits, code_tensors = self.backend(batch)
        probabilities = [torch.softmax(x.float(), dim=1).cpu().numpy() for x in logits]
        flat = {n: c.flatten(1).float().cpu().numpy() for n, c in code_tensors.items()} if codes else None
        for i in range(batch.shape[0]):
            classes, probs = {}, {}
            for head, p in zip(self.heads, probabilities, strict=True):
                names = self.classes[head]
                row = p[i].tolist()
                classes[head] = names[int(np.argmax(p[i]))]
                probs[head] = dict(zip(names, row, strict=True))
            yield classes, probs, ({n: c[i].tolist() for n, c in flat.items()} if flat is not None else None)

    def predict(self, images: Any, *, codes: bool = False) -> list[Prediction]:
        """One Prediction per face, in input order (with align='none' exactly one per image; with MTCNN an image
        without a face has none). `images`: a path, PIL image, uint8 array, float tensor, or a list or batch of them."""
        items = _as_list(images)
        per_image = self.faces([self.prepare(_load(item)) for item in items])
        crops = [crop for faces in per_image for _, crop, _ in faces]
        where = [(i, k, box, p) for i, faces in enumerate(per_image) for k, (box, _, p) in enumerate(faces)]
        return [
            Prediction(i, k, _box(box), c, p, code, None if det is None else float(det))
            for (i, k, box, det), (c, p, code) in zip(where, self._run(crops, codes=codes), strict=True)
        ]

    def encode(self, images: Any) -> dict[str, torch.Tensor]:
        """Code name -> (number of faces, ...) tensor on the CPU, faces in input order as `predict` gives them."""
        items = _as_list(images)
        crops = [crop for faces in self.faces([self.prepare(_load(item)) for item in items]) for _, crop, _ in faces]
        out: dict[str, list[torch.Tensor]] = {name: [] for name in self.code_names}
        for start in range(0, len(crops), self.batch_size):
            _, codes = self.backend(torch.stack(crops[start : start + self.batch_size]))
            for name, code in codes.items():
                out[name].append(code.detach().float().cpu())
        empty = {name: torch.empty(0) for name in self.code_names}
        return {name: torch.cat(parts) if parts else empty[name] for name, parts in out.items()}

    # --- files, streamed

    def _read(self, path: str | os.PathLike, max_pixels: int) -> tuple[np.ndarray | torch.Tensor, float]:
        """Decode and prepare one file (in a reader thread: only the small prepared image waits in the queue)."""
        return self.prepare(read_image(path, max_pixels=max_pixels))

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        codes: bool = False,
        max_pixels: int = MAX_PIXELS,
        workers: int = 2,
    ) -> Iterator[ImageResult]:
        """Stream `paths` through the model: one ImageResult per path, in order. Files are decoded by `workers`
        threads while the model runs; a file that cannot be read comes back with its `error` and nothing else."""
        chunk = self.batch_size
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="factorlab-read") as pool:
            pending: deque[tuple[str, Future]] = deque()
            paths_iter = iter(paths)

            def fill() -> None:  # keep two batches of reads in flight: enough to hide decoding, bounded memory
                while len(pending) < 2 * chunk:
                    path = next(paths_iter, None)
                    if path is None:
                        return
                    pending.append((str(path), pool.submit(self._read, path, max_pixels)))

            fill()
            index = 0
            while pending:
                batch = [pending.popleft() for _ in range(min(chunk, len(pending)))]
                fill()
                results, images = [], []
                for path, future in batch:
                    try:
                        images.append(future.result())
                        results.append(ImageResult(path, index=index))
                    except BadImage as exc:
                        results.append(ImageResult(path, error=str(exc).removeprefix(f"{path}: "), index=index))
                    index += 1
                readable = [r for r in results if r.error is None]
                per_image = self.faces(images) if images else []
                crops = [crop for faces in per_image for _, crop, _ in faces]
                outputs = iter(self._run(crops, codes=codes))
                for result, faces in zip(readable, per_image, strict=True):
                    for k, (box, _, det) in enumerate(faces):
                        c, p, code = next(outputs)
                        detection = None if det is None else float(det)
                        result.predictions.append(Prediction(result.index, k, _box(box), c, p, code, detection))
                yield from results


def load(
    path: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    device: str = "auto",
    align: Align = "none",
    batch_size: int = 32,
) -> Predictor:
    """A Predictor for a run folder (PyTorch, on `device`) or an `.onnx` file from `factorlab export` (ONNX Runtime)."""
    if Path(path).suffix.lower() == ".onnx":
        if checkpoint is not None or device not in ("auto", "cpu"):
            raise FactorlabError(
                f"{path}: an exported ONNX model runs on the CPU with the weights it holds; --device and --checkpoint "
                "apply to run folders (Predictor.from_onnx(path, providers=[...]) picks ONNX Runtime's providers)"
            )
        return Predictor.from_onnx(path, align=align, batch_size=batch_size)
    return Predictor.from_run(path, checkpoint=checkpoint, device=device, align=align, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Input conversion


def resolve(device: str) -> torch.device:
    """'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:1', 'mps'; a clear error naming --device otherwise."""
    from factorlab.runtime import resolve_device

    return resolve_device(device, option="--device")


def _as_list(images: Any) -> list:
    """A single input or a batch -> a list of single images."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images.unbind(0))
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def _load(item: Any) -> np.ndarray | torch.Tensor:
    """One input as uint8 (H, W, 3) or float (3, H, W) in [0, 1]."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(item)
    if isinstance(item, Image.Image):
        return np.array(item.convert("RGB"))
    if isinstance(item, torch.Tensor):
        if item.dim() != 3 or item.shape[0] != 3 or not item.is_floating_point():
            raise FactorlabError(
                f"a tensor input must be float (3, H, W) or (N, 3, H, W) with values in [0, 1]; got {item.dtype} "
                f"{tuple(item.shape)}"
            )
        return item.detach().float().cpu()
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise FactorlabError(
                f"an array input must be uint8 (H, W, 3) or (N, H, W, 3); got {item.dtype} {item.shape} "
                "(pass float images as a torch tensor (3, H, W) in [0, 1])"
            )
        if item.ndim == 2:
            return np.stack([item] * 3, axis=-1)
        if item.ndim == 3 and item.shape[2] in (3, 4):
            return item[..., :3]
        raise FactorlabError(f"an array input must be (H, W, 3) RGB or (H, W) grey; got shape {item.shape}")
    raise FactorlabError(
        f"cannot read an image from a {type(item).__name__}; give a path, a PIL image, a uint8 array or a float tensor"
    )


def _as_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return np.ascontiguousarray(image)
    return image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _float_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def _square(image: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """The central square resized to (size, size), as float (3, S, S): what align='none' feeds the model."""
    from factorlab.data.align import center_crop

    if isinstance(image, np.ndarray):
        return _float_chw(center_crop(image, size))
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[:, top : top + side, left : left + side]
    if side == size:
        return square
    return torch.nn.functional.interpolate(
        square[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]


def _box(box) -> tuple[float, float, float, float] | None:
    return None if box is None else tuple(round(float(v), 2) for v in box)
