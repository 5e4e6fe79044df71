"""`factorlab data preview`: a picture grid of a data set."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import ValidationError

from factorlab.errors import FactorlabError, RecipeError
from factorlab.files import atomic_write
from factorlab.recipe import ErrorContext, parse_override


def image_grid(images: list[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Tile equally sized uint8 (H, W, 3) images into rows of `columns`, white padding between."""
    if not images:
        raise FactorlabError("nothing to show: the data set returned no images")
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    return grid


def preview_dataset(name: str, options: list[str], *, image_size: int, out: Path) -> Path:
    """Write a preview PNG of data set `name` configured by `key=value` options; returns the path."""
    from factorlab.plugins import get_host

    entry = get_host().get("datasets", name)
    values: dict = {}
    origins: dict[tuple, str] = {}
    for option in options:
        key, value = parse_override(option)
        values[".".join(map(str, key))] = value
        origins[key] = option
    try:
        config = entry.config.model_validate(values)
    except ValidationError as exc:
        context = ErrorContext(repr(name), "", origins, title="invalid options of data set")
        raise RecipeError(context.header() + "\n".join(f"  {line}" for line in context.error_lines(exc))) from None
    # A data set module may offer its own `preview_grid` (SynthFaces: identities x expressions) and its labels.
    module = importlib.import_module(entry.factory.__module__)
    preview = getattr(module, "preview_grid", None)
    if preview is not None:
        grid = preview(config, image_size=image_size)
        names = getattr(module, "preview_labels", None)
        labels = names(config) if names is not None else None
    else:
        dataset = entry.factory(config, split="train", image_size=image_size, factors={})
        count = min(len(dataset), 64)
        grid = image_grid([dataset.image(i) for i in range(count)], columns=8)
        rows = -(-count // 8)
        labels = {
            "rows": [f"{8 * r}-{min(count, 8 * r + 8) - 1}" for r in range(rows)],
            "columns": [f"+{c}" for c in range(8)],
            "row_title": "train samples (index)",
            "column_title": "index within the row",
            "title": f"{name}: the first {count} samples of the train split",
        }
    if labels is None:  # a plugin's grid without names: the bare picture
        atomic_write(out, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))
        return out
    from factorlab.plots import plot_image_grid

    return plot_image_grid(grid, out, **labels)
