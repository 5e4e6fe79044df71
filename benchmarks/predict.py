"""`factorlab predict` throughput: the predictor against a bare `model(x)` loop, PyTorch eager against ONNX Runtime.

    OMP_NUM_THREADS=2 nice -n 5 python benchmarks/predict.py                  # quickstart 64 px and paper 160 px
    OMP_NUM_THREADS=2 python benchmarks/predict.py --models paper160 --repeats 5
    python benchmarks/predict.py --smoke                                      # tiny sizes (CI)

Inputs: JPEG files (256x256, quality 90) cut from scikit-image's astronaut photo around her face, with a
jittered box, so each holds one real face. Models: `quickstart` is recipes/quickstart.toml (small_cnn, 64 px);
`paper160` is recipes/expression.toml with `encoder.weights=none` (Inception-ResNet-V1 cut at repeat_2,
random weights, 160 px). Both run fp32 on the CPU with batch 32.

Per model, A/B interleaved over `--repeats` (A then B, then B then A):
- `predict` = `Predictor.predict_files` over the files, results written as jsonl to /dev/null: everything the
  command does (decoding in threads, centre crop, batching, softmax, output) except argument parsing;
- `bare` = `model(x)` over the very same images, decoded and cropped beforehand, in the same batches.
The ratio predict/bare (images/s) is the cost of the command's extra work; the target is >= 0.9.
Then `predict` through ONNX Runtime (the file `factorlab export` writes) against eager PyTorch, and both with
`--align mtcnn` (facenet-pytorch's MTCNN finds the face in each 256x256 photo first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_step import load_model_recipe  # noqa: E402  (benchmarks import each other from their folder)

from factorlab.commands.predict import JsonLinesWriter  # noqa: E402
from factorlab.model import build_model, resolve_factors  # noqa: E402
from factorlab.predict import Predictor, TorchBackend  # noqa: E402

MODELS = ("quickstart", "paper160")
BATCH = 32


def write_photos(folder: Path, count: int, size: int = 256, seed: int = 0) -> list[Path]:
    """`count` JPEG face photos: jittered crops of skimage's astronaut around her face."""
    from skimage import data

    image = data.astronaut()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        side = int(rng.integers(220, 300))
        cx, cy = 230 + int(rng.integers(-20, 21)), 120 + int(rng.integers(-20, 21))
        left, top = max(0, cx - side // 2), max(0, cy - side // 2)
        crop = Image.fromarray(image).crop((left, top, left + side, top + side)).resize((size, size))
        path = folder / f"face{i:05d}.jpg"
        crop.save(path, quality=90)
        paths.append(path)
    return paths


def random_run(folder: Path, name: str, smoke: bool) -> Path:
    """A run folder with a randomly initialised model of benchmark `name` (recipe.toml + checkpoints/best.pt)."""
    recipe, _ = load_model_recipe(name, smoke=smoke)
    torch.manual_seed(0)
    factors = resolve_factors(recipe)
    model = build_model(recipe, classes={k: list(f.classes) for k, f in factors.items() if f.classes is not None})
    rundir = folder / name
    (rundir / "checkpoints").mkdir(parents=True)
    (rundir / "recipe.toml").write_text(recipe.to_toml(), encoding="utf-8")
    torch.save(
        {"model": model.eval().state_dict(), "classes": model.classes, "epoch": 0}, rundir / "checkpoints" / "best.pt"
    )
    return rundir


def time_predict(predictor: Predictor, paths: list[Path]) -> float:
    """Seconds for predict_files over `paths`, jsonl to /dev/null (what `factorlab predict --format jsonl` does)."""
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        writer = JsonLinesWriter(sink)
        for result in predictor.predict_files(paths):
            assert result.error is None
            writer.add(result)
    return time.perf_counter() - started


def time_bare(model, batches: list[torch.Tensor]) -> float:
    """Seconds for `model(x)` over ready batches: the loop a user would write around the network."""
    started = time.perf_counter()
    with torch.inference_mode():
        for x in batches:
            model(x)
    return time.perf_counter() - started


def ab(a, b, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of a and b per repeat, alternating which goes first."""
    ta, tb = [], []
    for r in range(repeats):
        for key in "ab" if r % 2 == 0 else "ba":
            (ta if key == "a" else tb).append(a() if key == "a" else b())
    return ta, tb


def bench(name: str, folder: Path, *, images: int, mtcnn_images: int, repeats: int, smoke: bool) -> list[list[str]]:
    from factorlab.export import export_onnx

    rundir = random_run(folder, name, smoke)
    paths = write_photos(folder / f"{name}-photos", images)
    eager = Predictor.from_run(rundir, device="cpu", batch_size=BATCH)
    onnx_path = export_onnx(rundir, folder / f"{name}.onnx")
    ort = Predictor.from_onnx(onnx_path, batch_size=BATCH)
    assert isinstance(eager.backend, TorchBackend)
    model = eager.backend.net  # the same modules the predictor runs
    crops = [eager.faces([eager.prepare(np.array(Image.open(p).convert("RGB")))])[0][0][1] for p in paths]
    batches = [torch.stack(crops[i : i + BATCH]) for i in range(0, len(crops), BATCH)]

    time_predict(eager, paths[:BATCH]), time_bare(model, batches[:1]), time_predict(ort, paths[:BATCH])  # warm-up
    t_predict, t_bare = ab(lambda: time_predict(eager, paths), lambda: time_bare(model, batches), repeats)
    t_eager, t_ort = ab(lambda: time_predict(eager, paths), lambda: time_predict(ort, paths), repeats)
    n = len(paths)
    size = eager.image_size
    ratios = [b / a for a, b in zip(t_predict, t_bare, strict=True)]  # images/s predict / images/s bare
    ort_ratios = [e / o for e, o in zip(t_eager, t_ort, strict=True)]  # images/s ORT / images/s eager
    rows = [
        [f"{name} {size}px", "bare model(x), decoded batches", f"{n / statistics.median(t_bare):.1f}", ""],
        [f"{name} {size}px", "predict, eager PyTorch", f"{n / statistics.median(t_predict):.1f}",
         f"predict/bare {min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f}"],
        [f"{name} {size}px", "predict, ONNX Runtime", f"{n / statistics.median(t_ort):.1f}",
         f"ORT/eager {min(ort_ratios):.2f} / {statistics.median(ort_ratios):.2f} / {max(ort_ratios):.2f}"],
    ]  # fmt: skip
    if mtcnn_images:
        few = paths[:mtcnn_images]
        for label, predictor in (("eager PyTorch", eager), ("ONNX Runtime", ort)):
            predictor.align = "mtcnn"
            time_predict(predictor, few[:2])  # warm-up: MTCNN's networks
            seconds = statistics.median(time_predict(predictor, few) for _ in range(max(1, repeats // 2)))
            rows.append([f"{name} {size}px", f"predict --align mtcnn, {label}", f"{len(few) / seconds:.1f}", ""])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--images", type=int, default=256, help="JPEG files per model (default 256)")
    parser.add_argument("--mtcnn-images", type=int, default=64, help="files for the MTCNN rows (0: skip them)")
    parser.add_argument("--repeats", type=int, default=5, help="A/B repeats (default 5)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (what the tests run)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.mtcnn_images, args.repeats = 8, 2, 1
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, {args.images} JPEGs of 256x256"
    )
    print()
    print("| model | what | images/s | ratio min / median / max |")
    print("| --- | --- | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for row in bench(name, Path(tmp), images=args.images, mtcnn_images=args.mtcnn_images,
                             repeats=args.repeats, smoke=args.smoke):  # fmt: skip
                print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
