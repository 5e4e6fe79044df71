"""A small typed registry: name -> entry (factory, config model, description, plugin)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from factorlab.errors import PluginError, UnknownNameError


class NoOptions(BaseModel):
    """Config model of a part that takes no options."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Entry:
    """One registered part."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config: type[BaseModel]
    description: str
    plugin: str


SINGULAR = {
    "encoders": "encoder",
    "branches": "branch",
    "heads": "head",
    "adversaries": "adversary",
    "decoders": "decoder",
    "losses": "loss",
    "datasets": "data set",
    "factors": "factor",
    "metrics": "metric",
    "commands": "command",
}


class Registry:
    """Name -> Entry for one kind of part; duplicates fail, unknown names list the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.singular = SINGULAR.get(kind, kind.rstrip("s"))
        self._entries: dict[str, Entry] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        config: type[BaseModel] | None = None,
        description: str = "",
        plugin: str = "?",
    ) -> Entry:
        """Register `factory` under `name`; a name taken by another plugin is an error."""
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.singular} with an empty or non-string name")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(
                f"duplicate {self.singular} name {name!r}: registered by plugin {other!r} and by plugin {plugin!r}; "
                f"disable one with FACTORLAB_DISABLE_PLUGINS={plugin}"
            )
        if config is not None and not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise PluginError(f"plugin {plugin!r}: config of {self.singular} {name!r} must be a pydantic model class")
        if not description:  # the first line of the factory's docstring
            description = next(iter((factory.__doc__ or "").strip().splitlines()), "")
        entry = Entry(self.kind, name, factory, config or NoOptions, description, plugin)
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Entry:
        """The entry for `name`, or an error listing the registered names and the closest match."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        choices = sorted(self._entries)
        close = difflib.get_close_matches(str(name), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(repr(c) for c in choices) or "(none registered)"
        return f"unknown {self.singular} {name!r}.{hint} Registered {self.kind}: {listed}"

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def list(self) -> list[Entry]:
        """Registered entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)
