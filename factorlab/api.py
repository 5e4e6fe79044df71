"""The plugin API: every name a plugin may import, re-exported as `factorlab.<name>`.

What is here is published: it keeps working across releases (a change goes through a deprecation
warning first). Anything else under `factorlab.` is internal. Importing this module is cheap: the
torch-based names (`Adversary`, `FactorDataset`, ...) are imported on first use, so a plugin's module
can import them at its top and still register without loading torch, as long as it touches them only
inside its factories.

Contracts, per kind (the factory signatures are in `factorlab.hookspecs`):
- `Factor`: a factor's name and classes; `derive` + `needs` make it label itself from ground truth.
- `Adversary`: `adversary_loss(code, target)` (its own step; None when nothing trains),
  `encoder_loss(code, target, progress)` (the encoder's term), `logits(code)` (accuracy, or None), and
  optionally `code_transform()` (a module the network passes the code through, e.g. a running eraser).
- `FactorDataset`: `classes`, `__len__`, `image(i)` (uint8 HxWx3), `labels(factor)` (int64 over samples),
  optionally `ground_truth()` (key -> array over samples) for factors that derive labels.
- `Source` (+ `SourceConfig`, `Sample`, `Scan`, `Skipped`): a real data set described by how to list it
  (`scan`), read an image and select a split; `Source.build` is its data-set factory, and registering the
  data set with `source=` lets `factorlab prepare` cache it.
- metrics: `factory(config) -> callable(codes, labels[, *, context: MetricContext]) -> dict[str, float]`;
  `MetricContext` carries the train split's codes and labels, class names and seed (`factorlab eval`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from factorlab.errors import DataError, FactorlabError, PluginError, RecipeError
from factorlab.evalmetrics import MetricContext
from factorlab.factors import Factor
from factorlab.hookspecs import KINDS, Register, hookimpl
from factorlab.registry import NoOptions

if TYPE_CHECKING:
    from factorlab.adversaries import Adversary, dann_lambda, grad_reverse
    from factorlab.data.base import FactorDataset, remap_labels
    from factorlab.data.records import Sample, Scan, Skipped, Source, SourceConfig
    from factorlab.heads import mlp_classifier
    from factorlab.losses import adversary_loss, classification_loss, uniform_confusion

#: name -> module of the names imported on first use (they need torch).
LAZY = {
    "Adversary": "factorlab.adversaries",
    "grad_reverse": "factorlab.adversaries",
    "dann_lambda": "factorlab.adversaries",
    "FactorDataset": "factorlab.data.base",
    "remap_labels": "factorlab.data.base",
    "Source": "factorlab.data.records",
    "SourceConfig": "factorlab.data.records",
    "Sample": "factorlab.data.records",
    "Scan": "factorlab.data.records",
    "Skipped": "factorlab.data.records",
    "mlp_classifier": "factorlab.heads",
    "uniform_confusion": "factorlab.losses",
    "adversary_loss": "factorlab.losses",
    "classification_loss": "factorlab.losses",
}

__all__ = [
    "KINDS",
    "Adversary",
    "DataError",
    "Factor",
    "FactorDataset",
    "FactorlabError",
    "MetricContext",
    "NoOptions",
    "PluginError",
    "RecipeError",
    "Register",
    "Sample",
    "Scan",
    "Skipped",
    "Source",
    "SourceConfig",
    "adversary_loss",
    "classification_loss",
    "dann_lambda",
    "grad_reverse",
    "hookimpl",
    "mlp_classifier",
    "remap_labels",
    "uniform_confusion",
]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'factorlab.api' has no attribute {name!r}")
