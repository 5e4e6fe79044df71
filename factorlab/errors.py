"""Errors meant for people: the CLI prints them without a traceback and exits 2."""

from __future__ import annotations


class FactorlabError(Exception):
    """A user-facing error: what went wrong, where, and how to fix it."""


class RecipeError(FactorlabError):
    """A recipe (TOML file or override) is not valid."""


class UnknownNameError(FactorlabError):
    """A name that is not registered; the message lists the choices."""


class PluginError(FactorlabError):
    """A plugin is broken (duplicate name, bad registration)."""


class DataError(FactorlabError):
    """A data set is missing, malformed or empty."""
