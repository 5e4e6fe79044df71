"""Code swapping and image synthesis: the paper's Fig. 2 (a leaf the training loop may import).

For two images X1, X2 the model gives codes c1, c2. X1' = De(c1) and X2' = De(c2) are the plain
reconstructions; X1'' = De(c1 with the swapped codes taken from c2) and X2'' likewise. With the
paper's two codes and `names=("exp",)`, X1'' is X1's identity (and everything else of X1) with X2's
expression. `swap_grid` and `save_swap` draw and write the grid.

Scoring swaps against the true image (PSNR, SSIM, a judge) is `factorlab.swap`, which imports this
module and re-exports its names (so `factorlab.swap.synthesize` keeps working); this module imports
no run-folder or evaluation code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from factorlab.errors import FactorlabError
from factorlab.files import atomic_write
from factorlab.model import Disentangler

# ---------------------------------------------------------------------------------------------
# Swapping


def swap_codes(
    codes_a: dict[str, Tensor], codes_b: dict[str, Tensor], names: Sequence[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(a with b's `names` codes, b with a's `names` codes); the other codes stay where they are."""
    missing = [name for name in names if name not in codes_a or name not in codes_b]
    if missing:
        raise FactorlabError(f"cannot swap code(s) {missing}: the model's codes are {sorted(codes_a)}")
    a = {k: (codes_b[k] if k in names else v) for k, v in codes_a.items()}
    b = {k: (codes_a[k] if k in names else v) for k, v in codes_b.items()}
    return a, b


@dataclass
class Swap:
    """Originals, reconstructions and swaps of a batch of pairs, each (B, 3, H, W) in [0, 1]."""

    x1: Tensor
    x2: Tensor
    rec1: Tensor  # X1'
    rec2: Tensor  # X2'
    swap1: Tensor  # X1'': X1 with X2's swapped codes
    swap2: Tensor  # X2'': X2 with X1's swapped codes
    names: tuple[str, ...]
    truth1: Tensor | None = None  # the true X1'' where the data set can render it (SynthFaces), else None
    truth2: Tensor | None = None

    def columns(self) -> list[tuple[str, str, Tensor]]:
        """(label, group, images) of the grid's columns: the paper's six, then the true swaps when known."""
        what = "swapped: " + "+".join(self.names)
        columns = [
            ("X1", "original", self.x1),
            ("X2", "original", self.x2),
            ("X1'", "reconstruction", self.rec1),
            ("X2'", "reconstruction", self.rec2),
            ("X1''", what, self.swap1),
            ("X2''", what, self.swap2),
        ]
        if self.truth1 is not None and self.truth2 is not None:
            columns += [("true X1''", "rendered", self.truth1), ("true X2''", "rendered", self.truth2)]
        return columns


def check_swappable(model: Disentangler, names: Sequence[str]) -> tuple[str, ...]:
    """The code names to swap, checked against the model (it needs a decoder and those codes)."""
    if model.net.decoder is None:
        raise FactorlabError(
            "this run has no decoder, so it cannot synthesise images: train a recipe with a [decoder] section and "
            "loss.beta_rec > 0, e.g. factorlab run recipes/synth/identity-swap.toml"
        )
    names = tuple(dict.fromkeys(names))
    unknown = [name for name in names if name not in model.code_names]
    if unknown or not names:
        raise FactorlabError(
            f"--codes {','.join(names) or '(none)'}: the run's codes are {model.code_names}; "
            f"choose one or more of them, e.g. --codes {model.code_names[0]}"
        )
    return names


@torch.no_grad()
def synthesize(
    model: Disentangler, x1: Tensor, x2: Tensor, names: Sequence[str] | None = None, chunk: int = 128
) -> Swap:
    """Encode both batches, decode the reconstructions and the swaps of the codes `names` (default_codes)."""
    names = check_swappable(model, names or default_codes(model))
    device = next(model.parameters()).device
    x1, x2 = x1.to(device).float(), x2.to(device).float()
    parts = []
    for start in range(0, len(x1), chunk):  # chunks: the encoder's activations stay small for many pairs
        c1, c2 = model.encode(x1[start : start + chunk]), model.encode(x2[start : start + chunk])
        s1, s2 = swap_codes(c1, c2, names)
        # one decoder call for all four outputs (the model is in eval mode: no image affects another)
        parts.append(model.decode({k: torch.cat([c1[k], c2[k], s1[k], s2[k]]) for k in c1}).float().clamp(0, 1))
    rec1, rec2, swap1, swap2 = (torch.cat(column) for column in zip(*(part.chunk(4) for part in parts), strict=True))
    return Swap(x1, x2, rec1, rec2, swap1, swap2, names)


