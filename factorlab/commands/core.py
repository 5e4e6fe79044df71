"""Core sub-commands: run, validate, plugins, ls, data."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from factorlab.commands import args as types
from factorlab.errors import FactorlabError
from factorlab.hookspecs import KINDS
from factorlab.progress import make_console

console = make_console()
Handler = Callable[[argparse.Namespace], int]


def _recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a TOML recipe, e.g. recipes/quickstart.toml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe values, e.g. run.epochs=3")


def run_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab run RECIPE [key=value ...]"""
    parser.add_argument("recipe", nargs="?", help="path to a TOML recipe, e.g. recipes/quickstart.toml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe values, e.g. run.epochs=3")
    parser.add_argument("--out", type=Path, help="folder that receives the run folder (overrides run.output)")
    parser.add_argument("--resume", type=Path, metavar="RUNDIR", help="continue a run from its last checkpoint")
    parser.add_argument(
        "--seeds", metavar="LIST",
        help="train once per seed (run.seed), e.g. 0,1,2 or 0-4, into one group folder; compare it with factorlab compare",
    )  # fmt: skip
    output_args(parser)
    # `run R --seeds 0,1,2 key=value` also when the factory is used without factorlab.cli (idempotent)
    types.allow_options_between_positionals(parser)
    parser.epilog = (
        "example: factorlab run recipes/quickstart.toml run.epochs=2\n"
        "         factorlab run --resume runs/quickstart-20261128-101500\n"
        "         factorlab run recipes/synth/expression.toml --seeds 0,1,2"
    )

    def handle(args: argparse.Namespace) -> int:
        set_output_mode(args)
        from factorlab.recipe import check_output, load_recipe
        from factorlab.resources import check_model_size

        if args.resume and args.seeds:
            raise FactorlabError("--resume and --seeds do not go together: resume each seed's run folder on its own")
        if args.resume and args.out:
            raise FactorlabError(f"--out does not go with --resume: the run continues in its own folder {args.resume}")
        if args.resume:
            if args.recipe:
                args.overrides = [args.recipe, *args.overrides]
            from factorlab.train import resume_run

            resume_run(args.resume, overrides=args.overrides)
        else:
            if not args.recipe:
                raise FactorlabError(
                    "factorlab run needs a recipe file (or --resume RUNDIR), e.g. factorlab run recipes/quickstart.toml"
                )
            overrides = list(args.overrides) + (
                [f"run.output={json.dumps(str(args.out), ensure_ascii=False)}"] if args.out else []
            )
            if args.seeds is not None:
                from factorlab.seeds import parse_seeds, run_group
                from factorlab.train import run_recipe

                recipe = load_recipe(args.recipe, overrides)
                check_output(recipe)
                check_model_size(recipe)
                group = run_group(args.recipe, overrides, parse_seeds(args.seeds), train=run_recipe, log=console.print)
                console.print(f"group folder: {group}")
                return 0
            recipe = load_recipe(args.recipe, overrides)
            check_output(recipe)
            rundir = None
            if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:  # name the folder at once: torch loads for seconds
                from factorlab.progress import announce
                from factorlab.runfolders import discard_unused_run_dir, new_run_dir

                rundir = new_run_dir(recipe)
                announce(rundir)
            try:
                check_model_size(recipe)  # counted on the meta device: nothing is allocated
            except BaseException:
                if rundir is not None:
                    discard_unused_run_dir(rundir)
                raise
            from factorlab.train import run_recipe

            run_recipe(recipe, rundir)  # prints the run folder first and what to run next at the end
        return 0

    return handle


def output_args(parser: argparse.ArgumentParser) -> None:
    """--quiet and --json: output for scripts."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print only the result (run: the run folder's path)")
    group.add_argument("--json", action="store_true", help="one JSON object per line on stdout ({'event': ...})")


def set_output_mode(args: argparse.Namespace) -> None:
    from factorlab.progress import set_mode

    set_mode("quiet" if args.quiet else "json" if args.json else "auto")


def validate_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab validate RECIPE [key=value ...]"""
    _recipe_args(parser)
    parser.add_argument("--print", action="store_true", help="print the resolved recipe as TOML")

    def handle(args: argparse.Namespace) -> int:
        from factorlab.recipe import check_output, load_recipe

        recipe = load_recipe(args.recipe, args.overrides)
        check_output(recipe)
        if args.print:
            print(recipe.to_toml(), end="")
        else:
            console.print(f"[green]ok[/]: {args.recipe} is a valid recipe")
        return 0

    return handle


def plugins_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab plugins"""
    parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(args: argparse.Namespace) -> int:
        from factorlab.plugins import get_host

        infos = get_host().plugins
        if args.json:
            print(json.dumps([info.__dict__ for info in infos], indent=2))
            return 0
        table = Table(title="factorlab plugins")
        for column in ("plugin", "version", "module", "status", "registered"):
            table.add_column(column)
        for info in infos:
            registered = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registered.items())
            status = {"loaded": "[green]loaded[/]", "disabled": "[yellow]disabled[/]"}.get(
                info.status, "[red]failed[/]"
            )
            table.add_row(info.name, info.version, info.module, status, registered or info.error)
        console.print(table)
        return 0

    return handle


def ls_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab ls [KIND]"""
    parser.add_argument("kind", nargs="?", choices=[*KINDS, "recipes"], help="one kind of part, or 'recipes'")

    def handle(args: argparse.Namespace) -> int:
        from factorlab.plugins import get_host

        host = get_host()
        kinds = [args.kind] if args.kind else [*KINDS, "recipes"]
        for kind in kinds:
            table = Table(title=kind, title_justify="left")
            table.add_column("name")
            table.add_column("plugin" if kind != "recipes" else "first line")
            if kind != "recipes":
                table.add_column("description")
                for entry in host.registry(kind):
                    table.add_row(entry.name, entry.plugin, entry.description)
            else:
                for path in sorted(Path("recipes").rglob("*.toml")):
                    first = path.read_text(encoding="utf-8").splitlines()[:1]
                    table.add_row(str(path), (first[0] if first else "").lstrip("# "))
            console.print(table)
        return 0

    return handle


def data_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab data preview DATASET [key=value ...] --out grid.png"""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    preview = sub.add_parser("preview", help="write a picture grid of a data set")
    preview.add_argument("dataset", help="a registered data set, e.g. synthfaces")
    preview.add_argument("options", nargs="*", metavar="key=value", help="data-set options, e.g. difficulty=0.5")
    preview.add_argument("--out", type=Path, default=Path("grid.png"), help="PNG file to write (default grid.png)")
    preview.add_argument("--image-size", type=types.int_range(16, 1024, "an image side"), default=64)

    def handle(args: argparse.Namespace) -> int:
        from factorlab.data.preview import preview_dataset

        path = preview_dataset(args.dataset, args.options, image_size=args.image_size, out=args.out)
        console.print(f"wrote {path}")
        return 0

    return handle
