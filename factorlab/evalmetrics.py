"""Registered metrics in `factorlab eval`: which run, with which options, and how each is called.

A metric's factory (registered through `factorlab_register_metrics`) takes its validated config and
returns a callable `metric(codes, labels)`. A metric that needs more than the evaluated split's codes
and labels (the train split's codes, the class names, which code a head reads) declares a keyword
parameter `context` and receives a `MetricContext`; metrics written against factorlab 0.1, which take
only `(codes, labels)`, are called exactly as before.

Which metrics run and their options come from the recipe's optional `[eval]` section
(`metrics = [...]`, `[eval.options.<metric>]`) and, on top of it, from `factorlab eval --metrics` and
`--metric-option <metric>.<key>=<value>`; every name and key is checked against the registry and the
metric's config model, with the recipe's error style (file:line, or the command-line option).

This module is light (no torch, no numpy import) so that recipes validate quickly.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from factorlab.errors import RecipeError

if TYPE_CHECKING:
    import numpy as np

    from factorlab.recipe import Recipe
    from factorlab.registry import Entry

__all__ = ["MetricContext", "accepts_context", "call_metric", "metric_plan"]


@dataclass(frozen=True)
class MetricContext:
    """What `factorlab eval` knows besides the evaluated split's codes and labels.

    Passed as the keyword `context` to a metric callable that declares it (`def metric(codes, labels, *,
    context)`). Arrays follow the metric contract: codes are (N, dims) float arrays, labels (N,) int arrays.
    """

    split: str  #: the evaluated split ('test' or 'val')
    seed: int  #: `factorlab eval --seed`: seed every random draw of the metric from it
    factors: tuple[str, ...]  #: the recipe's factors; the other keys of `labels` are the data set's ground truth
    classes: Mapping[str, Sequence[str]]  #: factor -> class names, by label id (recipe factors only)
    train_codes: Mapping[str, np.ndarray]  #: the same codes on a sample of the train split (to fit probes)
    train_labels: Mapping[str, np.ndarray]  #: labels of that train sample (the same keys as `labels`)
    owners: Mapping[str, str] = field(default_factory=dict)  #: factor -> the code a head reads it from
    pairs: Sequence[tuple[str, str]] = ()  #: (code, factor) pairs a head or an adversary links


def accepts_context(metric: Callable[..., Any]) -> bool:
    """Whether a metric callable takes the `context` keyword (by name, or through **kwargs)."""
    try:
        parameters = inspect.signature(metric).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable without a signature: the 0.1 contract
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == "context" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


def call_metric(
    metric: Callable[..., Any],
    codes: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    context: MetricContext,
) -> dict[str, Any]:
    """Call a metric with `context` if it takes one (0.1 metrics take only codes and labels)."""
    if accepts_context(metric):
        return metric(codes, labels, context=context)
    return metric(codes, labels)


def metric_plan(
    recipe: Recipe, names: Sequence[str] | None = None, options: Sequence[str] = ()
) -> list[tuple[Entry, BaseModel]]:
    """The metrics to run, in order, each with its validated config.

    Starts from the recipe's `[eval]` section: `metrics` (None: every registered metric) and
    `[eval.options.<metric>]`; `names` (`--metrics`) replaces the list and each of `options`
    (`--metric-option dci.max_train=1000`) sets one key on top of the recipe's options.
    """
    from factorlab.plugins import get_host
    from factorlab.recipe import ErrorContext, EvalSection, apply_override, parse_override, resolve_eval

    base = recipe.eval or EvalSection()
    data: dict[str, Any] = {"metrics": base.metrics, "options": copy.deepcopy(base.options)}
    origins: dict[tuple, str] = {}
    if names is not None:
        data["metrics"] = list(names)
        origins[("eval", "metrics")] = "--metrics " + " ".join(names)
    for option in options:
        text = f"--metric-option {option}"
        try:
            key, value = parse_override(option)
        except RecipeError as exc:
            raise RecipeError(f"{text}: {exc}; write METRIC.KEY=VALUE, e.g. dci.max_train=1000") from None
        if len(key) < 2:
            raise RecipeError(f"{text}: name the metric and the key, METRIC.KEY=VALUE, e.g. dci.max_train=1000")
        apply_override(data["options"], key, value, text)
        origins[("eval", "options", *key)] = text
    source = recipe.source
    text = source.read_text(encoding="utf-8") if source is not None and source.is_file() else ""
    context = ErrorContext(str(source or "<recipe>"), text, origins)
    try:
        section = EvalSection.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(context.header() + "\n".join(f"  {e}" for e in context.error_lines(exc, ("eval",)))) from None
    host = get_host()
    errors = resolve_eval(section, context, host)
    if errors:
        raise RecipeError(context.header() + "\n".join(f"  {e}" for e in errors))
    registry = host.registry("metrics")
    chosen = section.metrics if section.metrics is not None else registry.names()
    return [(registry.get(name), section.config(name, registry.get(name))) for name in chosen]
