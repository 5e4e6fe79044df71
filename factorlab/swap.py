"""Scoring code swaps against the true image; the swapping itself is `factorlab.synthesis` (re-exported here).

For two images X1, X2 the model gives codes c1, c2. X1' = De(c1) and X2' = De(c2) are the plain
reconstructions; X1'' = De(c1 with the swapped codes taken from c2) and X2'' likewise. With the
paper's two codes and `names=("exp",)`, X1'' is X1's identity (and everything else of X1) with X2's
expression.

On SynthFaces the renderer knows the true X1'': X1 re-rendered with the factors of the swapped codes
(the factors their heads predict) taken from X2. `score_swaps` compares every decoded swap with it
(PSNR, SSIM) and asks a judge, a classifier trained on true SynthFaces images, which expression and
identity it sees; the same scores for X1 itself, X2 itself and the plain reconstruction X1' are the
trivial answers a swap has to beat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as gaussian_ssim  # light: 0.5 ms on top of torch
from torch import Tensor, nn

from factorlab.data.base import labels_for_evaluation
from factorlab.data.loading import build_dataset, dataset_images, to_float_images
from factorlab.encoders.small_cnn import SmallCNN
from factorlab.errors import FactorlabError
from factorlab.files import atomic_write_text
from factorlab.metrics import stratified_halves
from factorlab.model import Disentangler
from factorlab.recipe import load_recipe
from factorlab.resources import check_memory
from factorlab.rundir import check_run_dir, load_run
from factorlab.synthesis import (  # re-exported: `factorlab.swap.<name>` keeps working for all of them
    GROUP_GAP,
    HEADER,
    MIN_TILE,
    PAD,
    GridLayout,
    Swap,
    add_truth,
    check_swappable,
    default_codes,
    grid_bytes,
    moved_factors,
    save_swap,
    swap_codes,
    swap_grid,
    synthesize,
    tile_scale,
    to_uint8,
)

__all__ = [
    "GROUP_GAP",
    "HEADER",
    "MIN_TILE",
    "PAD",
    "GridLayout",
    "Judge",
    "Swap",
    "add_truth",
    "check_decoder",
    "check_swappable",
    "default_codes",
    "evaluate_swaps",
    "format_scores",
    "gaussian_window",
    "grid_bytes",
    "load_decoder_run",
    "moved_factors",
    "psnr",
    "random_pairs",
    "save_swap",
    "score_bytes",
    "score_swaps",
    "ssim",
    "swap_codes",
    "swap_grid",
    "synthesize",
    "tile_scale",
    "to_uint8",
    "train_judge",
]


def score_bytes(pairs: int, image_size: int) -> int:
    """About how much memory scoring `pairs` swaps needs: 16 float images and 2 renders per pair."""
    return pairs * (16 * 3 * image_size**2 * 4 + 2 * 3 * image_size**2)


# ---------------------------------------------------------------------------------------------
# Image similarity


def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image (B,) in dB; identical images give 100 dB (MSE floored at 1e-10).

    Kept in torch rather than taken from a library: torchmetrics' `peak_signal_noise_ratio` agrees to
    4e-6 dB (1000 images 3x64x64) but importing torchmetrics takes ~2 s, and it gives inf for identical
    images, which json.dumps writes as `Infinity` (not JSON); pytorch-msssim has no PSNR.
    """
    mse = (a.float() - b.float()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-10 * data_range**2))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 2-D Gaussian window (size, size) of SSIM (Wang et al. 2004: 11x11, sigma 1.5).

    `ssim` applies the same window as two 1-D passes (pytorch-msssim); this 2-D form is for references and tests.
    """
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity per image (B,): Wang et al. 2004 with a Gaussian window, averaged over channels.

    pytorch-msssim's `ssim`: local statistics under the 11x11 Gaussian window (sigma 1.5) over valid
    positions only (no padding), K1 = 0.01, K2 = 0.03, as in the reference implementation; images
    smaller than the window are an error. Computed in float64 (the variance terms subtract nearly equal
    numbers, and float64 rules out TF32 convolutions on a GPU): it agrees with the window-by-window
    definition to 7e-8 and with the former hand-written 2-D convolution to 6e-8, and takes 0.24 s of CPU
    for 200 pairs of 3x64x64 images against that one's 4.4 s (benchmarks/metrics.py). torchmetrics'
    SSIM pads by reflection and differs from the definition by 4e-4 at 64x64, 2e-3 at 24x24.
    """
    if min(a.shape[-2:]) < size:
        raise FactorlabError(f"ssim needs images of at least {size}x{size} pixels, got {tuple(a.shape[-2:])}")
    index = gaussian_ssim(
        a.double(), b.double(), data_range=data_range, size_average=False, win_size=size, win_sigma=sigma
    )
    return index.float()


