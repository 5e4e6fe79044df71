"""factorlab's training step against the loop a researcher would write by hand, and the data loader against the step.

    OMP_NUM_THREADS=2 python benchmarks/train_step.py step                  # quickstart, paper 160, paper 112
    OMP_NUM_THREADS=2 python benchmarks/train_step.py step --models paper160 --repeats 9 --steps 1
    OMP_NUM_THREADS=2 python benchmarks/train_step.py data                  # cached loader vs step
    python benchmarks/train_step.py step --smoke                            # tiny sizes, a couple of steps (CI)

`step`: A = `Trainer.step` (adversary step on the detached codes + main step), B = `plain_step` below, over the
very same modules, optimisers and batches. The two alternate in one process (A then B, then B then A on the next
repeat, so neither always runs first after the other warms the caches); each repeat times `--steps` steps of each
and gives one ratio factorlab/plain in images/s. The table gives min/median/max of that ratio over the repeats.
On a machine shared with other jobs the median of interleaved ratios is the figure to quote, not absolute rates;
if its cores are oversubscribed, set OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads make 2 threads 2-4x slower).

`data`: images/s of the SynthFaces cache through `make_loader` + `to_device`, and with `FaceAugment` on top,
next to the images/s the training step consumes at that size. The loader must never be the bottleneck.

Models: `quickstart` is recipes/quickstart.toml (small_cnn, 64x64, batch 64); `paper160` / `paper112` are
recipes/expression.toml (Inception-ResNet-V1 cut at repeat_2, two conv4 branches, linear head, uniform
adversary) with `encoder.weights=none`, fp32, batch 16 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from factorlab.data.loading import build_dataset, make_loader, to_device
from factorlab.data.sampling import FaceAugment, epoch_order
from factorlab.model import Disentangler, build_model, resolve_factors
from factorlab.recipe import Recipe, load_recipe
from factorlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
CPU_OVERRIDES = ["run.device=cpu", "run.precision=fp32", "run.channels_last=false", "run.compile=false"]
MODELS = {
    # name: (recipe, overrides, batch size on CPU)
    "quickstart": ("recipes/quickstart.toml", [], 64),
    "paper160": ("recipes/expression.toml", ["encoder.weights=none", "data.image_size=160"], 16),
    "paper112": ("recipes/expression.toml", ["encoder.weights=none", "data.image_size=112"], 16),
}
# --smoke: the same code paths at sizes that run in a second (80 px is the smallest the paper's cut accepts + margin)
SMOKE = {
    "quickstart": (["data.image_size=32"], 4),
    "paper160": (["data.image_size=80"], 2),
    "paper112": (["data.image_size=80"], 2),
}


# ---------------------------------------------------------------------------------------------
# Setup shared by the benchmarks (gpu.py and memory.py import these)


@dataclass
class Setup:
    """A model, its Trainer and a pool of batches already on the device."""

    name: str
    recipe: Recipe
    model: Disentangler
    trainer: Trainer
    batches: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]

    @property
    def batch_size(self) -> int:
        return self.batches[0][0].shape[0]


def load_model_recipe(name: str, overrides: list[str] = (), *, smoke: bool = False) -> tuple[Recipe, int]:
    """The recipe of a benchmark model (with CPU defaults and `overrides`) and its benchmark batch size."""
    path, model_overrides, batch = MODELS[name]
    extra = []
    if smoke:
        extra, batch = SMOKE[name]
    recipe = load_recipe(ROOT / path, [*CPU_OVERRIDES, *model_overrides, *extra, *overrides])
    return recipe, batch


def make_setup(
    name: str,
    overrides: list[str] = (),
    *,
    batch_size: int | None = None,
    device: str = "cpu",
    pool: int = 4,
    smoke: bool = False,
    seed: int = 0,
) -> Setup:
    """Build a benchmark model, its Trainer and `pool` random batches (uint8 images normalised as in training)."""
    recipe, default_batch = load_model_recipe(name, [f"run.device={device}", *overrides], smoke=smoke)
    batch_size = batch_size or default_batch
    torch.manual_seed(seed)
    factors = resolve_factors(recipe)
    classes = {k: list(f.classes) for k, f in factors.items() if f.classes is not None}
    model = build_model(recipe, classes=classes)
    trainer = Trainer(recipe, model, torch.device(device), total_steps=10_000)
    size = recipe.data.image_size
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(pool):
        batch = {"image": torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=generator)}
        for factor, names in model.classes.items():
            batch[factor] = torch.randint(0, len(names), (batch_size,), generator=generator)
        batches.append(to_device(batch, torch.device(device), channels_last=recipe.run.channels_last))
    return Setup(name, recipe, model, trainer, batches)


# ---------------------------------------------------------------------------------------------
# The loop a researcher would write


def plain_step(setup: Setup, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """One alternating update written by hand: same modules and optimisers as the Trainer, no factorlab code.

    Forward the encoder and both branches once; update the adversary on the detached non-expression code;
    then train encoder, branches and head on cross-entropy + uniform confusion of the frozen adversary.
    """
    net = setup.model.net
    encoder, branch_exp, branch_nonexp = net.encoder, net.branches["exp"], net.branches["nonexp"]
    head = net.heads["expression_from_exp"]
    adversary = setup.model.adversaries.adversaries["expression_from_nonexp"].classifier
    main_opt, adv_opt = setup.trainer.main_opt, setup.trainer.adv_opt
    y = labels["expression"]

    features = encoder(images)
    exp, nonexp = branch_exp(features), branch_nonexp(features)

    adv_loss = F.cross_entropy(adversary(nonexp.detach().flatten(1)), y)
    adv_opt.zero_grad(set_to_none=True)
    adv_loss.backward()
    adv_opt.step()

    cls_loss = F.cross_entropy(head(exp.flatten(1)), y)
    adversary.requires_grad_(False)
    confusion = -F.log_softmax(adversary(nonexp.flatten(1)), dim=1).mean()  # cross-entropy to uniform
    loss = cls_loss + confusion
    main_opt.zero_grad(set_to_none=True)
    loss.backward()
    main_opt.step()
    adversary.requires_grad_(True)
    return loss.detach()


def factorlab_step(setup: Setup, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
    """One `Trainer.step` (adversary step + main step)."""
    return setup.trainer.step(images, labels)["total/loss"]


def check_structure(setup: Setup) -> None:
    """The plain loop is written for the paper's layout: exp/nonexp codes, one head, one adversary."""
    keys = (list(setup.model.net.heads), list(setup.model.adversaries.adversaries), list(setup.model.net.branches))
    if keys != (["expression_from_exp"], ["expression_from_nonexp"], ["exp", "nonexp"]):
        raise SystemExit(f"{setup.name}: plain_step expects the paper's layout, got heads/adversaries/codes {keys}")


