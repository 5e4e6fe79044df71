"""Fixtures of the real-data-set tests; the layout builders live in layouts.py."""

from __future__ import annotations

import pytest

from factorlab.factors import Factor
from factorlab.testing.layouts import EXPRESSION_8


@pytest.fixture
def expression8() -> dict[str, Factor]:
    return {"expression": Factor("expression", EXPRESSION_8)}


@pytest.fixture
def expression7() -> dict[str, Factor]:
    return {"expression": Factor("expression", EXPRESSION_8[:7])}


@pytest.fixture
def identity() -> dict[str, Factor]:
    return {"identity": Factor("identity", None)}
