"""What a command shows and a run logs: progress of every slow phase, metrics.jsonl, TensorBoard, a summary table.

Output modes (`set_mode`, chosen by the CLI's `--quiet` / `--json`):

- ``auto`` (default): ``rich`` on a terminal, ``plain`` otherwise;
- ``rich``: live progress bars that vanish when a phase ends, leaving one line per phase;
- ``plain``: one line per event, never wrapped (CI logs, ``| tee``): a phase's start, a line about every
  ``PLAIN_EVERY_S`` seconds while it runs, and its end;
- ``quiet``: nothing but what a command prints as its result (`factorlab run --quiet` prints the run folder);
- ``json``: one JSON object per line on stdout (``{"event": ..., ...}``), for scripts.

Only the main process of a torchrun group shows anything (RANK 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

MODES = ("auto", "rich", "plain", "quiet", "json")
SHOW_AFTER_S = 1.0  # a phase that ends sooner prints nothing
PLAIN_EVERY_S = 10.0  # plain mode: at most one progress line per phase this often
WIDE = 1000  # columns of a console that is not a terminal: rich would wrap logs at 80 otherwise


def make_console(*, stderr: bool = False, file=None) -> Console:
    """A rich console that wraps only on a terminal: written to a file or a pipe, each line stays one line."""
    console = Console(stderr=stderr, file=file, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, file=file, highlight=False, soft_wrap=True, width=WIDE)
    return console


console = make_console()
_mode = "auto"


def set_mode(mode: str) -> None:
    """Choose the output mode of this process (one of `MODES`)."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"output mode {mode!r}: use one of {', '.join(MODES)}")
    _mode = mode


def mode() -> str:
    """The effective output mode: 'auto' resolved to 'rich' or 'plain'; 'quiet' on processes other than rank 0."""
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return "quiet"
    if _mode == "auto":
        return "rich" if console.is_terminal else "plain"
    return _mode