def sync(device: torch.device) -> None:
    """Wait for queued device work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, setup: Setup, start: int, count: int) -> tuple[float, float]:
    """Wall and process CPU seconds of `count` steps over the batch pool, from batch `start` on."""
    device = setup.batches[0][0].device
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(start, start + count):
        images, labels = setup.batches[i % len(setup.batches)]
        step(setup, images, labels)
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


# ---------------------------------------------------------------------------------------------
# step: A/B


def bench_step(name: str, *, repeats: int, steps: int, warmup: int, batch_size: int | None, smoke: bool) -> dict:
    """Alternate factorlab and plain steps; per repeat one ratio of images/s (wall and CPU time)."""
    setup = make_setup(name, batch_size=batch_size, smoke=smoke)
    check_structure(setup)
    impls = {"factorlab": factorlab_step, "plain": plain_step}
    for step in impls.values():  # warm-up: allocator, oneDNN primitive caches, optimiser state
        time_steps(step, setup, 0, warmup)
    wall: dict[str, list[float]] = {k: [] for k in impls}
    cpu: dict[str, list[float]] = {k: [] for k in impls}
    for r in range(repeats):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for key in order:
            w, c = time_steps(impls[key], setup, r * steps, steps)
            wall[key].append(w)
            cpu[key].append(c)
    images = setup.batch_size * steps
    ratios = [p / f for f, p in zip(wall["factorlab"], wall["plain"], strict=True)]
    cpu_ratios = [p / f for f, p in zip(cpu["factorlab"], cpu["plain"], strict=True)]
    return {
        "model": name,
        "size": setup.recipe.data.image_size,
        "batch": setup.batch_size,
        "factorlab": images / statistics.median(wall["factorlab"]),
        "plain": images / statistics.median(wall["plain"]),
        "ratio": (min(ratios), statistics.median(ratios), max(ratios)),
        "cpu_ratio": statistics.median(cpu_ratios),
    }


def cmd_step(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} A/B repeats")
    print()
    print(
        "| model | input | batch | factorlab img/s | plain img/s | factorlab/plain min / median / max | CPU-time ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        # one timed block lasts ~0.5-2 s on 2 CPU threads: long enough to time, short enough to interleave
        steps = args.steps or (10 if name == "quickstart" else 2)
        row = bench_step(
            name, repeats=args.repeats, steps=steps, warmup=args.warmup, batch_size=args.batch, smoke=args.smoke
        )
        lo, mid, hi = row["ratio"]
        print(
            f"| {row['model']} | {row['size']}x{row['size']} | {row['batch']} | {row['factorlab']:.1f} | "
            f"{row['plain']:.1f} | {lo:.3f} / **{mid:.3f}** / {hi:.3f} | {row['cpu_ratio']:.3f} |",
            flush=True,
        )


# ---------------------------------------------------------------------------------------------
# data: cached loader vs the step


def loader_rate(dataset, batch_size: int, workers: int, augment: FaceAugment | None, limit: int) -> float:
    """Images/s of `make_loader` + `to_device` (+ augmentation) over up to `limit` batches, workers started."""
    order = epoch_order(None, len(dataset), seed=0, epoch=0)[: (limit + 1) * batch_size]
    loader = iter(make_loader(dataset, order, batch_size, num_workers=workers))
    next(loader)  # worker start-up is paid once per epoch, not per image
    count, start = 0, time.perf_counter()
    for i, batch in enumerate(loader):
        images, _ = to_device(batch, torch.device("cpu"))
        if augment is not None:
            images = augment(images, torch.Generator().manual_seed(i))
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def cmd_data(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    pairs = [("quickstart", 64), ("paper160", 160)] if not args.smoke else [("quickstart", 32)]
    identities, per_identity = (6, 20) if args.smoke else (20, 100)
    augment = FaceAugment(flip=True, crop=0.1, color_jitter=0.2)
    print(f"SynthFaces cache ({identities} identities x {per_identity} images), {torch.get_num_threads()} threads")
    print()
    print(
        "| input | batch | workers | loader img/s | + FaceAugment img/s | step img/s (model) | data time / step time |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as cache:
        for model_name, size in pairs:
            setup = make_setup(model_name, smoke=args.smoke)
            batch = setup.batch_size
            time_steps(factorlab_step, setup, 0, 1)
            wall, _ = time_steps(factorlab_step, setup, 0, args.step_steps)
            step_rate = batch * args.step_steps / wall
            overrides = [
                f"data.image_size={size}",
                f"data.identities={identities}",
                f"data.samples_per_identity={per_identity}",
                f"data.cache_dir={cache}",
            ]
            recipe = load_recipe(ROOT / "recipes/quickstart.toml", [*CPU_OVERRIDES, *overrides])
            dataset = build_dataset(recipe, "train", resolve_factors(recipe))  # builds the cache (not timed)
            limit = max(1, min(args.batches, len(dataset) // batch - 1))
            for workers in args.workers:
                plain = loader_rate(dataset, batch, workers, None, limit)
                augmented = loader_rate(dataset, batch, workers, augment, limit)
                print(
                    f"| {size}x{size} | {batch} | {workers} | {plain:,.0f} | {augmented:,.0f} | "
                    f"{step_rate:.1f} ({model_name}) | {step_rate / augmented:.1%} |",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    step = sub.add_parser("step", help="factorlab Trainer.step vs a hand-written loop, A/B interleaved")
    step.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    step.add_argument("--repeats", type=int, default=7, help="A/B repeats (one ratio each)")
    step.add_argument("--steps", type=int, default=0, help="steps per timed block (default: 10 quickstart, 2 paper)")
    step.add_argument("--warmup", type=int, default=2, help="untimed steps of each before timing")
    step.add_argument("--batch", type=int, default=None, help="batch size (default: per model, see MODELS)")
    data = sub.add_parser("data", help="cached SynthFaces loader (+ FaceAugment) vs the step's images/s")
    data.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="DataLoader worker counts to try")
    data.add_argument("--batches", type=int, default=20, help="batches timed per loader measurement")
    data.add_argument("--step-steps", type=int, default=2, help="timed training steps for the step's rate")
    for p in (step, data):
        p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the machine has 2 cores)")
        p.add_argument("--smoke", action="store_true", help="tiny sizes and a couple of steps: checks, not figures")
    args = parser.parse_args(argv)
    if args.smoke:
        args.threads = 1  # two threads on a busy 2-core machine stall at every OpenMP barrier
    if args.command == "step":
        if args.smoke:
            args.repeats, args.warmup, args.steps = 2, 1, args.steps or 1
        cmd_step(args)
    else:
        if args.smoke:
            args.workers, args.batches, args.step_steps = [0], 2, 1
        cmd_data(args)


if __name__ == "__main__":
    sys.exit(main())
