"""factorlab: supervised multi-factor disentanglement of face images, with plugins."""

from __future__ import annotations

from importlib import metadata

from factorlab import api

# the plugin API's light names, re-exported (`X as X`); its torch-based ones load on first use (__getattr__)
from factorlab.api import (
    KINDS as KINDS,
    DataError as DataError,
    Factor as Factor,
    FactorlabError as FactorlabError,
    MetricContext as MetricContext,
    NoOptions as NoOptions,
    PluginError as PluginError,
    RecipeError as RecipeError,
    Register as Register,
    hookimpl as hookimpl,
)

try:
    __version__ = metadata.version("factorlab")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"


def load_recipe(path, overrides=()):
    """Read and validate a recipe file (see factorlab.recipe.load_recipe)."""
    from factorlab.recipe import load_recipe as _load

    return _load(path, overrides)


def build_model(recipe, **kwargs):
    """Build the Disentangler a recipe describes (see factorlab.model.build_model)."""
    from factorlab.model import build_model as _build

    return _build(recipe, **kwargs)


def load(path, **kwargs):
    """A Predictor for a run folder or an exported .onnx file (see factorlab.predict.load)."""
    from factorlab.predict import load as _load

    return _load(path, **kwargs)


def __getattr__(name: str):
    if name == "Predictor":  # imported on first use: `import factorlab` stays free of torch
        from factorlab.predict import Predictor

        return Predictor
    if name in api.LAZY:  # the plugin API's torch-based names (Adversary, FactorDataset, ...)
        return getattr(api, name)
    raise AttributeError(f"module 'factorlab' has no attribute {name!r}")


# The plugin API (factorlab.api) plus the library's entry points.
__all__ = ["Predictor", "__version__", "build_model", "load", "load_recipe"]
__all__ += api.__all__
