"""factorlab runs [FOLDER...]: the run folders with their state and headline numbers (no torch import)."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from factorlab.errors import FactorlabError
from factorlab.files import read_json_object
from factorlab.runfolders import lock_holder_alive

Handler = Callable[[argparse.Namespace], int]

EPILOG = """\
examples:
  factorlab runs                         the run folders under runs/, newest first
  factorlab runs out/ --limit 5          the five newest under out/
  factorlab runs --json | jq .           one JSON object per run folder

columns: the test accuracy of each head, of each adversary and of the linear probe on the adversary's code
(end-of-run summary.json); 'eval' says whether `factorlab eval` wrote report.html.
"""


def _last_epoch(rundir: Path) -> int | None:
    """The last epoch metrics.jsonl logged (1-based, as the console counts), None when there is none."""
    try:
        lines = (rundir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            return record["epoch"] + 1
    return None


def _state(rundir: Path, summary: dict | None) -> str:
    if summary is not None:
        return "finished"
    lock = read_json_object(rundir / ".lock")
    return "running" if lock and lock_holder_alive(lock) else "stopped"  # another machine's lock: stopped


def _epochs(recipe_text: str) -> int | None:
    import tomllib

    try:
        run = tomllib.loads(recipe_text).get("run", {})
    except tomllib.TOMLDecodeError:
        return None
    epochs = run.get("epochs")
    return epochs if isinstance(epochs, int) else None


def headline(summary: dict | None, split: str = "test") -> dict[str, float]:
    """The accuracies worth a column: heads, adversaries and linear probes on `split` (short names)."""
    if not summary:
        return {}
    metrics = (summary.get("splits") or {}).get(split) or {}
    out = {}
    for key, value in metrics.items():
        if not isinstance(value, int | float) or not key.endswith("/accuracy"):
            continue
        parts = key.split("/")
        if parts[0] == "head":
            out[f"{parts[1]} head ({parts[2]})"] = value
        elif parts[0] == "adversary":
            out[f"{parts[1]} adversary ({parts[2]})"] = value
        elif parts[0] == "probe" and len(parts) > 3 and parts[3] == "linear":
            out[f"{parts[1]} probe ({parts[2]})"] = value
    return out


def describe(rundir: Path) -> dict:
    """One run folder: name, state, epochs done and planned, wall time, headline test accuracies."""
    summary = read_json_object(rundir / "summary.json")
    try:
        planned = _epochs((rundir / "recipe.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        planned = None
    wall = summary.get("wall_time_s") if summary else None
    return {
        "path": str(rundir),
        "name": (summary or {}).get("name") or rundir.name,
        "state": _state(rundir, summary),
        "epochs": _last_epoch(rundir),
        "planned_epochs": planned,
        "wall_time_s": wall if isinstance(wall, int | float) else None,
        "modified": (rundir / "recipe.toml").stat().st_mtime,
        "evaluated": (rundir / "report.html").is_file(),
        "test": headline(summary),
    }


def find_runs(roots: list[Path], depth: int = 3) -> list[Path]:
    """Run folders (with a recipe.toml) under each root, down to `depth` levels (seed groups nest runs)."""
    found: list[Path] = []

    def walk(folder: Path, level: int) -> None:
        if (folder / "recipe.toml").is_file():
            found.append(folder)
            return
        if level >= depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            walk(child, level + 1)

    for root in roots:
        walk(root, 0)
    return found


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def runs_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab runs [FOLDER...] [--limit N] [--json]"""
    parser.add_argument("folders", nargs="*", type=Path, metavar="FOLDER", help="where to look (default: runs)")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="show the N newest (default 20; 0: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run folder, newest first")
    parser.epilog = EPILOG

    def handle(args: argparse.Namespace) -> int:
        roots = args.folders or [Path("runs")]
        missing = [str(root) for root in roots if not root.is_dir()]
        if missing:
            hint = "train one with `factorlab run recipes/quickstart.toml`" if not args.folders else "check the path"
            raise FactorlabError(f"no such folder: {', '.join(missing)}; {hint}")
        if args.limit < 0:
            raise FactorlabError(f"--limit {args.limit}: use a count >= 0 (0 shows all)")
        runs = sorted((describe(path) for path in find_runs(roots)), key=lambda r: r["modified"], reverse=True)
        shown = runs[: args.limit] if args.limit else runs
        if args.json:
            for run in shown:
                print(json.dumps(run))
            return 0
        from rich.table import Table

        from factorlab.progress import duration, make_console

        console = make_console()
        if not runs:
            console.print(f"no run folders under {', '.join(map(str, roots))}", soft_wrap=True)
            return 0
        columns = list(dict.fromkeys(key for run in shown for key in run["test"]))
        table = Table(title=f"{len(shown)} of {len(runs)} run folders, newest first (accuracy on test)",
                      title_justify="left")  # fmt: skip
        for header in ("run folder", "state", "epochs", "wall", *columns, "eval"):
            table.add_column(header, justify="right" if header in columns or header == "wall" else "left")
        for run in shown:
            epochs = f"{run['epochs'] or 0}/{run['planned_epochs'] or '?'}"
            wall = duration(run["wall_time_s"]) if run["wall_time_s"] is not None else "–"
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run["modified"]))
            table.add_row(
                f"{run['path']}\n[dim]{started}[/]" if console.is_terminal else run["path"],
                run["state"],
                epochs,
                wall,
                *(_pct(run["test"].get(key)) for key in columns),
                "report.html" if run["evaluated"] else "–",
            )
        console.print(table)
        return 0

    return handle
