"""Factors: labelled sources of variation (expression, identity, ...), and how a data set labels them.

A data set labels the factors it knows natively (its registration lists them as `labels`). A factor
may instead derive its own labels from the ground truth a data set keeps (`ground_truth`, e.g.
SynthFaces' continuous yaw): give it `derive` (ground truth -> class ids) and the keys it `needs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from factorlab.errors import DataError


@dataclass(frozen=True)
class Factor:
    """A factor and its canonical class names.

    `classes` is None when the classes come from the data set (for example identities,
    whose number depends on the data set); the data set then supplies the names.
    `derive`, when given, makes the factor label itself: `derive(ground_truth)` maps the data set's
    ground truth (key -> array over samples, `FactorDataset.ground_truth()`) to int class ids into
    `classes` (which must then be given), one per sample; `needs` lists the ground-truth keys it reads.
    """

    name: str
    classes: tuple[str, ...] | None = None
    description: str = ""
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.derive is not None and self.classes is None:
            raise DataError(f"factor {self.name!r} derives its labels, so it must name its classes")


def label_check(dataset: str, labels: Sequence[str] | None, ground_truth: Sequence[str] | None, factor: Factor) -> str:
    """Why data set `dataset` cannot label `factor` ("" when it can, or when it cannot be known before building).

    `labels` are the factors the data set labels natively and `ground_truth` the keys it keeps (None: unknown).
    """
    if factor.derive is not None:
        if ground_truth is None:
            return ""
        missing = [key for key in factor.needs if key not in ground_truth]
        if not missing:
            return ""
        kept = ", ".join(ground_truth) if ground_truth else "none"
        return (
            f"data set {dataset!r} cannot label factor {factor.name!r}: the factor derives its labels from ground "
            f"truth {missing}, which {dataset!r} does not keep (its ground truth: {kept}); use a data set that keeps "
            f"it, e.g. synthfaces"
        )
    if labels is None or factor.name in labels:
        return ""
    return (
        f"data set {dataset!r} cannot label factor {factor.name!r}; it labels {list(labels)}. Use a data set that "
        f"labels it, or a factor plugin that derives {factor.name!r} from the data set's ground truth"
    )


def dataset_label_info(entry) -> tuple[list[str] | None, list[str] | None]:
    """(native labels, ground-truth keys) a data-set registry entry declares; None where it does not say."""
    from factorlab.registry import resolve

    labels, truth = entry.meta.get("labels"), entry.meta.get("ground_truth")
    labels = None if labels is None else list(resolve(labels, f"labels of data set {entry.name!r}"))
    truth = None if truth is None else list(resolve(truth, f"ground truth of data set {entry.name!r}"))
    return labels, truth


def resolve_factors(recipe) -> dict[str, Factor]:
    """The Factor objects of a recipe's factors, built by their registered factories."""
    from factorlab.plugins import get_host

    host = get_host()
    return {name: host.get("factors", name).factory(section.options) for name, section in recipe.factors.items()}
