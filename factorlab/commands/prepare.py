"""`factorlab prepare DATASET --root R [--out CACHE] [key=value ...]`: crop every face once into a cache.

Any registered data set whose registration carries a `source` (see `factorlab.api.Source`) can be
prepared, a plugin's as well as the built-in ones; the work is done by `factorlab.data.prepare`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from factorlab.commands import args as types
from factorlab.commands.args import allow_options_between_positionals
from factorlab.errors import DataError, RecipeError


def __getattr__(name: str):
    """0.1 names, kept working: `prepare` (now in factorlab.data.prepare) and `SOURCES` (now the registry)."""
    if name == "prepare":
        from factorlab.data.prepare import prepare

        return prepare
    if name == "SOURCES":
        import warnings

        warnings.warn(
            "factorlab.commands.prepare.SOURCES is deprecated: data sets name their source in the registry "
            "(entry.meta['source']); use factorlab.commands.prepare.source_of(name)",
            DeprecationWarning,
            stacklevel=2,
        )
        return {name: source_of(name) for name in preparable()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preparable() -> list[str]:
    """Registered data sets that `factorlab prepare` can cache (their registration names a source)."""
    from factorlab.plugins import get_host

    return [entry.name for entry in get_host().registry("datasets") if entry.meta.get("source")]


def source_of(name: str):
    """The `Source` a registered data set gives `prepare`, or an error naming the ones that have one."""
    from factorlab.plugins import get_host
    from factorlab.registry import resolve

    entry = get_host().get("datasets", name)
    ref = entry.meta.get("source")
    if not ref:
        raise DataError(
            f"data set {name!r} (plugin {entry.plugin!r}) cannot be prepared: its registration names no `source`; "
            f"data sets that can: {', '.join(preparable()) or '(none)'}"
        )
    return resolve(ref, f"source of data set {name!r}")


def config_from_args(source, root: Path, overrides: list[str]):
    """The data set's config from --root and key=value overrides (on_error defaults to 'skip' here)."""
    from factorlab.recipe import apply_override, parse_override

    data: dict = {"root": str(root), "on_error": "skip"}
    for override in overrides:
        key, value = parse_override(override)
        apply_override(data, key, value, override)
    try:
        return source.config.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in exc.errors()]
        fields = ", ".join(source.config.model_fields)
        raise RecipeError(
            f"options of data set {source.name!r} are not valid:\n" + "\n".join(lines) + f"\n  (its keys: {fields})"
        ) from None


def add_prepare_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """factorlab prepare DATASET --root R [--out CACHE] [key=value ...]"""
    parser.add_argument(
        "dataset", help="a registered data set with a source (affectnet, ckplus, ...; see `factorlab ls datasets`)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="data-set options, e.g. align=landmarks")
    parser.add_argument("--root", type=Path, required=True, help="the data set's folder, in its official layout")
    parser.add_argument("--out", type=Path, help="cache folder (default .factorlab-cache/DATASET-SIZE)")
    parser.add_argument(
        "--image-size",
        type=types.int_range(16, 1024, "an image side"),
        default=160,
        help="side of the square face crops (default 160)",
    )
    parser.add_argument("--shard-size", type=types.count, default=1000, help="images per shard (default 1000)")
    parser.add_argument(
        "--workers",
        type=types.count,
        default=max(1, min(4, (os.cpu_count() or 1) - 1)),
        help="worker processes (spawned)",
    )
    parser.add_argument(
        "--device", type=types.device, default="cpu", help="device MTCNN runs on, e.g. cuda (then use --workers 1)"
    )
    parser.add_argument("--batch-size", type=types.count, default=16, help="images per MTCNN batch")
    allow_options_between_positionals(parser)  # also when the factory is used without factorlab.cli (idempotent)
    parser.epilog = "example: factorlab prepare affectnet --root /data/AffectNet --image-size 160 align=landmarks"

    def handle(args: argparse.Namespace) -> int:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from factorlab.data.prepare import prepare

        source = source_of(args.dataset)
        config = config_from_args(source, args.root, args.overrides)
        out = args.out or Path(".factorlab-cache") / f"{args.dataset}-{args.image_size}"
        console = Console(stderr=True, highlight=False)
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.0f} images/s"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"prepare {args.dataset}", total=None, rate=0.0)
            baseline: list[tuple[int, float]] = []  # the first report: images already done (resumed), and when

            def on_progress(done: int, total: int) -> None:
                now = time.perf_counter()
                if not baseline:
                    baseline.append((done, now))
                rate = (done - baseline[0][0]) / max(now - baseline[0][1], 1e-9)
                bar.update(task, completed=done, total=total, rate=rate)

            result = prepare(
                source,
                config,
                out,
                image_size=args.image_size,
                shard_size=args.shard_size,
                workers=args.workers,
                device=args.device,
                batch_size=args.batch_size,
                on_progress=on_progress,
            )
        console.print(
            f"cache {result.out}: {result.images} images in {result.shards} shards, {result.skipped} skipped, "
            f"{sum(result.dropped.values())} dropped (listed in {result.out / 'report.txt'}); "
            f"{result.seconds:.1f} s. Use it with data.cache={result.out}"
        )
        return 0

    return handle