def add_truth(swap: Swap, model: Disentangler, dataset, pairs: Sequence[tuple[int, int]]) -> Swap:
    """`swap` with the true X1'', X2'' when `dataset` renders them (SynthFaces' `render_with`); else `swap` as is.

    `pairs` are the data-set indices (i, j) of each row's X1 and X2. The true X1'' is X1 re-rendered with
    X2's values of the factors the swapped codes carry (those their heads predict); real data has no truth.
    """
    moved = moved_factors(model, swap.names)
    if not hasattr(dataset, "render_with") or not moved:
        return swap
    from factorlab.data.loading import to_float_images

    truth1 = to_float_images([dataset.render_with(int(i), int(j), factors=tuple(moved)) for i, j in pairs])
    truth2 = to_float_images([dataset.render_with(int(j), int(i), factors=tuple(moved)) for i, j in pairs])
    return replace(swap, truth1=truth1, truth2=truth2)


def grid_bytes(pairs: int, image_size: int) -> int:
    """About how much memory a swap grid of `pairs` pairs needs: the float images and the picture."""
    return pairs * (
        8 * 3 * image_size**2 * 4 + 2 * 3 * image_size**2 + 8 * 3 * (image_size * tile_scale(image_size)) ** 2
    )


def default_codes(model: Disentangler) -> tuple[str, ...]:
    """The code swapped when none is named: the one the first head reads (the paper's code_exp), else the first."""
    if model.net.head_links:
        return (model.net.head_links[0].code,)
    return (model.code_names[0],)


def moved_factors(model: Disentangler, names: Sequence[str]) -> list[str]:
    """The factors a swap of `names` moves: those predicted by a head that reads one of those codes."""
    return list(dict.fromkeys(link.factor for link in model.net.head_links if link.code in names))


# ---------------------------------------------------------------------------------------------
# The grid

PAD = 4  # pixels between tiles
GROUP_GAP = 12  # extra space between originals, reconstructions and swaps
HEADER = 34  # two lines of column labels
MIN_TILE = 128  # small images are enlarged (nearest neighbour, whole pixels) to at least this side


def tile_scale(image_size: int) -> int:
    """The whole-number enlargement of each tile: images are shown at least MIN_TILE pixels wide."""
    return max(1, math.ceil(MIN_TILE / image_size))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


@dataclass(frozen=True)
class GridLayout:
    """Where each tile of a swap grid lies: `pairs` rows of `columns` tiles, a header, a label column."""

    pairs: int
    tile: int
    label_width: int = 0
    columns: int = 6

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the tile of pair `row`, column `col` (0-5: X1 X2 X1' X2' X1'' X2'', 6-7: truths)."""
        left = self.label_width + PAD + col * (self.tile + PAD) + (col // 2) * GROUP_GAP
        top = HEADER + PAD + row * (self.tile + PAD)
        return left, top, left + self.tile, top + self.tile

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole grid."""
        right = self.box(0, self.columns - 1)[2] + PAD
        bottom = self.box(self.pairs - 1, 0)[3] + PAD
        return right, bottom


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> uint8 (B, H, W, 3)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def swap_grid(swap: Swap, row_labels: Sequence[str] | None = None) -> Image.Image:
    """The paper's Fig. 2 as a picture: per pair X1, X2 | X1', X2' | X1'', X2'' (| true X1'', X2''), names at left."""
    columns = swap.columns()
    n, size = swap.x1.shape[0], swap.x1.shape[-1]
    scale = tile_scale(size)
    font = _font(12)
    label_width = 0
    if row_labels:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        widest = max(probe.multiline_textbbox((0, 0), label, font=font)[2] for label in row_labels)
        label_width = int(widest) + 2 * PAD
    layout = GridLayout(n, size * scale, label_width, len(columns))
    grid = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(grid)
    for col, (label, group, images) in enumerate(columns):
        left, _, right, _ = layout.box(0, col)
        centre = (left + right) / 2
        draw.text((centre, 2), label, fill="black", font=font, anchor="ma")
        draw.text((centre, 18), group, fill=(90, 90, 90), font=_font(10), anchor="ma")
        for row, tile in enumerate(to_uint8(images)):
            tile = tile.repeat(scale, axis=0).repeat(scale, axis=1)  # whole pixels: the tile shows the exact image
            grid.paste(Image.fromarray(tile), layout.box(row, col)[:2])
    for row, label in enumerate(row_labels or []):
        _, top, _, bottom = layout.box(row, 0)
        draw.multiline_text((PAD, (top + bottom) / 2), label, fill="black", font=font, anchor="lm")
    return grid


def save_swap(swap: Swap, out: Path, row_labels: Sequence[str] | None = None) -> list[Path]:
    """Write the grid to `out` and every image to the folder `out` without its suffix; returns the paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = swap_grid(swap, row_labels)
    atomic_write(out, lambda tmp: grid.save(tmp, format="PNG"))
    folder = out.with_suffix("")
    folder.mkdir(exist_ok=True)
    written = [out]
    names = {"X1": "x1", "X2": "x2", "X1'": "x1_rec", "X2'": "x2_rec", "X1''": "x1_swap", "X2''": "x2_swap"}
    names |= {"true X1''": "x1_swap_true", "true X2''": "x2_swap_true"}
    for label, _, images in swap.columns():
        for row, image in enumerate(to_uint8(images)):
            path = folder / f"pair{row}_{names[label]}.png"
            atomic_write(path, lambda tmp, image=image: Image.fromarray(image).save(tmp, format="PNG"))
            written.append(path)
    return written
