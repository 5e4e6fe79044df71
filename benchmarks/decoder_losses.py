"""Cost of a training step with each decoder and decoder loss of recipes/synth/swap.toml (issue 18).

    python benchmarks/decoder_losses.py [--steps 5] [--smoke]

One full alternating step (adversaries, discriminator when there is one, main) of `Trainer.step` on a
batch of SynthFaces at the recipe's size, for: the paper's decoder and loss (deconv6, L2 per-image sum),
resup with L1 + SSIM (the recipe), + perceptual (CASIA trunk), + PatchGAN. Prints the median seconds
per step after one warm-up step. On a shared machine the numbers move with the load: compare rows of one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from factorlab.data.loading import build_dataset, to_device
from factorlab.model import build_model, resolve_factors
from factorlab.recipe import load_recipe
from factorlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "synth" / "swap.toml"
L1_SSIM = '{type = "l1"}, {type = "ssim"}'
VARIANTS = {
    "deconv6 + L2 image_sum (paper)": [
        "decoder={type = 'deconv6'}",
        "loss.reconstruction=l2",
        "loss.reconstruction_options={reduction = 'image_sum'}",
        "loss.beta_rec=0.001",
    ],
    "resup + L1 + SSIM (recipe)": [],
    "resup + L1 + SSIM + perceptual": [
        f'loss.reconstruction_options={{terms = [{L1_SSIM}, {{type = "perceptual", weight = 0.1}}]}}'
    ],
    "resup + L1 + SSIM + PatchGAN": [
        f'loss.reconstruction_options={{terms = [{L1_SSIM}, {{type = "patchgan", weight = 0.01}}]}}'
    ],
}


def seconds_per_step(overrides: list[str], steps: int, smoke: bool) -> float:
    small = ["data.identities=12", "data.samples_per_identity=8", "run.batch_size=8"] if smoke else []
    recipe = load_recipe(RECIPE, [*small, *overrides])
    torch.manual_seed(0)
    dataset = build_dataset(recipe, "train", resolve_factors(recipe))
    model = build_model(recipe, classes=dataset.classes)
    trainer = Trainer(recipe, model, torch.device("cpu"), total_steps=steps + 1)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=recipe.run.batch_size)))
    images, labels = to_device(batch, torch.device("cpu"))
    trainer.step(images, labels)  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.step(images, labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny batch, one step: checks that it runs")
    args = parser.parse_args()
    steps = 1 if args.smoke else args.steps
    print(f"| variant | s / step (batch {8 if args.smoke else 32}, 64 px, {torch.get_num_threads()} threads) |")
    print("| --- | ---: |")
    for name, overrides in VARIANTS.items():
        print(f"| {name} | {seconds_per_step(overrides, steps, args.smoke):.3f} |", flush=True)


if __name__ == "__main__":
    main()
