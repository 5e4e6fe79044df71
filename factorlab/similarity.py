"""The paper's Table 3 on any folder of face images: cosine similarity of the codes of a few images.

The paper encodes a few CASIA-WebFace images and shows that images with the same expression have more
similar `code_exp` "regardless of identity" (0.79 and 0.83 in its two examples). `factorlab eval RUNDIR
--similarity-images DIR` does the same for a folder laid out as

    DIR/<expression>/<image>               expression from the sub-folder name
    DIR/<expression>/<person>/<image>      optionally, identity from a second level of folders

It writes the full cosine matrix of each code between every pair of images (the paper's table) and the
mean cosine over same-expression and different-expression pairs; with identities also over
same-expression pairs of different people and different-expression pairs of one person, which is the
paper's "regardless of identity". Cosines are raw, as in the paper (no centring).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from factorlab import report
from factorlab.errors import FactorlabError
from factorlab.files import atomic_write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class LabelledImage:
    path: Path
    expression: str
    identity: str | None


def scan_folder(root: Path) -> list[LabelledImage]:
    """The images of DIR/<expression>/[<person>/]<image>, sorted; an error says what the layout must be."""
    root = Path(root)
    if not root.is_dir():
        raise FactorlabError(
            f"--similarity-images {root}: not a folder; give a folder with one sub-folder per expression "
            "(DIR/happy/a.jpg, DIR/sad/b.jpg, ...)"
        )
    found: list[LabelledImage] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
                continue
            depth = len(path.relative_to(folder).parts)
            if depth > 2:
                raise FactorlabError(
                    f"{path}: too deep; the layout is DIR/<expression>/<image> or DIR/<expression>/<person>/<image>"
                )
            found.append(LabelledImage(path, folder.name, path.parent.name if depth == 2 else None))
    expressions = sorted({item.expression for item in found})
    if len(found) < 2 or len(expressions) < 2:
        raise FactorlabError(
            f"--similarity-images {root}: found {len(found)} image(s) in {len(expressions)} expression folder(s) "
            f"({', '.join(expressions) or 'none'}); the table needs two or more images in two or more expression "
            "folders (DIR/<expression>/<image>)"
        )
    with_identity = [item.identity is not None for item in found]
    if any(with_identity) and not all(with_identity):
        loose = next(item.path for item in found if item.identity is None)
        raise FactorlabError(
            f"{loose}: some images sit in person folders (DIR/<expression>/<person>/<image>) and this one does not; "
            "put every image in a person folder, or none"
        )
    return found


def _cosine(codes: np.ndarray) -> np.ndarray:
    x = codes.reshape(len(codes), -1).astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def _pair_means(matrix: np.ndarray, expression: np.ndarray, identity: np.ndarray | None) -> dict[str, dict]:
    """Mean cosine and number of pairs (i < j) of each kind."""
    i, j = np.triu_indices(len(matrix), k=1)
    same_exp = expression[i] == expression[j]
    kinds = {"same expression": same_exp, "different expression": ~same_exp}
    if identity is not None:
        same_id = identity[i] == identity[j]
        kinds["same expression, different person"] = same_exp & ~same_id
        kinds["different expression, same person"] = ~same_exp & same_id
    values = matrix[i, j]
    return {
        kind: {"mean": float(values[mask].mean()) if mask.any() else float("nan"), "pairs": int(mask.sum())}
        for kind, mask in kinds.items()
    }


@torch.no_grad()
def similarity_on_images(rundir: Path, root: Path, *, checkpoint: str | None = None, align: bool = False) -> dict:
    """Encode every image of `root` with a run's model; the cosine matrix and pair means of each code."""
    from factorlab.commands.swap import load_inputs
    from factorlab.rundir import load_run

    items = scan_folder(root)
    recipe, model = load_run(rundir, checkpoint)
    images, _ = load_inputs([str(item.path) for item in items], recipe, model, align=align)
    chunks = [model.encode(images[start : start + 64]) for start in range(0, len(images), 64)]
    codes = {name: torch.cat([c[name] for c in chunks]).float().numpy() for name in chunks[0]}
    expression = np.array([item.expression for item in items])
    identity = np.array([item.identity for item in items]) if items[0].identity is not None else None
    result: dict = {
        "rundir": str(rundir),
        "folder": str(root),
        "images": [
            {"path": str(item.path.relative_to(root)), "expression": item.expression, "identity": item.identity}
            for item in items
        ],
        "codes": {},
    }
    for name, code in codes.items():
        matrix = _cosine(code)
        result["codes"][name] = {"matrix": matrix.round(6).tolist(), "pairs": _pair_means(matrix, expression, identity)}
    return result


def similarity_tables(result: dict, max_images: int = 12) -> list[report.Table]:
    """Per code: the pair means, and the cosine matrix (the paper's table) when there are at most `max_images`."""
    tables = []
    names = [f"{k}: {im['expression']}" + (f"/{im['identity']}" if im["identity"] else "") for k, im in
             enumerate(result["images"])]  # fmt: skip
    for code, entry in result["codes"].items():
        rows = [[kind, value["mean"], value["pairs"]] for kind, value in entry["pairs"].items()]
        tables.append(report.Table(["pairs", "mean cosine", "n pairs"], rows, f"Cosine similarity of code '{code}'"))
        if len(names) <= max_images:
            matrix = entry["matrix"]
            tables.append(
                report.Table(
                    ["image", *[str(k) for k in range(len(names))]],
                    [[name, *row] for name, row in zip(names, matrix, strict=True)],
                    f"Cosine of code '{code}' between every pair of images (paper Table 3)",
                )
            )
    return tables


def write_similarity(rundir: Path, result: dict, tables: Sequence[report.Table]) -> tuple[Path, Path]:
    """similarity.json and similarity.md in the run folder."""
    json_path = atomic_write_text(Path(rundir) / "similarity.json", json.dumps(result, indent=2))
    text = "\n\n".join(f"**{t.caption}**\n\n{report.markdown_table(t.headers, t.rows)}" for t in tables)
    md_path = atomic_write_text(Path(rundir) / "similarity.md", f"Images: `{result['folder']}`\n\n{text}\n")
    return json_path, md_path
