"""Factors: labelled sources of variation (expression, identity, ...)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Factor:
    """A factor and its canonical class names.

    `classes` is None when the classes come from the data set (for example identities,
    whose number depends on the data set); the data set then supplies the names.
    """

    name: str
    classes: tuple[str, ...] | None = None
    description: str = ""
