"""factorlab predict RUNDIR INPUT...: each face's class and class probabilities for every head of a trained model."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from factorlab.errors import FactorlabError

#: Exit status when at least one input was skipped (not an image, corrupt, empty, too large, missing).
EXIT_SKIPPED = 3
FORMATS = ("table", "json", "jsonl", "csv")

EPILOG = """\
examples:
  factorlab predict runs/quickstart-20261201-101500 photos/             a table of every head's class
  factorlab predict RUNDIR photos/ --align mtcnn --format jsonl --out faces.jsonl    every face of every photo
  find /data -name '*.jpg' | factorlab predict RUNDIR - --format csv > predictions.csv
  factorlab predict model.onnx photos/                                  an exported model, run by ONNX Runtime

exit status: 0 every input was read; 3 some inputs were skipped (named on stderr), the rest predicted;
2 a user error (no run folder, no inputs, bad option).
"""

err = Console(stderr=True, highlight=False)


# factorlab.predict's values (a test checks they agree), here so that building the parser does not import torch:
# `factorlab --help` and the first line of `factorlab run` would wait seconds for it
ALIGN_MODES: tuple[str, ...] = ("none", "box", "mtcnn")
MAX_PIXELS = 89_478_485


def predict_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """factorlab predict RUNDIR INPUT... [--out FILE] [--format table|json|csv|jsonl] [--align none|box|mtcnn]"""
    parser.add_argument(
        "model", type=Path, metavar="RUNDIR", help="a run folder, or an .onnx file from factorlab export"
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive), or - for one path per stdin line"
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the results to FILE (default: stdout)")
    parser.add_argument("--format", default=None, choices=FORMATS, help="output format (default: table; with --out, "
                        "from its extension: .json, .jsonl, .csv)")  # fmt: skip
    parser.add_argument(
        "--align",
        default="none",
        choices=ALIGN_MODES,
        help="none: the image is a face crop (centre square); box: the largest face MTCNN finds; "
        "mtcnn: every face MTCNN finds (default none)",
    )
    parser.add_argument("--codes", action="store_true", help="also output each face's codes (json, jsonl, csv)")
    parser.add_argument(
        "--checkpoint", choices=["best", "last"],
        help="which checkpoint to load (default: the recipe's run.checkpoint, the one summary.json scores)",
    )  # fmt: skip
    # checked by the Predictor (before the checkpoint is read), so the message names --device and the value
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="threads decoding images (default 2)")
    parser.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
        help=f"skip images with more pixels than N (decompression bombs; default {MAX_PIXELS:,}, Pillow's limit)",
    )  # fmt: skip
    parser.epilog = EPILOG

    def handle(args: argparse.Namespace) -> int:
        from factorlab.predict import list_images, load

        fmt = output_format(args.format, args.out)
        if args.codes and fmt == "table":
            raise FactorlabError("--codes: codes do not fit in a table; use --format jsonl, json or csv")
        for name in ("batch_size", "workers", "max_pixels"):
            if getattr(args, name) < 1:
                raise FactorlabError(f"--{name.replace('_', '-')} {getattr(args, name)}: give a positive number")
        stdin_count = sum(1 for spec in args.inputs if spec == "-")
        if stdin_count > 1:
            raise FactorlabError("give - (paths on stdin) at most once")
        for spec in args.inputs:
            if spec != "-" and not Path(spec).exists():
                raise FactorlabError(f"input not found: {spec}; give image files, folders, or - for paths on stdin")
            if spec != "-" and (Path(spec) / "recipe.toml").is_file():
                raise FactorlabError(
                    f"input {spec} is a run folder, not a folder of images: give one run folder, then the images "
                    "(did a pattern such as runs/quickstart-*/ match several runs?)"
                )
        if args.out is not None and args.out.is_dir():
            raise FactorlabError(f"--out {args.out} is a folder; give a file name such as predictions.jsonl")

        predictor = load(args.model, checkpoint=args.checkpoint, device=args.device, align=args.align,
                         batch_size=args.batch_size)  # fmt: skip
        paths = list_images(args.inputs)
        total = None
        if not stdin_count:  # a folder's listing is paths only: cheap to hold, and it gives the bar a total
            paths = list(paths)
            total = len(paths)
            if not paths:
                raise FactorlabError(
                    f"no images in {' '.join(args.inputs)} (looked for {', '.join(sorted(_extensions()))})"
                )
        # --max-pixels is the only limit: read_image checks it on the header, before any pixel is decoded
        # (Pillow's own limit would refuse files above twice its default even when --max-pixels allows them)
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        counts = {"ok": 0, "no face": 0, "skipped": 0, "faces": 0}
        started = time.perf_counter()

        def write(stream: IO[str]) -> None:
            writer = make_writer(fmt, stream, predictor, codes=args.codes)
            with progress_bar(total) as (progress, task):
                for result in predictor.predict_files(
                    paths, codes=args.codes, max_pixels=args.max_pixels, workers=args.workers
                ):
                    counts[result.status] += 1
                    counts["faces"] += len(result.predictions)
                    if result.error:
                        progress.console.print(
                            f"[yellow]skipped[/] {escape(result.path)}: {escape(result.error)}", soft_wrap=True
                        )
                    else:
                        writer.add(result)
                    done = sum(counts[k] for k in ("ok", "no face", "skipped"))
                    rate = done / max(time.perf_counter() - started, 1e-9)
                    progress.update(task, completed=done, rate=f"{rate:.1f}")
            writer.close()

        if args.out is None:
            try:
                write(sys.stdout)
                sys.stdout.flush()
            except BrokenPipeError:  # the reader stopped early (`| head`): not an error, and no traceback at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return EXIT_SKIPPED if counts["skipped"] else 0
        else:
            from factorlab.files import atomic_write

            atomic_write(args.out, lambda tmp: _write_file(tmp, write))
        seconds = time.perf_counter() - started
        read = counts["ok"] + counts["no face"]
        line = f"{read} image(s) read, {counts['faces']} face(s) predicted"
        if counts["no face"]:
            line += f", {counts['no face']} image(s) with no face"
        if counts["skipped"]:
            line += f", {counts['skipped']} skipped"
        err.print(f"{line} in {seconds:.1f} s ({read / max(seconds, 1e-9):.1f} images/s)" +
                  (f"; wrote {args.out}" if args.out else ""))  # fmt: skip
        return EXIT_SKIPPED if counts["skipped"] else 0

    return handle


def _write_file(path: Path, write: Callable[[IO[str]], None]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        write(stream)


def _extensions() -> Iterable[str]:
    from factorlab.predict import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def output_format(fmt: str | None, out: Path | None) -> str:
    """The --format asked for, else the one --out's extension names, else a table."""
    if fmt:
        return fmt
    if out is not None:
        suffix = out.suffix.lower().lstrip(".")
        if suffix in ("json", "jsonl", "csv"):
            return suffix
    return "table"


