"""Argument types for the sub-commands: a bad value is an argparse error (exit 2) naming the option."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from factorlab.recipe import DEVICE, DEVICE_HELP, MAX_SEED


def int_range(low: int, high: int | None = None, what: str = "a whole number") -> Callable[[str], int]:
    """An int between `low` and `high` (inclusive; no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of {low} or more"
            raise argparse.ArgumentTypeError(f"{value}: give {what} {span}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


#: A seed: 0 to 2**63-1 (what torch and numpy both accept).
seed = int_range(0, MAX_SEED, "a seed")
#: A count of things (pairs, samples, workers, images): 1 or more.
count = int_range(1, None, "a count")


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; {DEVICE_HELP}")
    return text


def allow_options_between_positionals(parser: argparse.ArgumentParser) -> None:
    """Let `prepare DATASET --root R key=value` parse: plain argparse stops taking positionals after an option."""
    if getattr(parser, "_factorlab_intermixed", False):
        return
    parser._factorlab_intermixed = True  # type: ignore[attr-defined]
    plain = parser.parse_known_args
    inside = [False]

    def parse_known_args(args=None, namespace=None):
        if inside[0]:  # parse_known_intermixed_args calls back into parse_known_args
            return plain(args, namespace)
        inside[0] = True
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            inside[0] = False

    parser.parse_known_args = parse_known_args


def allow_options_between_positionals_in(parser: argparse.ArgumentParser) -> None:
    """`allow_options_between_positionals` for a command and its sub-commands, wherever argparse can intermix.

    Every command then reads `CMD A --flag X B` like `CMD A B --flag X` (plugins' commands too). argparse cannot
    intermix a parser that has sub-commands or a REMAINDER positional: those are left as they are, and their
    sub-commands are visited.
    """
    positional = [a for a in parser._actions if not a.option_strings]
    for action in positional:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                allow_options_between_positionals_in(child)
    if any(a.nargs in (argparse.REMAINDER, argparse.PARSER) for a in positional):
        return
    if any(not a.option_strings for group in parser._mutually_exclusive_groups for a in group._group_actions):
        return
    if any(a.nargs in ("*", "+", "?") or isinstance(a.nargs, int) and a.nargs > 1 for a in positional):
        allow_options_between_positionals(parser)
