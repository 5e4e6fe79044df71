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


class OutputError(FactorlabError):
    """An output location cannot be written (read-only, no permission, not a folder)."""


class DiskFullError(OutputError):
    """A write ran out of disk space."""


class RunFolderError(FactorlabError):
    """A run folder is in use, damaged, or does not fit the recipe it is resumed with."""


class ResourceError(FactorlabError):
    """A request would need more memory (or other resources) than the machine has."""