class progress_bar:
    """A rich progress bar with images/s on stderr (stdout stays machine-readable); silent when not a terminal."""

    def __init__(self, total: int | None) -> None:
        self.progress = Progress(
            TextColumn("predict"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[rate]} images/s"),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self.total = total

    def __enter__(self):
        self.progress.start()
        return self.progress, self.progress.add_task("predict", total=self.total, rate="-")

    def __exit__(self, *exc) -> None:
        self.progress.stop()


# ---------------------------------------------------------------------------------------------
# Output formats: each writes one result at a time (json too: an array written element by element)


def records(result) -> list[dict]:
    """The JSON records of one image: one per face, or one saying it has no face."""
    if not result.predictions:
        return [{"path": result.path, "face": None, "box": None, "predictions": None}]
    return [{"path": result.path, **p.to_dict()} for p in result.predictions]


class JsonLinesWriter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def add(self, result) -> None:
        for record in records(result):
            self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class JsonWriter(JsonLinesWriter):
    """A JSON array, written element by element: valid once closed, never held in memory."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.first = True
        stream.write("[")

    def add(self, result) -> None:
        for record in records(result):
            self.stream.write(("\n" if self.first else ",\n") + json.dumps(record))
            self.first = False

    def close(self) -> None:
        self.stream.write("\n]\n" if not self.first else "]\n")
        self.stream.flush()


class CsvWriter:
    """path, face, box (x, y, w, h), detection, then per head its class and one probability column per class
    (`expression:happy`), then with --codes one column per code dimension (`exp[0]`)."""

    def __init__(self, stream: IO[str], predictor, *, codes: bool = False) -> None:
        self.stream, self.predictor = stream, predictor
        self.writer = csv.writer(stream)
        header = ["path", "face", "box_x", "box_y", "box_w", "box_h", "detection"]
        for head, classes in predictor.classes.items():
            header += [head, *(f"{head}:{c}" for c in classes)]
        self.code_sizes = predictor.code_sizes() if codes else {}
        for name, size in self.code_sizes.items():
            header += [f"{name}[{i}]" for i in range(size)]
        self.writer.writerow(header)

    def add(self, result) -> None:
        for record in records(result):
            box = record["box"] or [""] * 4
            row = [record["path"], "" if record["face"] is None else record["face"], *box, record.get("detection", "")]
            for head, classes in self.predictor.classes.items():
                pred = (record["predictions"] or {}).get(head)
                row += (
                    [pred["class"], *(pred["probabilities"][c] for c in classes)] if pred else [""] * (1 + len(classes))
                )
            for name, size in self.code_sizes.items():
                row += record["codes"][name] if record.get("codes") else [""] * size
            self.writer.writerow(row)
        self.stream.flush()

    def close(self) -> None:
        pass


class TableWriter:
    """A rich table of path, face, box and each head's class with its probability, printed when all are in."""

    def __init__(self, stream: IO[str], predictor) -> None:
        self.console = Console(file=stream, highlight=False, soft_wrap=False, width=None if stream.isatty() else 200)
        self.table = Table(box=None, pad_edge=False)
        for column in ("image", "face", "box (x, y, w, h)"):
            self.table.add_column(column)
        for head in predictor.classes:
            self.table.add_column(head)
        self.heads = list(predictor.classes)

    def add(self, result) -> None:
        if not result.predictions:
            self.table.add_row(escape(result.path), "-", "no face found", *[""] * len(self.heads))
        for p in result.predictions:
            box = ", ".join(f"{v:.0f}" for v in p.box) if p.box else "-"
            cells = [f"{p.classes[h]} {p.probabilities[h][p.classes[h]]:.0%}" for h in self.heads]
            self.table.add_row(escape(result.path), str(p.face), box, *(escape(c) for c in cells))

    def close(self) -> None:
        if self.table.row_count:
            self.console.print(self.table)


def make_writer(fmt: str, stream: IO[str], predictor, *, codes: bool = False):
    if fmt == "jsonl":
        return JsonLinesWriter(stream)
    if fmt == "json":
        return JsonWriter(stream)
    if fmt == "csv":
        return CsvWriter(stream, predictor, codes=codes)
    return TableWriter(stream, predictor)
