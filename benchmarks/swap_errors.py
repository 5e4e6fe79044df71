"""Where a SynthFaces decoder's pixel error lives: background against face, and how much of the background
colour the codes carry (issue 18: why swap PSNR stays far below the trivial answer's).

    python benchmarks/swap_errors.py GROUP_OR_RUN [...] [--samples 600]

For each run (a seed group's seed-*/ runs, or a run folder), on the first --samples images of the test split:
- reconstruction PSNR of X' = De(En(X)) against X (mean over images of 10 log10(1 / MSE));
- the background's share of the pixels and of the squared error. The background mask is what the renderer
  changes when only the background is taken from another sample (`render_with(i, j, ("background",))`);
- the PSNR the reconstructions would have with a perfect background (the squared error there set to 0);
- R^2 of a ridge regression from all codes (flattened, concatenated) to the background's base colour (the
  renderer's bg1_r, bg1_g, bg1_b), fitted on 2000 train images and scored on these test images: how much
  of the colour a linear read-out finds in the codes (a lower bound on what a decoder could read).
Prints one markdown table, mean +- sd over the runs.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import torch

USAGE = "python benchmarks/swap_errors.py GROUP_OR_RUN [...] [--samples 600]"
COLUMNS = {
    "psnr": "reconstruction PSNR dB",
    "bg_pixels": "background share of pixels",
    "bg_error": "background share of squared error",
    "psnr_perfect_bg": "PSNR with a perfect background",
    "bg_colour_r2": "R^2 codes -> background colour",
}


def _runs(paths: list[Path]) -> list[Path]:
    runs: list[Path] = []
    for path in paths:
        seeds = sorted(path.glob("seed-*/summary.json"))
        runs += [s.parent for s in seeds] if seeds else [path]
    return runs


@torch.no_grad()
def _codes(model, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    codes = model.encode(images)
    return codes, torch.cat([c.flatten(1) for c in codes.values()], 1).numpy()


@torch.no_grad()
def measure(rundir: Path, samples: int = 600, fit_samples: int = 2000) -> dict[str, float]:
    from sklearn.linear_model import Ridge

    from factorlab.data.loading import build_dataset, dataset_images, to_float_images
    from factorlab.errors import FactorlabError
    from factorlab.swap import load_decoder_run, psnr

    recipe, model = load_decoder_run(rundir)
    model.eval()
    test = build_dataset(recipe, "test", model.factors)
    if not hasattr(test, "render_with"):
        raise FactorlabError(
            f"{rundir}: its data set ({recipe.data.dataset}) does not render backgrounds; use a synthfaces run"
        )
    index = np.arange(min(samples, len(test)))
    x = dataset_images(test, index)
    codes, flat = _codes(model, x)
    rec = model.decode(codes)
    other = (index + len(index) // 2 + 1) % len(test)  # another sample's background for each image
    moved = to_float_images(
        [test.render_with(int(i), int(j), factors=("background",)) for i, j in zip(index, other, strict=True)]
    )
    background = ((moved - x).abs().sum(1, keepdim=True) > 1e-3).float()
    error = (rec - x).square()
    perfect_bg = x + (rec - x) * (1 - background)  # the reconstruction with the true background pasted in

    def colour(ds, idx) -> np.ndarray:
        return np.array([[ds.params(int(i))[f"bg1_{c}"] for c in "rgb"] for i in idx])

    train = build_dataset(recipe, "train", model.factors)
    fit = np.arange(min(fit_samples, len(train)))
    _, fit_flat = _codes(model, dataset_images(train, fit))
    ridge = Ridge(alpha=1.0, solver="svd").fit(fit_flat, colour(train, fit))
    return {
        "psnr": float(psnr(rec, x).mean()),
        "bg_pixels": float(background.mean()),
        "bg_error": float((error * background).sum() / error.sum()),
        "psnr_perfect_bg": float(psnr(perfect_bg, x).mean()),
        "bg_colour_r2": float(ridge.score(flat, colour(test, index))),
    }


def table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = ["| runs | n | " + " | ".join(COLUMNS.values()) + " |", "| --- | ---: |" + " ---: |" * len(COLUMNS)]
    for name, rows in results.items():
        cells = []
        for key in COLUMNS:
            values = [r[key] for r in rows]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {sd:.3f}")
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python benchmarks/swap_errors.py", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="GROUP_OR_RUN", help="seed groups or run folders")
    parser.add_argument("--samples", type=int, default=600, help="test images per run (default 600)")
    args = parser.parse_args(argv)  # usage errors exit 2 with argparse's message
    paths, samples = args.runs, args.samples
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing or samples < 2:
        why = f"no such folder: {', '.join(missing)}" if missing else "--samples must be at least 2"
        print(f"error: {why}\nusage: {USAGE}", file=sys.stderr)
        return 2
    from factorlab.errors import FactorlabError

    try:
        results = {p.name: [measure(run, samples) for run in _runs([p])] for p in paths}
    except FactorlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
