"""The `factorlab` command. Sub-commands are registered through the `factorlab_register_commands` hook."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from rich.text import Text

import factorlab
from factorlab.commands.args import allow_options_between_positionals_in
from factorlab.errors import FactorlabError, as_user_error
from factorlab.progress import make_console

EXAMPLES = """\
examples:
  factorlab run recipes/quickstart.toml                      train the quickstart (SynthFaces, CPU, ~2 min)
  factorlab run recipes/expression.toml data.root=/data/AffectNet   the paper's experiment
  factorlab validate recipes/expression.toml run.epochs=3    check a recipe and overrides without running
  factorlab ls encoders                                      registered parts of one kind
  factorlab plugins                                          plugins and what each registered
  factorlab data preview synthfaces --out grid.png           look at the SynthFaces data set

Any user error exits with status 2 and a short message; add --debug to see the traceback.
"""

err_console = make_console(stderr=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per registered command."""
    from factorlab.plugins import failed_plugins, get_host

    for info in failed_plugins(get_host()):
        err_console.print(
            Text.assemble(
                ("warning: ", "bold yellow"), f"plugin {info.name!r} ({info.module}) not loaded: {info.error}"
            )
        )
    parser = argparse.ArgumentParser(
        prog="factorlab",
        description="Supervised multi-factor disentanglement of face images.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"factorlab {factorlab.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in get_host().registry("commands"):
        command = sub.add_parser(
            entry.name,
            help=entry.description,
            description=entry.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.set_defaults(handler=entry.factory(command))
        allow_options_between_positionals_in(command)  # `validate R --print key=value` as well as `run R --seeds ...`
    return parser


# OpenMP's default lets idle threads spin for a while; next to another busy process on the same cores that spinning
# costs 3-7x in training speed (docs/performance.md). The CLI sets these unless the user did (`OMP_WAIT_POLICY=ACTIVE
# factorlab run ...` restores the OpenMP default). They must be set before torch is imported.
THREAD_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def set_thread_defaults(environ=os.environ) -> dict[str, str]:
    """Set each of THREAD_DEFAULTS the user has not set; returns the ones set."""
    chosen = {key: value for key, value in THREAD_DEFAULTS.items() if key not in environ}
    environ.update(chosen)
    return chosen


# glibc's malloc returns buffers above a threshold that moves with use (128 KiB at first) to the kernel on free,
# and a training step frees and reallocates its activations every time: each reuse page-faults again. In a
# `factorlab run` of the quickstart that was 2.6 million page faults against 1.0 million for a plain script, and
# 10% of its training speed (docs/performance.md). Fixed thresholds keep such buffers in the heap for reuse.
MALLOC_DEFAULTS = {"M_MMAP_THRESHOLD": (-3, 32 * 2**20), "M_TRIM_THRESHOLD": (-1, 256 * 2**20)}


def set_malloc_defaults(environ=os.environ) -> list[str]:
    """On glibc, set MALLOC_DEFAULTS with mallopt(3) unless the user set any MALLOC_* variable; returns those set."""
    if any(key.startswith("MALLOC_") for key in environ):
        return []
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return []
    return [name for name, (param, value) in MALLOC_DEFAULTS.items() if mallopt(param, value) == 1]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one message and return 2."""
    argv = sys.argv[1:] if argv is None else argv
    if "torch" not in sys.modules:  # too late once torch (and its OpenMP) is loaded
        set_thread_defaults()
        set_malloc_defaults()
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args([arg for arg in argv if arg != "--debug"])  # --debug works anywhere
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except FactorlabError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # a bug, or bad input that no check caught yet: still no wall of traceback
        if debug:
            raise
        user = as_user_error(exc)  # a full disk, a read-only place, no memory: the user's to fix
        if user is not None:
            err_console.print(Text.assemble(("error: ", "bold red"), str(user)), soft_wrap=True)
            return 2
        err_console.print(
            Text.assemble(
                ("error: ", "bold red"),
                f"unexpected {type(exc).__name__}: {exc}\n",
                "This is not a known user error. Rerun with --debug to see the traceback, and please report it.",
            ),
            soft_wrap=True,
        )
        return 1


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
