"""Every hook factorlab calls. Plugins implement them with `@factorlab.hookimpl`.

All `factorlab_register_<kind>` hooks are *collecting* hooks: every implementation is called, and
each receives a `register` callable that adds parts to the registry of that kind:

    register(name, factory, *, config=<pydantic model class>, description="...")

`config` is the part's own options model (use `extra="forbid"`); the recipe section of the part is
validated against it. Return values are ignored, so plugins never merge results themselves.

Factory signatures, per kind (`config` is an instance of the registered config model):

- encoders:    factory(config, *, image_size: int) -> nn.Module; images (B, 3, H, W) in [0, 1] -> features
- branches:    factory(config, *, in_shape: tuple[int, ...]) -> nn.Module; features -> code
- heads:       factory(config, *, in_features: int, num_classes: int) -> nn.Module; flat code -> logits
- adversaries: factory(config, *, in_features: int, num_classes: int) -> factorlab.api.Adversary
- decoders:    factory(config, *, in_shape: tuple[int, ...], image_size: int) -> nn.Module; codes -> image in [0, 1]
- losses:      factory(config) -> nn.Module (reconstruction losses: (x, x_hat) -> scalar)
- datasets:    factory(config, *, split: str, image_size: int, factors: dict[str, Factor]) -> factorlab.api.FactorDataset
- factors:     factory(config) -> factorlab.api.Factor
- metrics:     factory(config) -> callable(codes: dict[str, ndarray], labels: dict[str, ndarray]) -> dict[str, float]
               codes: code name -> (N, dims) float32 of the evaluated split; labels: factor -> (N,) int64 (the
               recipe's factors plus the data set's discrete ground truth). A callable that also declares a
               keyword `context` receives a factorlab.api.MetricContext (train-split codes and labels, class
               names, seed, ...); one without it is called as in 0.1. Options: the recipe's
               [eval.options.<name>] or `factorlab eval --metric-option <name>.<key>=<value>`. A
               FactorlabError raised by the callable becomes a `note` in eval.json instead of failing the run.
- commands:    factory(parser: argparse.ArgumentParser) -> handler(args: argparse.Namespace) -> int
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

PROJECT = "factorlab"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callable every `factorlab_register_<kind>` hook receives.

    `register(name, factory, *, config=None, description="", **meta)`:
    - `factory`: the part's factory (signature per kind above), or a "package.module:attribute" string
      imported when the part is first built, so registering stays fast and free of heavy imports;
    - `config`: the part's pydantic options model (`extra="forbid"`), or such a string; None = no options;
    - `description`: one line for `factorlab ls` (default: the factory docstring's first line);
    - `**meta`: per-kind metadata (`factorlab.registry.META`); data sets take `labels` (factors they label),
      `ground_truth` (keys of `ground_truth()`, from which factors may derive labels) and `source`
      (a `factorlab.api.Source`: what `factorlab prepare` needs to cache it).
    """

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        config: Any = None,
        description: str = "",
        **meta: Any,
    ) -> None: ...


KINDS = (
    "encoders",
    "branches",
    "heads",
    "adversaries",
    "decoders",
    "losses",
    "datasets",
    "factors",
    "metrics",
    "commands",
)


@hookspec
def factorlab_register_encoders(register: Register) -> None:
    """Register encoders (shared trunks: image -> feature map). Collecting: every plugin is called."""


@hookspec
def factorlab_register_branches(register: Register) -> None:
    """Register branches (trunk features -> code). Collecting: every plugin is called."""


@hookspec
def factorlab_register_heads(register: Register) -> None:
    """Register heads (supervised classifiers: code -> factor logits). Collecting."""


@hookspec
def factorlab_register_adversaries(register: Register) -> None:
    """Register adversaries (a classifier plus the rule that trains the encoder against it). Collecting."""


@hookspec
def factorlab_register_decoders(register: Register) -> None:
    """Register decoders (concatenated codes -> image). Collecting."""


@hookspec
def factorlab_register_losses(register: Register) -> None:
    """Register reconstruction losses. Collecting."""


@hookspec
def factorlab_register_datasets(register: Register) -> None:
    """Register data sets. Collecting."""


@hookspec
def factorlab_register_factors(register: Register) -> None:
    """Register factors (expression, identity, ...). Collecting."""


@hookspec
def factorlab_register_metrics(register: Register) -> None:
    """Register evaluation metrics over codes and labels. Collecting."""


@hookspec
def factorlab_register_commands(register: Register) -> None:
    """Register `factorlab` sub-commands. Collecting."""
