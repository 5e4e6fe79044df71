"""Tiny trees in each data set's official layout, drawn with Pillow (for factorlab's tests and plugin authors' own).

Every image's background brightness encodes the native label it carries (`shade(label)`), so a
test can read back from the pixels which native id a loaded sample came from and check the
label mapping end to end, through cropping and the cache.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

EXPRESSION_8 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")


def shade(label: int) -> int:
    """The background value that encodes native label `label` (steps wide enough to survive JPEG)."""
    return 20 + 20 * label


def label_of(image: np.ndarray) -> int:
    """The native label encoded in an image's background (read at the centre, which the drawing leaves free)."""
    h, w = image.shape[:2]
    return int(round((float(image[h // 2 - 1 : h // 2 + 2, w // 2 - 1 : w // 2 + 2, 0].mean()) - 20) / 20))


def face(label: int, size: int = 48, mode: str = "RGB") -> Image.Image:
    """A cartoon face outline on a background shaded by `label`; the centre keeps the background value."""
    value = shade(label)
    image = Image.new(mode, (size, size), value if mode == "L" else (value, 90, 160))
    draw = ImageDraw.Draw(image)
    ink = 0 if mode == "L" else (0, 0, 0)
    s = size
    draw.ellipse((s * 0.15, s * 0.1, s * 0.85, s * 0.95), outline=ink, width=max(1, s // 24))
    draw.ellipse((s * 0.32, s * 0.32, s * 0.40, s * 0.40), fill=ink)
    draw.ellipse((s * 0.60, s * 0.32, s * 0.68, s * 0.40), fill=ink)
    draw.line((s * 0.38, s * 0.72, s * 0.62, s * 0.72), fill=ink, width=max(1, s // 24))
    return image


def landmarks_68(size: int) -> list[float]:
    """68 plausible points (eyes, nose tip, mouth corners where iBUG puts them) for a `face()` of `size`."""
    points = np.tile([size * 0.5, size * 0.6], (68, 1))
    points[36:42] = [size * 0.36, size * 0.36]
    points[42:48] = [size * 0.64, size * 0.36]
    points[30] = [size * 0.5, size * 0.55]
    points[48], points[54] = [size * 0.38, size * 0.72], [size * 0.62, size * 0.72]
    return points.ravel().tolist()


AFFECTNET_HEADER = [
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
]


def affectnet_row(path: str, label: int, size: int = 64) -> list[str]:
    """A CSV row with a centred face box and 68 landmarks."""
    lm = ";".join(f"{v:.2f}" for v in landmarks_68(size))
    return [path, "8", "8", str(size - 16), str(size - 16), lm, str(label), "0.1", "-0.2"]


def write_affectnet_csv(root: Path, per_class: dict[str, int], extra: dict[str, list[list[str]]] | None = None) -> Path:
    """AffectNet CSV release: per_class = {"training.csv": n, "validation.csv": m} images per id 0-7, plus ids 8-10 once each in training."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for name, n in per_class.items():
        rows = []
        labels = [k for k in range(8) for _ in range(n)] + ([8, 9, 10] if name == "training.csv" else [])
        for i, label in enumerate(labels):
            rel = f"{i % 3 + 1}/{name[:5]}_{i:04d}.jpg"
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            face(label, 64).save(path, quality=95)
            rows.append(affectnet_row(rel, label))
        rows += (extra or {}).get(name, [])
        with open(lists / name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(AFFECTNET_HEADER)
            writer.writerows(rows)
    return root


def write_affectnet_npy(root: Path, per_class: dict[str, int]) -> Path:
    """AffectNet npy release: <set>/images/<id>.jpg and <set>/annotations/<id>_exp.npy (a string, as shipped)."""
    for name, n in per_class.items():
        (root / name / "images").mkdir(parents=True)
        (root / name / "annotations").mkdir(parents=True)
        labels = [k for k in range(8) for _ in range(n)] + [9]
        for i, label in enumerate(labels):
            face(label, 56).save(root / name / "images" / f"{i}.jpg", quality=95)
            np.save(root / name / "annotations" / f"{i}_exp.npy", np.array(str(label)))
            np.save(root / name / "annotations" / f"{i}_lnd.npy", np.array(landmarks_68(56), dtype=np.float32))
    return root


CK_SUBJECTS = ("S005", "S010", "S011", "S014", "S022", "S026")


def write_ckplus(root: Path, frames: int = 5) -> Path:
    """CK+: 6 subjects, each with a labelled sequence (codes cycle 1-7) and an unlabelled one; grayscale PNGs."""
    for s, subject in enumerate(CK_SUBJECTS):
        for sequence, code in (("001", 1 + s % 7), ("002", None)):
            folder = root / "cohn-kanade-images" / subject / sequence
            folder.mkdir(parents=True)
            for frame in range(1, frames + 1):
                # Frames carry the code of the label they will get: neutral first, the emotion at the end.
                label = 0 if frame == 1 or code is None else code
                face(label, 64, mode="L").save(folder / f"{subject}_{sequence}_{frame:08d}.png")
            if code is not None:
                emotion = root / "Emotion" / subject / sequence
                emotion.mkdir(parents=True)
                (emotion / f"{subject}_{sequence}_{frames:08d}_emotion.txt").write_text(f"   {code:.7e}\n")
    (root / "cohn-kanade-images" / ".DS_Store").write_bytes(b"\0")  # real archives carry these; ignored
    return root


FER_USAGES = {"Training": 3, "PublicTest": 1, "PrivateTest": 2}


def fer_pixels(label: int) -> str:
    """48x48 pixels of a face shaded by `label`, as FER2013's space-separated string."""
    return " ".join(map(str, np.asarray(face(label, 48, mode="L")).ravel().tolist()))


def write_fer2013(root: Path, extra: list[str] | None = None) -> Path:
    """fer2013.csv with, per Usage, FER_USAGES[usage] rows of every emotion 0-6."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["emotion,pixels,Usage"]
    for usage, n in FER_USAGES.items():
        lines += [f"{label},{fer_pixels(label)},{usage}" for label in range(7) for _ in range(n)]
    lines += extra or []
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    return root


def write_rafdb(root: Path, train: int = 3, test: int = 2, extra: list[str] | None = None) -> Path:
    """RAF-DB basic: per label 1-7, `train` train_ and `test` test_ images, aligned and original."""
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    (root / "Image" / "original").mkdir(parents=True)
    lines, counter = [], {"train": 0, "test": 0}
    for part, n in (("train", train), ("test", test)):
        for label in range(1, 8):
            for _ in range(n):
                counter[part] += 1
                name = f"{part}_{counter[part]:05d}"
                face(label, 40).save(root / "Image" / "aligned" / f"{name}_aligned.jpg", quality=95)
                face(label, 72).save(root / "Image" / "original" / f"{name}.jpg", quality=95)
                lines.append(f"{name}.jpg {label}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines + (extra or [])) + "\n")
    return root


def write_imagefolder(root: Path, classes: dict[str, int], per_class: int = 4, splits: bool = False) -> Path:
    """root/<class>/<i>.png (or root/{train,val,test}/<class>/...); a class's images are shaded by `classes[name]`."""
    parts = ("train", "val", "test") if splits else ("",)
    for part in parts:
        for name, label in classes.items():
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                face(label, 48).save(folder / f"{i:03d}.png")
    return root
