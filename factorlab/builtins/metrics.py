"""Built-in evaluation metrics (leakage probes, MIG, DCI, similarity), registered like any plugin's.

Each is a factory `factory(config) -> metric(codes, labels, *, context)` (the contract in
`factorlab.hookspecs`); they take the `context` keyword because they need the train split's codes
(probes, DCI), the class names and the code each head reads. Their options are strict pydantic models,
set in a recipe's `[eval.options.<name>]` table or with `factorlab eval --metric-option <name>.<key>=<value>`.
Their results keep the 0.1 layout of `eval.json`: each returns `{<name>: <result>}` and `factorlab eval`
writes that at the top level (`probes`, `similarity`, `mig`, `dci`); plugin metrics go under `plugin_metrics`.

This module is imported when plugins load, so it imports only pydantic: the implementations
(`factorlab.metrics`: numpy, torch, scikit-learn) load when a metric runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from factorlab.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import numpy as np

    from factorlab.evalmetrics import MetricContext

Metric = Callable[..., dict[str, Any]]


class ProbesConfig(BaseModel):
    """Options of the `probes` metric (post-hoc leakage probes)."""

    model_config = ConfigDict(extra="forbid")

    kinds: list[Literal["linear", "mlp"]] = Field(
        ["linear", "mlp"], min_length=1, description="Probes trained for every (factor, code) pair."
    )
    steps: int = Field(300, ge=1, description="Full-batch Adam steps per probe (on standardised features).")
    lr: float = Field(0.01, gt=0.0, description="Adam learning rate of the probes.")
    weight_decay: float = Field(1e-3, ge=0.0, description="Adam weight decay of the probes.")
    hidden: int = Field(128, ge=1, description="Hidden units of the MLP probe (one hidden layer).")
    max_train: int | None = Field(
        None, ge=2, description="Fit each probe on at most this many train samples; None = all encoded ones."
    )
    ground_truth: bool = Field(
        False, description="Also probe the data set's discrete ground-truth factors (SynthFaces: glasses, beard, ...)."
    )


class SimilarityConfig(BaseModel):
    """Options of the `similarity` metric (the paper's Table 3, generalised)."""

    model_config = ConfigDict(extra="forbid")

    max_pairs: int = Field(2000, ge=1, description="At most this many pairs of each kind (same / reverse).")
    examples: int = Field(3, ge=0, description="Example pairs of each kind kept for the report.")
    cosine: list[Literal["raw", "centered"]] = Field(
        ["raw", "centered"],
        min_length=1,
        description="'raw' (the paper's cosine) and/or 'centered' (the mean code subtracted first).",
    )


class MIGConfig(BaseModel):
    """Options of the `mig` metric (Mutual Information Gap, Chen et al. 2018)."""

    model_config = ConfigDict(extra="forbid")

    bins: int = Field(20, ge=2, description="Equal-width histogram bins per latent dim (disentanglement_lib: 20).")
    max_points: int = Field(10000, ge=10, description="At most this many samples of the evaluated split.")


class DCIConfig(BaseModel):
    """Options of the `dci` metric (Eastwood & Williams 2018, gradient-boosted trees)."""

    model_config = ConfigDict(extra="forbid")

    max_train: int = Field(2000, ge=10, description="At most this many train samples fit the trees.")
    max_test: int = Field(2000, ge=10, description="At most this many evaluated samples score them.")
    max_dims_per_code: int = Field(
        64, ge=1, description="A code with more dims is replaced by this many leading principal components."
    )
    n_estimators: int = Field(20, ge=1, description="Trees per factor (disentanglement_lib uses sklearn's 100).")
    all_features_up_to: int = Field(
        16, ge=1, description="With more latent dims than this, each split considers a random sqrt(dims) of them."
    )


Labels = Mapping[str, "np.ndarray"]
Codes = Mapping[str, "np.ndarray"]


def probes(config: ProbesConfig) -> Metric:
    """Fresh linear and MLP probes for every (factor, code): accuracy against chance and the factor's own code."""

    def metric(codes: Codes, labels: Labels, *, context: MetricContext) -> dict[str, Any]:
        from factorlab import metrics

        factors = [f for f in labels if f in context.train_labels and (config.ground_truth or f in context.factors)]
        max_train = config.max_train or max((len(context.train_labels[f]) for f in factors), default=0)
        results = metrics.leakage_probes(
            context.train_codes,
            context.train_labels,
            codes,
            {f: labels[f] for f in factors},
            context.owners,
            kinds=tuple(config.kinds),
            max_train=max_train,
            seed=context.seed,
            steps=config.steps,
            lr=config.lr,
            weight_decay=config.weight_decay,
            hidden=config.hidden,
        )
        return {"probes": results}

    return metric


def similarity(config: SimilarityConfig) -> Metric:
    """Mean cosine of a code over same-factor vs reverse pairs, for each (code, factor) a head or adversary links."""

    def metric(codes: Codes, labels: Labels, *, context: MetricContext) -> dict[str, Any]:
        from factorlab import metrics

        recipe_labels = {f: labels[f] for f in context.factors if f in labels}
        tables = []
        for code, factor in context.pairs:
            for kind in config.cosine:
                table = metrics.similarity_table(
                    codes, recipe_labels, code, factor, classes=context.classes, max_pairs=config.max_pairs,
                    examples=config.examples, center=kind == "centered", seed=context.seed,
                )  # fmt: skip
                tables.append({**table, "centered": kind == "centered"})
        return {"similarity": tables}

    return metric


def mig(config: MIGConfig) -> Metric:
    """Mutual Information Gap over latent dims, and per-code normalised mutual information (codes x factors)."""

    def metric(codes: Codes, labels: Labels, *, context: MetricContext) -> dict[str, Any]:
        from factorlab import metrics

        return {"mig": metrics.mig(codes, labels, bins=config.bins, max_points=config.max_points, seed=context.seed)}

    return metric


def dci(config: DCIConfig) -> Metric:
    """DCI disentanglement, completeness and informativeness (gradient-boosted trees), over dims and per code."""

    def metric(codes: Codes, labels: Labels, *, context: MetricContext) -> dict[str, Any]:
        from factorlab import metrics

        factors = [f for f in labels if f in context.train_labels]
        result = metrics.dci(
            context.train_codes,
            {f: context.train_labels[f] for f in factors},
            codes,
            {f: labels[f] for f in factors},
            seed=context.seed,
            **config.model_dump(),
        )
        return {"dci": result}

    return metric


BUILTIN_METRICS = (
    ("probes", probes, ProbesConfig),
    ("similarity", similarity, SimilarityConfig),
    ("mig", mig, MIGConfig),
    ("dci", dci, DCIConfig),
)


@hookimpl
def factorlab_register_metrics(register: Register) -> None:
    for name, factory, config in BUILTIN_METRICS:
        register(name, factory, config=config)