def emit(event: str, text: str | None, **fields) -> None:
    """One event: a line of `text` (rich/plain), a JSON object (json), nothing (quiet)."""
    current = mode()
    if current == "json":
        sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        sys.stdout.flush()
    elif current in ("rich", "plain") and text is not None:
        console.print(text, soft_wrap=True, markup=False)
        console.file.flush()  # each event at once, also when stdout is a pipe


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Task:
    """A running phase: `advance(n)` moves it on; its progress shows according to the output mode."""

    def __init__(self, name: str, description: str, total: int | None, unit: str) -> None:
        self.name, self.description, self.total, self.unit = name, description, total, unit
        self.done = 0
        self.started = time.perf_counter()
        self._last_line = self.started
        self._progress: Progress | None = None
        self._task = None
        self._timer: threading.Timer | None = None
        self.shown = False  # whether the start line was printed (plain, json)
        self.mode = mode()
        if self.mode == "rich":
            columns = [TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
            if total:
                columns += [TextColumn("ETA"), TimeRemainingColumn()]
            self._progress = Progress(*columns, console=console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(name, total=total)
        elif self.mode in ("plain", "json"):  # a phase that ends within SHOW_AFTER_S leaves no line
            self._timer = threading.Timer(SHOW_AFTER_S, self._announce)
            self._timer.daemon = True
            self._timer.start()

    def _announce(self) -> None:
        if _active and _active[-1] is self and not self.shown:
            self.shown = True
            emit("phase", f"{self.description} ...", name=self.name, status="start", total=self.total)

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before any progress or without a total)."""
        elapsed = time.perf_counter() - self.started
        if not self.total or self.done <= 0:
            return None
        return elapsed / self.done * (self.total - self.done)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
            return
        now = time.perf_counter()
        if self.mode in ("plain", "json") and now - self._last_line >= PLAIN_EVERY_S:
            self._last_line, self.shown = now, True
            eta = self.eta()
            of = f"/{self.total}" if self.total else ""
            left = f", ETA {duration(eta)}" if eta is not None else ""
            emit(
                "progress",
                f"{self.description}: {self.done}{of} {self.unit}{left}".replace(" ,", ","),
                name=self.name,
                done=self.done,
                total=self.total,
                eta_s=eta,
            )

    def stop(self, ok: bool = True) -> float:
        seconds = time.perf_counter() - self.started
        if self._timer is not None:
            self._timer.cancel()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if ok and (self.shown or seconds >= SHOW_AFTER_S):
            emit("phase", f"{self.description}: done in {duration(seconds)}", name=self.name, status="done",
                 seconds=round(seconds, 3))  # fmt: skip
        return seconds


_active: list[Task] = []


@contextlib.contextmanager
def task(name: str, description: str, total: int | None = None, unit: str = "") -> Iterator[Task]:
    """Show a phase while it runs: `with task("data", "rendering SynthFaces", total=n) as t: ... t.advance(k)`.

    Nested tasks (a data set rendered inside 'loading the data') show the inner one only.
    """
    if _active and _active[-1]._progress is not None:  # one live display at a time: the inner phase shows
        _active[-1]._progress.stop()
        _active[-1]._progress = None
    current = Task(name, description, total, unit)
    _active.append(current)
    try:
        yield current
    except BaseException:
        current.stop(ok=False)
        raise
    finally:
        _active.remove(current)
    current.stop()


def advance(n: int = 1) -> None:
    """Advance the innermost running task (no-op when none runs): lets deep code report without a handle."""
    if _active:
        _active[-1].advance(n)


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


def next_commands(rundir: Path, *, decoder: bool) -> list[tuple[str, str]]:
    """What to try after a run: (command, what it gives)."""
    commands = [
        (f"factorlab eval {rundir}", "leakage probes, plots and report.html"),
        (f"factorlab predict {rundir} IMAGES...", "each face's class on your own images"),
    ]
    if decoder:
        commands.insert(1, (f"factorlab swap --run {rundir} --out swap.png", "faces with swapped codes"))
    commands.append(("factorlab runs", "all run folders with their headline numbers"))
    return commands


class Reporter:
    """Progress on the terminal and the run's logs (rank 0 only; other ranks get a disabled one)."""

    def __init__(self, rundir: Path, *, enabled: bool, total_epochs: int, steps_per_epoch: int) -> None:
        self.rundir, self.enabled = Path(rundir), enabled
        self.total_epochs, self.steps_per_epoch = total_epochs, steps_per_epoch
        self.progress: Progress | None = None
        self.task = None
        self.writer = None
        self.first_images = True  # example inputs go to TensorBoard once per process (also after a resume)
        self.epoch_started = 0.0
        self.epoch_times: list[float] = []
        self.last_line = 0.0
        self.images_per_s = 0.0
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.rundir / "tensorboard"))
            except ImportError:  # tensorboard not installed: metrics.jsonl still has everything
                self.writer = None

    def _eta_run(self, epoch: int, epoch_left_s: float) -> float | None:
        """Seconds left in the run: this epoch's rest plus the later epochs at the mean epoch time so far."""
        if not self.epoch_times:
            return None
        return epoch_left_s + (self.total_epochs - epoch - 1) * sum(self.epoch_times) / len(self.epoch_times)

    def start_epoch(self, epoch: int) -> None:
        self.epoch_started = self.last_line = time.perf_counter()
        if not self.enabled or mode() != "rich":
            return
        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.total_epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=self.steps_per_epoch, info="")

    def step(self, done: int, metrics: dict[str, float], images_per_s: float, epoch: int | None = None) -> None:
        self.images_per_s = images_per_s
        if not self.enabled:
            return
        shown = {k: v for k, v in metrics.items() if k.startswith(("head/", "adversary/")) and k.endswith("accuracy")}
        shown["total/loss"] = metrics.get("total/loss", float("nan"))
        if self.progress is not None:
            self.progress.update(self.task, completed=done, info=f"{_short(shown)}  {images_per_s:.0f} img/s")
            return
        now = time.perf_counter()
        if mode() in ("plain", "json") and now - self.last_line >= PLAIN_EVERY_S and done < self.steps_per_epoch:
            self.last_line = now
            left = (now - self.epoch_started) / done * (self.steps_per_epoch - done)
            run_left = self._eta_run(epoch or 0, left)
            eta = f"ETA epoch {duration(left)}" + (f", run {duration(run_left)}" if run_left is not None else "")
            label = f"epoch {epoch + 1}/{self.total_epochs}  " if epoch is not None else ""
            emit(
                "step",
                f"{label}step {done}/{self.steps_per_epoch}  {_short(shown)}  {images_per_s:.0f} img/s  {eta}",
                epoch=None if epoch is None else epoch + 1,
                step=done,
                steps=self.steps_per_epoch,
                images_per_s=images_per_s,
                eta_s=run_left if run_left is not None else left,
                **shown,
            )

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl and TensorBoard."""
        if not self.enabled:
            return
        with open(self.rundir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("epoch", "split") and isinstance(value, (int, float)):
                    # TensorBoard's step is the epoch counted from 1, as the console and the plots count it
                    self.writer.add_scalar(f"{record['split']}/{key}", value, record["epoch"] + 1)
            self.writer.flush()

    def add_image(self, tag: str, image, step: int) -> None:
        """One picture (C, H, W: float in [0, 1] or uint8) into TensorBoard at epoch index `step` (shown from 1)."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step + 1)
            self.writer.flush()

    def end_epoch(self, epoch: int, train: dict[str, float], val: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        seconds = time.perf_counter() - self.epoch_started
        self.epoch_times.append(seconds)
        if not self.enabled:
            return
        acc = {k: v for k, v in val.items() if k.endswith("accuracy")}
        left = self._eta_run(epoch, 0.0) or 0.0
        eta = f"  ETA {duration(left)}" if epoch + 1 < self.total_epochs else ""
        loss = train.get("total/loss", float("nan"))
        emit(
            "epoch",
            f"epoch {epoch + 1}/{self.total_epochs}  train loss {loss:.4f}  val {_short(acc) or '(not evaluated)'}  "
            f"{self.images_per_s:.0f} img/s  {duration(seconds)}{eta}",
            epoch=epoch + 1,
            epochs=self.total_epochs,
            seconds=round(seconds, 3),
            images_per_s=self.images_per_s,
            eta_s=left,
            train=train,
            val=val,
        )

    def close(self) -> None:
        """Stop the progress display and close the TensorBoard writer (safe to call twice)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self, summary: dict, *, decoder: bool = False) -> None:
        """The closing summary table, then where the results are and what to run next."""
        self.close()
        if not self.enabled:
            return
        info = summary.get("checkpoint") or {}
        scored = f", checkpoint {info['name']} ({info['file']}, epoch {info['epoch']})" if info else ""
        every = dict.fromkeys(k for values in summary["splits"].values() for k in values)  # the quick probe: test only
        keys = [k for k in every if k.endswith("accuracy") or k.startswith("reconstruction")]
        commands = next_commands(self.rundir, decoder=decoder)
        current = mode()
        if current == "json":
            splits = {split: {k: values.get(k) for k in keys} for split, values in summary["splits"].items()}
            emit("summary", None, name=summary["name"], rundir=str(self.rundir), checkpoint=info, splits=splits,
                 wall_time_s=summary["wall_time_s"], images_per_s=summary["images_per_s"])  # fmt: skip
            emit("next", None, commands=[command for command, _ in commands])
            return
        if current not in ("rich", "plain"):
            return
        table = Table(title=f"{summary['name']}: final metrics{scored}", title_justify="left")
        table.add_column("metric")
        for split in summary["splits"]:
            table.add_column(split, justify="right")
        for key in keys:
            values = (summary["splits"][split].get(key) for split in summary["splits"])
            table.add_row(key, *("–" if value is None else f"{value:.4f}" for value in values))
        console.print(table)
        console.print(
            f"{duration(summary['wall_time_s'])}, {summary['images_per_s']:.0f} images/s (training)", soft_wrap=True
        )
        console.print("next:", soft_wrap=True)
        width = max(len(command) for command, _ in commands)
        for command, what in commands:
            console.print(f"  {command:<{width}}   {what}", soft_wrap=True, markup=False)
        # the last line names the run folder again (scripts read it: `tail -1`), as the first line did
        console.print(f"run folder: {self.rundir}", soft_wrap=True, markup=False)
        console.file.flush()


_announced: set[str] = set()


def announce(rundir: Path) -> None:
    """The first line of a run: where its results go (`--quiet`: the bare path, for scripts); once per folder."""
    if str(rundir) in _announced:
        return
    _announced.add(str(rundir))
    if mode() == "quiet":
        if int(os.environ.get("RANK", "0") or 0) == 0:
            print(rundir, flush=True)
    else:
        emit("run_dir", f"run folder: {rundir}", path=str(rundir))
