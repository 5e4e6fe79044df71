"""What a run shows and logs: a rich progress bar, metrics.jsonl, TensorBoard scalars, a summary table."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(highlight=False)


def _short(metrics: dict[str, float]) -> str:
    """A compact one-line view of the key metrics: losses and accuracies."""
    parts = []
    for key, value in metrics.items():
        name = (
            key.replace("/accuracy", " acc")
            .replace("/loss", " loss")
            .replace("head/", "")
            .replace("adversary/", "adv ")
        )
        parts.append(f"{name} {value:.3f}")
    return "  ".join(parts)


class Reporter:
    """Progress on the terminal and the run's logs (rank 0 only; other ranks get a disabled one)."""

    def __init__(self, rundir: Path, *, enabled: bool, total_epochs: int, steps_per_epoch: int) -> None:
        self.rundir, self.enabled = Path(rundir), enabled
        self.total_epochs, self.steps_per_epoch = total_epochs, steps_per_epoch
        self.progress: Progress | None = None
        self.task = None
        self.writer = None
        self.first_images = True  # example inputs go to TensorBoard once per process (also after a resume)
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.rundir / "tensorboard"))
            except ImportError:  # tensorboard not installed: metrics.jsonl still has everything
                self.writer = None

    def start_epoch(self, epoch: int) -> None:
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.total_epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=self.steps_per_epoch, info="")

    def step(self, done: int, metrics: dict[str, float], images_per_s: float) -> None:
        if self.progress is not None:
            shown = {
                k: v for k, v in metrics.items() if k.startswith(("head/", "adversary/")) and k.endswith("accuracy")
            }
            shown["total/loss"] = metrics.get("total/loss", float("nan"))
            self.progress.update(self.task, completed=done, info=f"{_short(shown)}  {images_per_s:.0f} img/s")

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl and TensorBoard."""
        if not self.enabled:
            return
        with open(self.rundir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("epoch", "split") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{record['split']}/{key}", value, record["epoch"])
            self.writer.flush()

    def add_image(self, tag: str, image, step: int) -> None:
        """One picture (C, H, W: float in [0, 1] or uint8) into TensorBoard."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step)
            self.writer.flush()

    def end_epoch(self, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.enabled:
            acc = {k: v for k, v in val.items() if k.endswith("accuracy")}
            console.print(
                f"epoch {epoch + 1}/{self.total_epochs}  train loss {train.get('total/loss', float('nan')):.4f}  val {_short(acc)}"
            )
            console.file.flush()  # show each epoch at once, also when stdout is a pipe

    def close(self) -> None:
        """Stop the progress display and close the TensorBoard writer (safe to call twice)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self, summary: dict) -> None:
        """The closing summary table."""
        self.close()
        if not self.enabled:
            return
        info = summary.get("checkpoint") or {}
        scored = f", checkpoint {info['name']} ({info['file']}, epoch {info['epoch']})" if info else ""
        table = Table(title=f"{summary['name']}: final metrics{scored}", title_justify="left")
        table.add_column("metric")
        for split in summary["splits"]:
            table.add_column(split, justify="right")
        keys = [
            k
            for k in next(iter(summary["splits"].values()))
            if k.endswith("accuracy") or k.startswith("reconstruction")
        ]
        for key in keys:
            table.add_row(key, *(f"{summary['splits'][s].get(key, float('nan')):.4f}" for s in summary["splits"]))
        console.print(table)
        console.print(f"{summary['wall_time_s']:.1f} s, {summary['images_per_s']:.0f} images/s (training)")
