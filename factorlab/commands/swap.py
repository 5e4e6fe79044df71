"""factorlab swap: synthesise faces by swapping codes between two images (the paper's Fig. 2), and score swaps."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from factorlab.commands import args as types
from factorlab.errors import FactorlabError

if TYPE_CHECKING:
    import numpy as np
    import torch

console = Console(highlight=False)
INDEX = re.compile(r"^(train|val|test):(\d+)$")

EPILOG = """\
examples:
  factorlab swap --run runs/synth-identity-swap-20261128-101500 test:12 test:40 --out swap.png
  factorlab swap --run RUNDIR --pairs 8 --out swap.png          8 random test pairs in one grid
  factorlab swap --run RUNDIR me.jpg you.jpg --align            photos, faces cropped by MTCNN
  factorlab swap --run RUNDIR --score --pairs 500               PSNR/SSIM and judge accuracy vs the true swap
"""


def read_photo(path: Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3): `factorlab.predict.read_image`, with the hints of `factorlab swap` (an
    image can also be a data-set index; there is no --max-pixels to raise)."""
    from factorlab.predict import BadImage, read_image

    if not path.is_file():
        raise FactorlabError(
            f"image not found: {path}; give an image file or a data-set index such as test:12 (split:index)"
        )
    too_large = "give a smaller image"
    try:
        return read_image(path, limit_hint=too_large)
    except BadImage as exc:
        fix = "" if str(exc).endswith(too_large) else "; give a PNG or JPEG file"
        raise BadImage(f"cannot read image {exc}{fix}") from None


def load_inputs(specs: list[str], recipe, model, *, align: bool) -> tuple[torch.Tensor, list[str]]:
    """Images for `specs` (files, or `split:index` of the run's data set) as (N, 3, S, S) in [0, 1], and labels."""
    import numpy as np

    from factorlab.data.align import FaceCropper, center_crop
    from factorlab.data.base import labels_for_evaluation
    from factorlab.data.loading import build_dataset, to_float_images

    size = recipe.data.image_size
    images: list[np.ndarray | None] = [None] * len(specs)
    labels = [""] * len(specs)
    photos: dict[int, np.ndarray] = {}
    datasets: dict = {}
    for k, spec in enumerate(specs):
        match = INDEX.match(spec)
        if match and not Path(spec).is_file():
            split, index = match.group(1), int(match.group(2))
            if split not in datasets:
                datasets[split] = build_dataset(recipe, split, model.factors)
            dataset = datasets[split]
            if index >= len(dataset):
                raise FactorlabError(
                    f"{spec}: the {split} split of {recipe.data.dataset!r} has {len(dataset)} samples; "
                    f"use an index from 0 to {len(dataset) - 1}"
                )
            images[k] = np.asarray(dataset.image(index))
            views = [labels_for_evaluation(dataset, f) for f in model.factors if f in dataset.classes]
            names = [classes[int(labels[index])] for labels, classes in views]
            labels[k] = f"{spec} {' '.join(names)}".strip()
        else:
            photos[k] = read_photo(Path(spec))
            labels[k] = Path(spec).name if len(Path(spec).name) <= 24 else Path(spec).name[:21] + "..."
    if photos:
        if align:
            margin = getattr(recipe.data.options, "margin", 0.2)
            cropper = FaceCropper("mtcnn", size, margin)
            crops = cropper.crop_batch(list(photos.values()), [None] * len(photos))
            for (k, _), crop in zip(photos.items(), crops, strict=True):
                if isinstance(crop, str):
                    raise FactorlabError(
                        f"{specs[k]}: no face found by MTCNN; use a photo with one clearly visible face, "
                        "or drop --align to use the centre square of the image as it is"
                    )
                images[k] = crop
        else:
            for k, photo in photos.items():
                images[k] = center_crop(photo, size)
    batch = to_float_images(images)
    return batch, labels


