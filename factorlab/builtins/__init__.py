"""factorlab's own parts, shipped as ordinary plugins (the way pytest ships its defaults).

The `core` entry point names this package; each module listed in `FACTORLAB_PLUGIN_MODULES` implements its own
`factorlab_register_<kind>` hooks, exactly as a third-party plugin module does, and is loaded as the
plugin `core.<module>` (so `FACTORLAB_DISABLE_PLUGINS=core.timm` works as for any plugin). Registrations
name their factories (and config models) by "module:attribute", so registering imports neither torch
nor a part's heavy dependencies: those load when a part is built.
"""

from __future__ import annotations

#: The built-in plugin modules, loaded in this order as `core.<name>`.
FACTORLAB_PLUGIN_MODULES = ("encoders", "parts", "erasure", "datasets", "metrics", "commands")
