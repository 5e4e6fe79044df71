"""A small typed registry: name -> entry (factory, config model, description, plugin, metadata).

A factory or config model may be given as a "package.module:attribute" string: it is imported when a
part is first built or its options first validated, not when the plugin registers, so listing parts
(`factorlab ls`, `--help`) never imports torch or a plugin's heavy modules.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict

from factorlab.errors import PluginError, UnknownNameError


class NoOptions(BaseModel):
    """Config model of a part that takes no options."""

    model_config = ConfigDict(extra="forbid")


#: Metadata a registration may carry per kind (`register(name, factory, key=value)`); other keys are errors.
META: dict[str, dict[str, str]] = {
    "datasets": {
        "labels": "factor names the data set labels natively (None: only known once built)",
        "ground_truth": "ground-truth keys `dataset.ground_truth()` provides, from which factors may derive labels",
        "source": "a factorlab.api.Source (or 'module:attribute'): how `factorlab prepare` lists and reads it",
    },
}


def resolve(ref: Any, what: str) -> Any:
    """A "module:attribute" string -> the object it names; anything else is returned as it is."""
    if not isinstance(ref, str):
        return ref
    module, _, attribute = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attribute.split(".") if attribute else []:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{what}: cannot import {ref!r} ({type(exc).__name__}: {exc})") from None
    return obj


@dataclass(frozen=True)
class Entry:
    """One registered part. `factory` and `config` import lazily registered references on first use."""

    kind: str
    name: str
    target: Callable[..., Any] | str
    config_ref: type[BaseModel] | str | None
    description: str
    plugin: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def factory(self) -> Callable[..., Any]:
        """The part's factory (imported now if it was registered as a reference)."""
        factory = resolve(self.target, f"{self.kind[:-1]} {self.name!r} of plugin {self.plugin!r}")
        if not callable(factory):
            raise PluginError(f"plugin {self.plugin!r}: the factory of {self.name!r} ({self.target!r}) is not callable")
        return factory

    @property
    def config(self) -> type[BaseModel]:
        """The part's options model (imported now if it was registered as a reference)."""
        if self.config_ref is None:
            return NoOptions
        config = resolve(self.config_ref, f"config of {self.name!r} of plugin {self.plugin!r}")
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise PluginError(f"plugin {self.plugin!r}: config of {self.name!r} must be a pydantic model class")
        return config


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
        factory: Callable[..., Any] | str,
        *,
        config: type[BaseModel] | str | None = None,
        description: str = "",
        plugin: str = "?",
        **meta: Any,
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
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise PluginError(
                f"plugin {plugin!r}: the factory of {self.singular} {name!r} must be callable or a "
                f"'module:attribute' string, got {factory!r}"
            )
        if config is not None and not isinstance(config, str):
            if not (isinstance(config, type) and issubclass(config, BaseModel)):
                raise PluginError(
                    f"plugin {plugin!r}: config of {self.singular} {name!r} must be a pydantic model class"
                )
        allowed = META.get(self.kind, {})
        unknown = sorted(set(meta) - set(allowed))
        if unknown:
            known = ", ".join(allowed) or "none"
            raise PluginError(
                f"plugin {plugin!r}: unknown keyword(s) {unknown} registering {self.singular} {name!r}; "
                f"{self.kind} take: {known}"
            )
        if not description and callable(factory):  # the first line of the factory's docstring
            description = next(iter((factory.__doc__ or "").strip().splitlines()), "")
        entry = Entry(self.kind, name, factory, config, description, plugin, MappingProxyType(dict(meta)))
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
