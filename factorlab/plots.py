"""Plots for runs and evaluations, written as PNG files (matplotlib, headless Agg backend)."""

from __future__ import annotations

import json
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


def figure_labels(fig: plt.Figure) -> dict:
    """The figure's title and each visible panel's title and axis labels (also written into the PNG's text)."""
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    panels = []
    for ax in fig.axes:
        if not ax.axison or ax.get_label() == "<colorbar>":
            continue
        panel = {"title": ax.get_title(), "x": ax.get_xlabel(), "y": ax.get_ylabel()}
        xs = [float(x) for line in ax.get_lines() for x in np.asarray(line.get_xdata(), dtype=float).ravel()]
        xs = [x for x in xs if np.isfinite(x)]
        if xs:
            panel["x_range"] = [min(xs), max(xs)]
        panels.append(panel)
    if not title and len(panels) == 1:  # a single panel's title is the figure's
        title = panels[0]["title"]
    return {"title": title, "panels": panels}


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write a PNG; its text chunk 'factorlab:labels' records the titles and axis labels (tests read it)."""
    labels = json.dumps(figure_labels(fig))
    try:
        return atomic_write(
            Path(path),
            lambda tmp: fig.savefig(
                tmp, dpi=100, bbox_inches="tight", format="png", metadata={"factorlab:labels": labels}
            ),
        )
    finally:
        plt.close(fig)


def _axis_name(metric: str) -> str:
    """The y-axis label of a metric: accuracies are fractions, losses have no unit."""
    if metric.endswith("accuracy"):
        return "accuracy (fraction, 1 = all correct)"
    if metric.endswith("loss"):
        return "loss (mean per image)"
    return metric.rsplit("/", 1)[-1]


def plot_training_curves(
    records: Iterable[Mapping], path: Path, *, metrics: Sequence[str] | None = None, title: str = "Training curves"
) -> Path:
    """One panel per metric (e.g. lines of metrics.jsonl), one line per split, against epoch (or step).

    Epochs are numbered from 1, as the console counts them (metrics.jsonl stores them from 0).
    """
    records = list(records)
    x_key = "epoch" if any("epoch" in r for r in records) else "step"
    shift = 1 if x_key == "epoch" else 0
    skip = {"epoch", "step", "split", "time", "wall_time_s"}
    if metrics is None:
        metrics = sorted({k for r in records for k, v in r.items() if k not in skip and isinstance(v, int | float)})
    ncols = min(3, max(1, len(metrics)))
    nrows = max(1, -(-len(metrics) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.2 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, metrics, strict=False):
        splits = sorted({str(r.get("split", "train")) for r in records if name in r})
        for split in splits:
            points = [
                (r[x_key] + shift, r[name]) for r in records if name in r and str(r.get("split", "train")) == split
            ]
            points.sort()
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None, label=split
            )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_key + (" (1 = first)" if shift else ""))
        ax.set_ylabel(_axis_name(name), fontsize=8)
        ax.grid(alpha=0.3)
        if shift:
            ax.xaxis.get_major_locator().set_params(integer=True)
        if len(splits) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    if not metrics:
        axes.flat[0].text(0.5, 0.5, "no metrics recorded", ha="center", va="center")
    fig.suptitle(title)
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
            ax.set_xlabel(f"{method} 1 (no unit)", fontsize=7)
            ax.set_ylabel(f"{method} 2 (no unit)", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{method} projections of each code (rows), coloured by each factor (columns)")
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
    xlabel: str = "factor",
    ylabel: str = "code",
    value_label: str = "",
) -> Path:
    """Annotated heatmap of a small matrix (e.g. importance of codes x factors)."""
    matrix = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(2.4 + 1.3 * len(columns), 1.4 + 0.6 * len(rows)))
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, label=value_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
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


def plot_probes(
    results: Sequence[Mapping], heads: Mapping[str, float], path: Path, *, split: str = "test", title: str = ""
) -> Path:
    """Leakage probes, one panel per factor: a bar per (code, probe), chance and the head's accuracy marked.

    `results` are the probe rows of `metrics.leakage_probes` (factor, code, probe, accuracy, chance);
    `heads[factor]` is the accuracy of the head trained for the factor: what the code meant to hold it reaches,
    the ceiling a leak is measured against. A bar at the chance line reads nothing; near the ceiling, everything.
    """
    factors = list(dict.fromkeys(r["factor"] for r in results))
    fig, axes = plt.subplots(1, max(1, len(factors)), figsize=(0.4 + 3.4 * max(1, len(factors)), 3.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    kinds = list(dict.fromkeys(r["probe"] for r in results))
    for ax, factor in zip(axes.flat, factors, strict=False):
        rows = [r for r in results if r["factor"] == factor]
        names = [f"{r['code']}\n{r['probe']}" for r in rows]
        values = [r["accuracy"] for r in rows]
        ax.bar(range(len(rows)), values, color=[colours(kinds.index(r["probe"])) for r in rows])
        for k, value in enumerate(values):
            ax.text(k, value + 0.02, f"{value:.0%}", ha="center", va="bottom", fontsize=7)
        chance = max(r["chance"] for r in rows)
        ax.axhline(chance, color="crimson", linestyle="--", linewidth=1.2, label=f"chance {chance:.0%}")
        if factor in heads:
            ax.axhline(heads[factor], color="forestgreen", linestyle=":", linewidth=1.5,
                       label=f"head accuracy {heads[factor]:.0%} (ceiling)")  # fmt: skip
        ax.set_xticks(range(len(rows)), names, fontsize=7)
        ax.set_ylim(0, 1.08)
        ax.set_title(f"{factor}: probe accuracy on {split}", fontsize=9)
        ax.set_xlabel("code and probe")
        ax.set_ylabel("accuracy (fraction)")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title or "Leakage probes: how much of each factor a fresh probe reads from each code")
    fig.tight_layout()
    return _save(fig, path)


def plot_image_grid(
    grid: np.ndarray,
    path: Path,
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    row_title: str,
    column_title: str,
    title: str,
) -> Path:
    """A tiled picture (uint8 H x W x 3, equal cells) with each row and column named on the axes."""
    height, width = grid.shape[:2]
    scale = 1 / 64  # about one inch per 64-pixel cell
    fig, ax = plt.subplots(figsize=(max(4.0, width * scale + 1.6), max(3.0, height * scale + 1.2)))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([(c + 0.5) * width / len(columns) for c in range(len(columns))], columns, rotation=30, ha="right",
                  fontsize=8)  # fmt: skip
    ax.set_yticks([(r + 0.5) * height / len(rows) for r in range(len(rows))], rows, fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel(column_title)
    ax.set_ylabel(row_title)
    ax.set_title(title, fontsize=10)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)
