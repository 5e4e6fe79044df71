"""Face cropping and alignment: from a given box, from landmarks, or from facenet-pytorch's MTCNN.

Every path ends in a square uint8 (size, size, 3) image. MTCNN's weights ship inside the
facenet-pytorch wheel, so detection needs no network. Detection runs batched: images of equal shape
go through the networks together (facenet-pytorch only batches equal shapes).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from PIL import Image

from factorlab.data.types import AlignMode, Sample
from factorlab.errors import DataError

# ArcFace's 5-point template on a 112x112 crop (eyes, nose tip, mouth corners), as fractions of the side.
TEMPLATE_5 = (
    np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]])
    / 112.0
)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to (size, size) with Pillow's antialiased bilinear filter."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of the image, resized to (size, size)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize(image[top : top + side, left : left + side], size)


def crop_box(image: np.ndarray, box: tuple[float, float, float, float], size: int, margin: float = 0.0) -> np.ndarray:
    """Crop the square around box (x, y, width, height) grown by `margin` of its side; outside the image is black."""
    x, y, w, h = box
    if not (w > 0 and h > 0):
        raise DataError(f"face box {tuple(box)} has no area; width and height must be positive")
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    left, top = cx - side / 2.0, cy - side / 2.0
    region = (round(left), round(top), round(left + side), round(top + side))
    return resize(np.asarray(Image.fromarray(image).crop(region)), size)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners from 68 (iBUG order) or 5 (MTCNN order) landmarks."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(points) == 5:
        return points
    if len(points) == 68:
        return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
    raise DataError(f"landmarks: expected 68 or 5 points, got {len(points)}")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that best maps `src` points onto `dst` (Umeyama, least squares)."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = (sigma * np.diag(sign)).sum() / s.var(0).sum()
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_landmarks(image: np.ndarray, landmarks: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    """Rotate and scale the face so its eyes, nose and mouth land on a fixed template (widened by `margin`)."""
    template = (0.5 + (TEMPLATE_5 - 0.5) / (1.0 + margin)) * size
    forward = similarity_transform(five_points(landmarks), template)
    # Pillow's affine warp wants the map from output pixels back to input pixels.
    inverse_a = np.linalg.inv(forward[:, :2])
    inverse = np.hstack([inverse_a, -inverse_a @ forward[:, 2:]])
    warped = Image.fromarray(image).transform(
        (size, size), Image.Transform.AFFINE, inverse.ravel(), Image.Resampling.BILINEAR
    )
    return np.array(warped)


class MTCNNDetector:
    """facenet-pytorch's MTCNN, batched over images of equal shape (faces sorted largest first)."""

    def __init__(self, device: str = "cpu", batch_size: int = 16, min_face_size: int = 20) -> None:
        from facenet_pytorch import MTCNN

        self.batch_size = batch_size
        self.min_side = min_face_size  # MTCNN's first scale needs 12 px at 12 / min_face_size: smaller holds no face
        self.mtcnn = MTCNN(min_face_size=min_face_size, select_largest=True, keep_all=False, device=device)

    def detect(self, images: list[np.ndarray]) -> list[tuple[tuple[float, float, float, float], np.ndarray] | None]:
        """Per image: (box as x, y, width, height; 5 landmarks) of its largest face, or None when none is found."""
        return [faces[0][:2] if faces else None for faces in self.detect_all(images)]

    def detect_all(
        self, images: list[np.ndarray]
    ) -> list[list[tuple[tuple[float, float, float, float], np.ndarray, float]]]:
        """Per image: every face found as (box x, y, width, height; 5 landmarks; probability), largest first."""
        results: list = [[] for _ in images]
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            if min(image.shape[:2]) >= self.min_side:  # a smaller image has no face to find (and breaks MTCNN)
                by_shape[image.shape].append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                boxes, probs, points = self.mtcnn.detect(np.stack([images[i] for i in chunk]), landmarks=True)
                for i, box, prob, point in zip(chunk, boxes, probs, points, strict=True):
                    for k in range(0 if box is None else len(box)):
                        x0, y0, x1, y1 = (float(v) for v in box[k])
                        face = ((x0, y0, x1 - x0, y1 - y0), np.asarray(point[k], dtype=np.float64), float(prob[k]))
                        results[i].append(face)
        return results


class FaceCropper:
    """Turns raw images into square face crops the way a data set's config asks (`mode`)."""

    def __init__(self, mode: AlignMode, size: int, margin: float = 0.2, *, device: str = "cpu", batch_size: int = 16):
        self.mode, self.size, self.margin = mode, size, margin
        self.device, self.batch_size = device, batch_size
        self._detector: MTCNNDetector | None = None

    @property
    def detector(self) -> MTCNNDetector:
        if self._detector is None:  # created on first use: loading the networks costs ~0.1 s
            self._detector = MTCNNDetector(self.device, self.batch_size)
        return self._detector

    def crop(self, image: np.ndarray, sample: Sample) -> np.ndarray:
        """One face crop; a DataError (naming the sample) when no face is found."""
        result = self.crop_batch([image], [sample])[0]
        if isinstance(result, str):
            raise DataError(f"{sample.where}: {result}")
        return result

    def crop_batch(self, images: list[np.ndarray], samples: list[Sample]) -> list[np.ndarray | str]:
        """Face crops, or for each failure the reason as a string (MTCNN runs once for the whole batch)."""
        if self.mode == "mtcnn":
            found = self.detector.detect(images)
            return [
                crop_box(image, hit[0], self.size, self.margin) if hit else "no face found by MTCNN"
                for image, hit in zip(images, found, strict=True)
            ]
        out: list[np.ndarray | str] = []
        for image, sample in zip(images, samples, strict=True):
            if self.mode == "box" and sample.box is not None:
                out.append(crop_box(image, sample.box, self.size, self.margin))
            elif self.mode == "landmarks" and sample.landmarks is not None:
                out.append(align_landmarks(image, sample.landmarks, self.size, self.margin))
            else:
                # mode "none", or a pre-cropped image without box/landmarks (AffectNet's npy release): keep the centre.
                out.append(center_crop(image, self.size))
        return out