# ---------------------------------------------------------------------------------------------
# Pairs


def random_pairs(labels: dict[str, np.ndarray], n: int, *, seed: int = 0, pool: np.ndarray | None = None) -> np.ndarray:
    """`n` random pairs (i, j), shape (n, 2), of samples from `pool` that differ in every factor of `labels`.

    Pairs whose images differ in every factor make the trivial answers informative: X1 itself then
    never shows X2's expression, and X2 itself never shows X1's identity.
    """
    pool = np.arange(len(next(iter(labels.values())))) if pool is None else np.asarray(pool)
    if len(pool) < 2:
        raise FactorlabError(f"need at least two samples to draw pairs from, got {len(pool)}")
    most = len(pool) * (len(pool) - 1)
    if n > most:  # checked before drawing: the draws themselves take memory in proportion to n
        raise FactorlabError(
            f"--pairs {n}: the {len(pool)} samples to draw from give at most {most} different ordered pairs; "
            f"ask for at most {most} (or use a larger split)"
        )
    check_memory(64 * n, f"drawing {n} pairs", "ask for fewer pairs")
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int]] = []
    for _ in range(200):  # draws in bulk; almost all pairs qualify when each factor has several classes
        i, j = rng.choice(pool, size=(2, 4 * n))
        ok = np.ones(len(i), dtype=bool)
        for values in labels.values():
            ok &= values[i] != values[j]
        pairs += list(zip(i[ok].tolist(), j[ok].tolist(), strict=True))
        if len(pairs) >= n:
            return np.array(pairs[:n], dtype=np.int64)
    raise FactorlabError(
        f"could not find {n} pairs that differ in every factor of {sorted(labels)} among {len(pool)} samples; "
        "use a larger split or fewer pairs"
    )


# ---------------------------------------------------------------------------------------------
# The judge: a classifier trained on true images, which reads the factors of the synthesised ones


