"""Plots for runs and evaluations, written as PNG files (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

from factorlab.files import atomic_write

matplotlib.use("Agg")  # headless: runs on servers and in CI without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# above this many classes a legend is unreadable: colour by a continuous map instead
MAX_LEGEND_CLASSES = 12
# above this many classes per-cell numbers in a confusion matrix are unreadable
MAX_ANNOTATED_CLASSES = 20


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)


def plot_training_curves(records: Iterable[Mapping], path: Path, *, metrics: Sequence[str] | None = None) -> Path:
    """One panel per metric (e.g. lines of metrics.jsonl), one line per split, against epoch (or step)."""
    records = list(records)
    x_key = "epoch" if any("epoch" in r for r in records) else "step"
    skip = {"epoch", "step", "split", "time", "wall_time_s"}
    if metrics is None:
        metrics = sorted({k for r in records for k, v in r.items() if k not in skip and isinstance(v, int | float)})
    ncols = min(3, max(1, len(metrics)))
    nrows = max(1, -(-len(metrics) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, metrics, strict=False):
        splits = sorted({str(r.get("split", "train")) for r in records if name in r})
        for split in splits:
            points = [(r[x_key], r[name]) for r in records if name in r and str(r.get("split", "train")) == split]
            points.sort()
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None, label=split
            )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_key)
        ax.grid(alpha=0.3)
        if len(splits) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    if not metrics:
        axes.flat[0].text(0.5, 0.5, "no metrics recorded", ha="center", va="center")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path, *, title: str = "") -> Path:
    """Confusion matrix (rows true, columns predicted), coloured by row-normalised rate, annotated with counts."""
    confusion = np.asarray(confusion)
    k = len(classes)
    support = confusion.sum(axis=1, keepdims=True)
    rate = np.divide(confusion, support, out=np.zeros(confusion.shape, dtype=float), where=support > 0)
    size = min(12.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    if k <= MAX_ANNOTATED_CLASSES:
        ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                color = "white" if rate[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", color=color, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _scatter(ax: plt.Axes, points: np.ndarray, y: np.ndarray, class_names: Sequence[str] | None) -> None:
    values = np.unique(y)
    if len(values) <= MAX_LEGEND_CLASSES:
        cmap = plt.get_cmap("tab10" if len(values) <= 10 else "tab20")
        for n, value in enumerate(values):
            mask = y == value
            name = class_names[value] if class_names is not None and 0 <= value < len(class_names) else str(value)
            ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, color=cmap(n), label=name)
        ax.legend(fontsize=6, markerscale=2.5, loc="best", framealpha=0.6)
    else:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, c=np.searchsorted(values, y), cmap="turbo")


def plot_projections(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: Mapping[str, np.ndarray],
    classes: Mapping[str, Sequence[str]],
    path: Path,
    *,
    method: str = "PCA",
) -> Path:
    """Grid of 2-D projections: one row per code, one column per factor that colours the points.

    `points[code]` is `(xy, indices)` as returned by `metrics.project_2d`; the indices select the labels.
    """
    codes, factors = list(points), list(labels)
    fig, axes = plt.subplots(len(codes), len(factors), figsize=(3.6 * len(factors), 3.3 * len(codes)), squeeze=False)
    for r, code in enumerate(codes):
        xy, idx = points[code]
        for c, factor in enumerate(factors):
            ax = axes[r, c]
            _scatter(ax, np.asarray(xy), np.asarray(labels[factor])[idx], classes.get(factor))
            ax.set_title(f"{method} of code '{code}', coloured by {factor}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)


def plot_matrix(
    matrix: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    path: Path,
    *,
    title: str = "",
    fmt: str = "{:.2f}",
    vmin: float | None = 0.0,
    vmax: float | None = None,
) -> Path:
    """Annotated heatmap of a small matrix (e.g. probe accuracy or importance of codes x factors)."""
    matrix = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(columns), 1.0 + 0.6 * len(rows)))
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    top = np.nanmax(matrix) if np.isfinite(matrix).any() else 0.0
    for i in range(len(rows)):
        for j in range(len(columns)):
            value = matrix[i, j]
            text = "–" if not np.isfinite(value) else fmt.format(value)
            color = "black" if np.isfinite(value) and value > 0.6 * top else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
