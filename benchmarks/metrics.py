"""Library metrics against the hand-written versions they replaced (issue 12): agreement and CPU time.

factorlab computes SSIM with pytorch-msssim, the confusion matrix, macro F1, PCA and ROC AUC with
scikit-learn and entropies with scipy; the hand-written versions they replaced are kept below as the
reference. Mutual information stays hand-written (one bincount for all dims) because it is measured
faster than sklearn's one-column-at-a-time `mutual_info_score`: that row compares it with sklearn.

    OMP_NUM_THREADS=1 python benchmarks/metrics.py           # about a minute
    python benchmarks/metrics.py --smoke                     # tiny sizes (what the tests run)

Prints a Markdown table: per function the CPU seconds of factorlab's version and of the other one
(best of `--repeats`, process time, so other jobs on the machine matter little) and the largest
absolute difference of their results. PCA components are compared up to sign: sklearn fixes each
component's sign, `np.linalg.svd` left it to LAPACK.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from factorlab import metrics, swap

# ---------------------------------------------------------------------------------------------
# the former hand-written versions


def former_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The former factorlab.swap.ssim: 2-D Gaussian window, valid positions, float64."""
    a, b = a.double(), b.double()
    channels = a.shape[1]
    window = swap.gaussian_window().to(a).expand(channels, 1, 11, 11)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(dim=1).float()


def former_confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def former_macro_f1(confusion: np.ndarray) -> float:
    confusion = np.asarray(confusion, dtype=np.float64)
    tp, true_n, pred_n = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    present = (true_n + pred_n) > 0
    return float((2 * tp[present] / (true_n[present] + pred_n[present])).mean())


def former_pca(x: np.ndarray, k: int) -> np.ndarray:
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return (x - mean) @ vt[:k].T


def former_entropy(y: np.ndarray) -> float:
    p = np.bincount(y) / len(y)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def former_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    negative = np.sort(negative)
    below = np.searchsorted(negative, positive, side="left")
    tied = np.searchsorted(negative, positive, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(positive) * len(negative)))


def sklearn_mutual_info(discrete: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(discrete[:, d], y) for d in range(discrete.shape[1])])


# ---------------------------------------------------------------------------------------------


def cpu_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best process time of `repeats` calls (after one warm-up call) and the last result."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def max_diff(a, b, up_to_sign: bool = False) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if up_to_sign:  # align each column's sign
        b = b * np.where((a * b).sum(axis=0) < 0, -1.0, 1.0)
    return float(np.abs(a - b).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    s = args.smoke
    repeats = 1 if s else args.repeats
    rows = []

    def row(name: str, ours: str, other: str, size: str, fn_ours, fn_other, up_to_sign: bool = False) -> None:
        t_ours, r_ours = cpu_seconds(fn_ours, repeats)
        t_other, r_other = cpu_seconds(fn_other, repeats)
        rows.append((name, ours, other, size, t_ours, t_other, max_diff(r_ours, r_other, up_to_sign)))

    pairs, side = (4, 16) if s else (200, 64)
    a = torch.rand(pairs, 3, side, side, generator=g)
    b = (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    row("ssim", "pytorch-msssim, float64", "former 2-D conv, float64", f"{pairs} pairs 3x{side}x{side}",
        lambda: swap.ssim(a, b), lambda: former_ssim(a, b))  # fmt: skip

    n, k = (200, 7) if s else (10000, 500)
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    row("confusion_matrix", "sklearn", "former bincount", f"N={n}, {k} classes",
        lambda: metrics.confusion_matrix(y_true, y_pred, k), lambda: former_confusion(y_true, y_pred, k))  # fmt: skip
    confusion = former_confusion(y_true, y_pred, k)
    row("macro_f1", "sklearn f1_score", "former formula", f"N={n}, {k} classes",
        lambda: metrics.macro_f1(confusion), lambda: former_macro_f1(confusion))  # fmt: skip
    row("discrete_entropy", "scipy.stats.entropy", "former formula", f"N={n}, {k} classes",
        lambda: metrics.discrete_entropy(y_true), lambda: former_entropy(y_true))  # fmt: skip

    for n, d, k in ((100, 20, 2), (120, 30, 8)) if s else ((3000, 1024, 2), (2000, 512, 64)):
        x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.1
        row("PCA", "sklearn (exact solver)", "former numpy SVD", f"{n} x {d} -> {k}",
            lambda x=x, k=k: metrics._pca(x, k).transform(x), lambda x=x, k=k: former_pca(x, k), up_to_sign=True)  # fmt: skip

    n, d, k = (300, 16, 5) if s else (10000, 256, 8)
    discrete = metrics.histogram_discretize(rng.normal(size=(n, d)), 20)
    y = rng.integers(0, k, n)
    row("discrete_mutual_info (kept)", "hand-written, one bincount", "sklearn mutual_info_score per dim",
        f"N={n}, {d} dims, {k} classes", lambda: metrics.discrete_mutual_info(discrete, y),
        lambda: sklearn_mutual_info(discrete, y))  # fmt: skip

    try:
        from factorlab_identity import roc_auc
    except ImportError:  # the identity plugin is a distribution of its own
        roc_auc = None
    if roc_auc is not None:
        n = 50 if s else 5000
        positive, negative = rng.normal(1, 1, n).round(2), rng.normal(0, 1, n).round(2)  # rounded: ties occur
        row("roc_auc (identity plugin)", "sklearn roc_auc_score", "former searchsorted", f"{n} + {n} scores",
            lambda: roc_auc(positive, negative), lambda: former_auc(positive, negative))  # fmt: skip

    print("| function | factorlab now | compared with | size | CPU s, now | CPU s, other | max abs difference |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: |")
    for name, ours, other, size, t_ours, t_other, diff in rows:
        print(f"| {name} | {ours} | {other} | {size} | {t_ours:.4f} | {t_other:.4f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