class Judge(nn.Module):
    """A small CNN with one linear head per factor, trained on true (rendered) images."""

    def __init__(self, classes: dict[str, int], widths: Sequence[int] = (32, 64, 128, 128)) -> None:
        super().__init__()
        self.trunk = SmallCNN(list(widths))
        self.pool = nn.AdaptiveAvgPool2d(4)  # 4x4 keeps where things are (hair, glasses) at any image size
        self.heads = nn.ModuleDict({f: nn.Linear(widths[-1] * 16, k) for f, k in classes.items()})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.pool(self.trunk(images)).flatten(1)
        return {factor: head(features) for factor, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Predicted class ids per factor for images (B, 3, H, W) in [0, 1]."""
        self.eval()
        device = next(self.parameters()).device
        out: dict[str, list[np.ndarray]] = {factor: [] for factor in self.heads}
        for start in range(0, len(images), batch_size):
            logits = self(images[start : start + batch_size].to(device).float())
            for factor, value in logits.items():
                out[factor].append(value.argmax(dim=1).cpu().numpy())
        return {factor: np.concatenate(parts) for factor, parts in out.items()}


def _random_blur(images: Tensor, generator: torch.Generator) -> Tensor:
    """Blur each image with a Gaussian of random sigma in [0, 1.5]: decoded images are softer than renders."""
    n, c, h, w = images.shape
    sigma = (torch.rand(n, generator=generator) * 1.5)[:, None]
    x = torch.arange(7, dtype=torch.float32) - 3
    g = torch.exp(-(x[None, :] ** 2) / (2 * sigma.clamp_min(0.3) ** 2))
    g = torch.where(sigma > 0.3, g, (x == 0).float())  # sigma <= 0.3 leaves the image as it is
    g = g / g.sum(dim=1, keepdim=True)
    windows = (g[:, :, None] * g[:, None, :]).repeat_interleave(c, dim=0)[:, None].to(images)  # (n*c, 1, 7, 7)
    padded = F.pad(images, (3, 3, 3, 3), mode="replicate").reshape(1, n * c, h + 6, w + 6)
    return F.conv2d(padded, windows, groups=n * c).reshape(n, c, h, w)  # one grouped conv for the whole batch


def train_judge(
    images: Tensor,
    labels: dict[str, np.ndarray],
    num_classes: dict[str, int],
    *,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> Judge:
    """Train a Judge on true images (N, 3, H, W) in [0, 1] with labels per factor (Adam, random blur)."""
    if len(images) < 2:
        raise FactorlabError(f"the judge needs at least two training images, got {len(images)}; use a larger split")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        judge = Judge(num_classes)
    targets = {factor: torch.from_numpy(np.asarray(values, dtype=np.int64)) for factor, values in labels.items()}
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)
    batch_size = max(2, min(batch_size, len(images)))  # BatchNorm needs two images; tiny sets use one batch
    steps = epochs * (len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    judge.train()
    step = 0
    while step < steps:
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            if step == steps:
                break
            index = order[start : start + batch_size]
            logits = judge(_random_blur(images[index], generator))
            loss = sum(F.cross_entropy(logits[f], targets[f][index]) for f in logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
    judge.eval()
    return judge


# ---------------------------------------------------------------------------------------------
# Scoring on a data set that can render the true swap


def _image_scores(answer: Tensor, truth: Tensor) -> dict[str, float]:
    return {"psnr": float(psnr(answer, truth).mean()), "ssim": float(ssim(answer, truth).mean())}


def _accuracies(predicted: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, float]:
    return {factor: float(np.mean(predicted[factor] == expected[factor])) for factor in expected}


@torch.no_grad()
def _decode_pairs(model: Disentangler, dataset, pairs: np.ndarray, names: Sequence[str], batch_size: int = 128):
    parts: list[Swap] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        parts.append(
            synthesize(model, dataset_images(dataset, chunk[:, 0]), dataset_images(dataset, chunk[:, 1]), names)
        )
    return Swap(*(torch.cat([getattr(p, f).cpu() for p in parts]) for f in ("x1", "x2", "rec1", "rec2", "swap1", "swap2")), tuple(names))  # fmt: skip


def score_swaps(
    model: Disentangler,
    dataset,
    names: Sequence[str] | None = None,
    *,
    pairs: int = 500,
    seed: int = 0,
    judge: Judge | None = None,
    judge_epochs: int = 15,
) -> dict:
    """Score swaps on a data set that renders true swaps (`render_with`, e.g. SynthFaces); see the module doc.

    The split's samples are halved class by class on identity: the judge is trained on one half (the
    split's identities are unseen in training, so a classifier must be fitted on them), and the pairs
    are drawn from the other half. Both directions of each pair are scored (X1'' and X2'').
    Returns plain data: image scores (PSNR, SSIM) and judge accuracies per answer, and the judge's own
    accuracy on held-out true images.
    """
    if not hasattr(dataset, "render_with"):
        raise FactorlabError(
            f"swap scoring needs a data set that renders the true swap (synthfaces); {type(dataset).__name__} "
            "does not. Look at the grid instead: factorlab swap --run RUNDIR --pairs 8"
        )
    names = check_swappable(model, names or default_codes(model))
    moved = moved_factors(model, names)
    if not moved:
        raise FactorlabError(
            f"no head reads the code(s) {list(names)}, so there is no factor whose true swap can be rendered; "
            f"swap a code that has a head, e.g. --codes {default_codes(model)[0]}"
        )
    size = int(dataset_images(dataset, [0]).shape[-1])
    check_memory(score_bytes(pairs, size), f"scoring {pairs} pairs", "ask for fewer pairs (e.g. --pairs 500)")
    judged = list(dict.fromkeys(link.factor for link in model.net.head_links))
    # held-out identities are no classes of the model, but the judge is fitted on this split: it needs them all
    views = {factor: labels_for_evaluation(dataset, factor) for factor in judged}
    labels = {factor: labels for factor, (labels, _) in views.items()}
    # halves stratified on the factor with the most classes (identity, when judged): each class in both halves
    fit, score = stratified_halves(max(labels.values(), key=lambda v: len(np.unique(v))), seed)
    num_classes = {factor: len(classes) for factor, (_, classes) in views.items()}

    # the judge, fitted on true images of the fit half; its accuracy on the score half is the ceiling
    if judge is None:
        judge = train_judge(
            dataset_images(dataset, fit),
            {f: v[fit] for f, v in labels.items()},
            num_classes,
            epochs=judge_epochs,
            seed=seed,
        )
    held_out = _accuracies(judge.predict(dataset_images(dataset, score)), {f: v[score] for f, v in labels.items()})

    pair_index = random_pairs({f: v[score] for f, v in labels.items()}, pairs, seed=seed)
    pair_index = score[pair_index]
    swap = _decode_pairs(model, dataset, pair_index, names)
    both = np.concatenate([pair_index, pair_index[:, ::-1]])  # (kept, giver): X1'' rows, then X2'' rows
    truth = to_float_images([dataset.render_with(int(i), int(j), factors=tuple(moved)) for i, j in both])
    expected = {f: v[both[:, 1]] if f in moved else v[both[:, 0]] for f, v in labels.items()}
    answers = {
        "swap": torch.cat([swap.swap1, swap.swap2]),
        "reconstruction": torch.cat([swap.rec1, swap.rec2]),
        "x1": torch.cat([swap.x1, swap.x2]),
        "x2": torch.cat([swap.x2, swap.x1]),
        "truth": truth,
    }
    result: dict = {
        "codes": list(names),
        "moved_factors": moved,
        "pairs": int(len(pair_index)),
        "answers": {
            "swap": "X1'' = De(X1's codes with X2's " + "+".join(names) + ")",
            "reconstruction": "X1' = De(X1's codes): the swap ignored",
            "x1": "X1 itself",
            "x2": "X2 itself",
            "truth": "the renderer's true image (accuracy ceiling)",
        },
        "image": {k: _image_scores(v, truth) for k, v in answers.items() if k != "truth"},
        "accuracy": {k: _accuracies(judge.predict(v), expected) for k, v in answers.items()},
        "autoencoding": _image_scores(torch.cat([swap.rec1, swap.rec2]), torch.cat([swap.x1, swap.x2])),
        "judge": {"held_out_accuracy": held_out, "fit_images": int(len(fit)), "chance": {
            f: float(1.0 / len(np.unique(v))) for f, v in labels.items()}},
    }  # fmt: skip
    return result


def evaluate_swaps(
    rundir: Path,
    *,
    split: str = "test",
    codes: Sequence[str] | None = None,
    pairs: int = 500,
    seed: int = 0,
    checkpoint: str | None = None,
    model: Disentangler | None = None,
    out_dir: Path | None = None,
) -> dict:
    """Score a run's swaps on `split` and write `swap_scores.json` into `out_dir` (default: the run folder)."""
    recipe, loaded = (
        load_decoder_run(rundir, checkpoint) if model is None else (load_recipe(Path(rundir) / "recipe.toml"), model)
    )
    names = tuple(codes) if codes else default_codes(loaded)
    dataset = build_dataset(recipe, split, loaded.factors)
    result = {"split": split, **score_swaps(loaded, dataset, names, pairs=pairs, seed=seed)}
    atomic_write_text(Path(out_dir or rundir) / "swap_scores.json", json.dumps(result, indent=2))
    return result


def load_decoder_run(rundir: Path, checkpoint: str | None = None):
    """(recipe, model) of a run that has a decoder; a clear error for a missing run or one without a decoder."""
    rundir = check_run_dir(rundir)
    check_decoder(load_recipe(rundir / "recipe.toml"), rundir)
    return load_run(rundir, checkpoint)


def check_decoder(recipe, rundir: Path) -> None:
    """A clear error when the run's recipe trains no decoder."""
    if not recipe.uses_decoder:
        why = "has no [decoder] section" if recipe.decoder is None else f"has loss.beta_rec = {recipe.loss.beta_rec}"
        raise FactorlabError(
            f"run {rundir} {why}, so it has no trained decoder and cannot synthesise images; train a recipe with a "
            "decoder and loss.beta_rec > 0, e.g. factorlab run recipes/synth/identity-swap.toml"
        )


def format_scores(result: dict) -> str:
    """A plain-text table of `score_swaps` output (one row per answer)."""
    factors = list(result["accuracy"]["swap"])
    head = f"{'answer':<16}{'PSNR dB':>9}{'SSIM':>8}" + "".join(f"{f + ' acc':>16}" for f in factors)
    lines = [head]
    for answer in ("swap", "reconstruction", "x1", "x2", "truth"):
        image = result["image"].get(answer)
        cells = f"{image['psnr']:>9.2f}{image['ssim']:>8.3f}" if image else f"{'-':>9}{'-':>8}"
        accs = "".join(f"{result['accuracy'][answer][f]:>16.3f}" for f in factors)
        lines.append(f"{answer:<16}{cells}{accs}")
    return "\n".join(lines)