def swap_command(parser: argparse.ArgumentParser):
    """factorlab swap --run RUNDIR IMG1 IMG2 [--out swap.png] [--codes exp] [--pairs N] [--score]"""
    parser.add_argument("--run", type=Path, required=True, metavar="RUNDIR", help="a run folder with a decoder")
    parser.add_argument(
        "images", nargs="*", metavar="IMG", help="two images: files, or data-set indices split:index such as test:12"
    )
    parser.add_argument("--out", type=Path, default=Path("swap.png"), help="grid PNG to write (default swap.png)")
    parser.add_argument(
        "--codes", help="comma-separated codes to swap (default: the code the first [[heads]] entry reads, e.g. exp)"
    )
    parser.add_argument(
        "--pairs", type=types.count, metavar="N", help="N random pairs from --split (grid), or pairs to score"
    )
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of random pairs")
    parser.add_argument("--seed", type=types.seed, default=0, help="seed of the random pairs")
    parser.add_argument("--align", action="store_true", help="crop the face in image files with MTCNN")
    parser.add_argument(
        "--checkpoint", choices=["best", "last"],
        help="which checkpoint to load (default: the recipe's run.checkpoint, the one summary.json scores)",
    )  # fmt: skip
    parser.add_argument(
        "--score", action="store_true", help="score swaps against the true images (SynthFaces): swap_scores.json"
    )
    parser.epilog = EPILOG

    def handle(args: argparse.Namespace) -> int:
        import numpy as np

        from factorlab import swap
        from factorlab.data.loading import build_dataset
        from factorlab.files import check_writable_dir
        from factorlab.resources import check_memory

        if args.pairs is not None and args.pairs < 1:
            raise FactorlabError(f"--pairs {args.pairs}: give a positive number of pairs")
        if args.images and len(args.images) != 2:
            raise FactorlabError(
                f"factorlab swap takes two images (IMG1 IMG2), got {len(args.images)}; or use --pairs N for random pairs"
            )
        if not args.images and args.pairs is None and not args.score:
            raise FactorlabError(
                "give two images (files or indices like test:12), --pairs N for random pairs, or --score"
            )
        if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise FactorlabError(f"--out {args.out}: give an image file name such as swap.png")
        check_writable_dir(args.out.parent, "--out")
        recipe, model = swap.load_decoder_run(args.run, args.checkpoint)  # clear errors: missing run, no decoder
        names = (
            tuple(c.strip() for c in args.codes.split(",") if c.strip()) if args.codes else swap.default_codes(model)
        )
        names = swap.check_swappable(model, names)

        if args.score:
            result = swap.evaluate_swaps(
                args.run, split=args.split, codes=names, pairs=args.pairs or 500, seed=args.seed, model=model
            )
            console.print(swap.format_scores(result))
            console.print(f"wrote {args.run / 'swap_scores.json'}")
            if not args.images:
                return 0

        if args.images:
            batch, labels = load_inputs(args.images, recipe, model, align=args.align)
            x1, x2 = batch[:1], batch[1:]
            row_labels = [f"1: {labels[0]}\n2: {labels[1]}"]
            matches = [INDEX.match(spec) for spec in args.images]
            truth_pairs, dataset = None, None
            if all(matches) and matches[0].group(1) == matches[1].group(1) and not Path(args.images[0]).is_file():
                # two samples of one split: SynthFaces can render the true swap
                dataset = build_dataset(recipe, matches[0].group(1), model.factors)
                truth_pairs = [(int(matches[0].group(2)), int(matches[1].group(2)))]
        else:
            dataset = build_dataset(recipe, args.split, model.factors)
            factor_labels = {f: np.asarray(dataset.labels(f)) for f in model.factors if f in dataset.classes}
            pairs = swap.random_pairs(factor_labels, args.pairs, seed=args.seed)  # at most what the split gives
            check_memory(
                swap.grid_bytes(args.pairs, recipe.data.image_size),
                f"a grid of --pairs {args.pairs}",
                "ask for fewer pairs; a grid is for looking at a few dozen",
            )
            specs = [[f"{args.split}:{i}" for i in pair] for pair in pairs.tolist()]
            batch, labels = load_inputs([s for pair in specs for s in pair], recipe, model, align=False)
            x1, x2 = batch[0::2], batch[1::2]
            row_labels = [f"1: {a}\n2: {b}" for a, b in zip(labels[0::2], labels[1::2], strict=True)]
            truth_pairs = pairs.tolist()
        result = swap.synthesize(model, x1, x2, names)
        if truth_pairs is not None:  # the renderer's true swaps as two more columns (SynthFaces; not real data)
            result = swap.add_truth(result, model, dataset, truth_pairs)
        written = swap.save_swap(result, args.out, row_labels)
        console.print(
            f"wrote {written[0]} ({len(x1)} pair(s), swapped {'+'.join(names)}) and images in {args.out.with_suffix('')}/"
        )
        return 0

    return handle
