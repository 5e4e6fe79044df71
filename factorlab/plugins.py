"""The plugin manager: built-in parts and third-party plugins load the same way, via entry points.

Every plugin is a module (or object) listed in the `factorlab` entry-point group. Each one's
`factorlab_register_<kind>` hooks are called with a `register` callable; what a plugin registers is
committed only if all of its hooks succeed, so a broken plugin is reported by name and never takes
the others down. A name registered twice is an error naming both plugins.
"""

from __future__ import annotations

import importlib
import os
import traceback
import types
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from factorlab import hookspecs
from factorlab.errors import PluginError
from factorlab.registry import Entry, Registry

DISABLE_ENV = "FACTORLAB_DISABLE_PLUGINS"
CORE = "core"
#: A package whose module lists this attribute is a bundle: each listed submodule loads as its own plugin.
BUNDLE = "FACTORLAB_PLUGIN_MODULES"


@dataclass
class PluginInfo:
    """What `factorlab plugins` shows about one plugin."""

    name: str
    module: str
    version: str = ""
    status: str = "loaded"  # loaded | disabled | failed
    error: str = ""
    registered: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PluginHost:
    """The loaded plugins and one registry per kind of part."""

    manager: pluggy.PluginManager
    registries: dict[str, Registry]
    plugins: list[PluginInfo]

    def registry(self, kind: str) -> Registry:
        """The registry of `kind` (one of hookspecs.KINDS)."""
        return self.registries[kind]

    def get(self, kind: str, name: str) -> Entry:
        """The registered part `name` of `kind`; an unknown name lists the choices."""
        return self.registries[kind].get(name)


def disabled_plugins() -> set[str]:
    """Plugin names blocked through FACTORLAB_DISABLE_PLUGINS=a,b."""
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _entry_points() -> list[metadata.EntryPoint]:
    unique: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=hookspecs.PROJECT):
        other = unique.setdefault(ep.name, ep)
        if other.value != ep.value:  # two distributions claim one plugin name: neither may silently win
            raise PluginError(
                f"two plugins are named {ep.name!r}: {other.value} ({_dist_name(other)}) and {ep.value} "
                f"({_dist_name(ep)}); uninstall one of the distributions"
            )
    # core first, then by name: registration order must not depend on the file system.
    return sorted(unique.values(), key=lambda ep: (ep.name != CORE, ep.name))


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "unknown distribution"


def _error_text(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({frame.filename}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _collect(manager: pluggy.PluginManager, plugin: Any) -> list[tuple[str, tuple, dict]]:
    """Call one plugin's register hooks, staging what it registers."""
    staged: list[tuple[str, tuple, dict]] = []
    for kind in hookspecs.KINDS:
        caller = getattr(manager.hook, f"factorlab_register_{kind}")
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(*args: Any, _kind: str = kind, **kwargs: Any) -> None:
                staged.append((_kind, args, kwargs))

            impl.function(**{arg: register for arg in impl.argnames})  # every hook takes only `register`
    return staged


def load_plugins(extra: dict[str, Any] | None = None, *, entry_points: bool = True) -> PluginHost:
    """Load every plugin of the `factorlab` entry-point group (plus `extra` name -> plugin objects)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registries = {kind: Registry(kind) for kind in hookspecs.KINDS}
    infos: list[PluginInfo] = []
    blocked = disabled_plugins()

    candidates: list[tuple[str, str, str, Any]] = []  # name, module, version, loader
    if entry_points:
        for ep in _entry_points():
            version = ep.dist.version if ep.dist is not None else ""
            candidates.append((ep.name, ep.value, version, ep.load))
    for name, obj in (extra or {}).items():
        candidates.append((name, getattr(obj, "__name__", type(obj).__name__), "", lambda obj=obj: obj))

    queue = list(reversed(candidates))
    while queue:
        name, module, version, load = queue.pop()
        if name in blocked:
            infos.append(PluginInfo(name=name, module=module, version=version, status="disabled"))
            manager.set_blocked(name)
            continue
        info = PluginInfo(name=name, module=module, version=version)
        try:
            plugin = load()
            bundled = getattr(plugin, BUNDLE, None)
            if bundled is not None and isinstance(plugin, types.ModuleType):
                # a package of plugin modules (factorlab.builtins): each is its own plugin, `<name>.<module>`
                for sub in reversed(bundled):
                    target = f"{plugin.__name__}.{sub}"
                    queue.append((f"{name}.{sub}", target, version, lambda t=target: importlib.import_module(t)))
                continue
            manager.register(plugin, name=name)
        except Exception as exc:  # a plugin that fails to import is reported, the rest still load
            info.status, info.error = "failed", f"import failed: {_error_text(exc)}"
        infos.append(info)
        if info.status == "failed":
            continue
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            manager.unregister(name=name)
            info.status, info.error = "failed", f"invalid hook: {exc}"
            continue
        try:
            staged = _collect(manager, plugin)
            scratch = {kind: Registry(kind) for kind in hookspecs.KINDS}
            for kind, args, kwargs in staged:  # bad arguments fail this plugin alone, before anything is committed
                scratch[kind].add(*args, plugin=name, **kwargs)
        except Exception as exc:
            manager.unregister(name=name)
            info.status, info.error = "failed", f"registration failed: {_error_text(exc)}"
            continue
        for kind, args, kwargs in staged:
            entry = registries[kind].add(*args, plugin=name, **kwargs)
            info.registered.setdefault(kind, []).append(entry.name)
    return PluginHost(manager, registries, infos)


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    if _host is None:
        _host = load_plugins()
    return _host


def reset_host(host: PluginHost | None = None) -> None:
    """Forget (or replace) the process-wide plugin host; tests use this after changing plugins."""
    global _host
    _host = host


def failed_plugins(host: PluginHost) -> list[PluginInfo]:
    """Plugins that failed to import or register."""
    return [info for info in host.plugins if info.status == "failed"]


__all__ = ["PluginError", "PluginHost", "PluginInfo", "get_host", "load_plugins", "reset_host"]
