"""Statistics over seeds: mean +- sample standard deviation, Welch's t-test (a leaf: imports no factorlab module).

Used by seed groups (`factorlab.seeds`, which re-exports these names) and by the leakage tables.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05  # two-sided significance level of the Welch test


@dataclass
class Stat:
    """Mean, sample standard deviation (ddof = 1; nan for n = 1) and n of one metric over seeds."""

    mean: float
    std: float
    n: int
    values: list[float]

    def format(self, percent: bool = False) -> str:
        if self.n == 0:
            return "–"
        scale, unit = (100.0, "%") if percent else (1.0, "")
        digits = ".2f" if percent else ".4g"
        text = f"{self.mean * scale:{digits}}{unit}"
        if self.n > 1:
            text += f" ± {self.std * scale:{digits}}"
        return f"{text} (n={self.n})"


def describe(values: Sequence[float]) -> Stat:
    """Mean, sample std (ddof = 1) and n of the finite values."""
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return Stat(math.nan, math.nan, 0, [])
    mean = sum(finite) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    return Stat(mean, std, n, finite)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) of two samples; nan when it is undefined."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return math.nan
    if max(a) == min(a) and max(b) == min(b):  # no spread at all: equal -> no difference, else a certain one
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():  # nearly equal samples: scipy warns of precision loss, the p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdict(p: float) -> str:
    """How a p-value reads in a table."""
    if math.isnan(p):
        return "n too small"
    return "within noise" if p >= ALPHA else "differs"
