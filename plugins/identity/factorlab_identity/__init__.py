"""The identity factor (who the face belongs to) and an identity-verification metric.

Written exactly as a third-party plugin: it imports only factorlab's public API and is found through
its `factorlab` entry point (`identity = "factorlab_identity"`); FACTORLAB_DISABLE_PLUGINS=identity
turns it off.

Identity classes come from the data set (CK+ subjects, SynthFaces identities, folder names). The
paper's identity extension (Fig. 2) is recipe content built from generic parts, both directions of
the disentanglement:

    [[heads]]        factor = "identity", code = "nonexp", type = "linear"    # identity is read from nonexp
    [[adversaries]]  factor = "identity", code = "exp",    type = "uniform"   # eq. 2 with identity labels

The linear head and the uniform adversary take any number of classes, so they serve identity as they
are; the paper's identity adversary (eq. 2 with identity labels) is exactly the `uniform` adversary
with `factor = "identity"`. For the identity code this plugin adds the head face recognition uses, a
`cosine` classifier (normalised code and class weights, a learned scale), so that codes of one person
point the same way and `identity_verification` can compare them by cosine. What identity does need is a metric that still means something when the test
subjects are not the training subjects (CK+ folds and SynthFaces splits are subject-disjoint, so an
identity *classifier* cannot be scored on them): verification, i.e. do two codes of the same person
lie closer than codes of two different people.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

import factorlab
from factorlab import Factor, FactorlabError

__version__ = "0.1.0"


class IdentityConfig(BaseModel):
    """Options of the identity factor (none: its classes come from the data set)."""

    model_config = ConfigDict(extra="forbid")


def identity_factor(config: IdentityConfig) -> Factor:
    """The identity factor; its class names (subject ids) are supplied by the data set."""
    return Factor("identity", None, "identity of the person")


class VerificationConfig(BaseModel):
    """Options of the `identity_verification` metric."""

    model_config = ConfigDict(extra="forbid")

    pairs: int = Field(5000, ge=10, description="Same-identity and different-identity pairs drawn (each).")
    seed: int = Field(0, description="Seed of the pair draw.")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive score > a negative score), ties counting half (the area under the ROC curve)."""
    negative = np.sort(np.asarray(negative, dtype=np.float64))
    positive = np.asarray(positive, dtype=np.float64)
    below = np.searchsorted(negative, positive, side="left")  # negatives strictly below each positive
    tied = np.searchsorted(negative, positive, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(positive) * len(negative)))


def verification_pairs(identity: np.ndarray, pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(same, different): index pairs (k, 2) of two distinct samples of one identity, and of two identities."""
    identity = np.asarray(identity)
    rng = np.random.default_rng(seed)
    order = np.argsort(identity, kind="stable")
    values, start, count = np.unique(identity[order], return_index=True, return_counts=True)
    if len(values) < 2 or count.max() < 2:
        raise FactorlabError(
            "identity_verification needs at least two identities and one identity with two or more samples; "
            f"got {len(values)} identities with at most {count.max()} samples each"
        )
    # same-identity pairs: pick an identity with >= 2 samples (weighted by its samples), then two of them
    multi = np.flatnonzero(count >= 2)
    group = rng.choice(multi, size=pairs, p=count[multi] / count[multi].sum())
    first = (rng.random(pairs) * count[group]).astype(np.int64)
    second = (first + 1 + (rng.random(pairs) * (count[group] - 1)).astype(np.int64)) % count[group]
    same = np.stack([order[start[group] + first], order[start[group] + second]], axis=1)
    i, j = rng.integers(0, len(identity), size=(2, 4 * pairs))
    keep = identity[i] != identity[j]
    different = np.stack([i[keep], j[keep]], axis=1)[:pairs]
    return same, different


def identity_verification(config: VerificationConfig) -> Callable[[dict, dict], dict[str, float]]:
    """Per code: ROC AUC of cosine similarity telling same-identity pairs from different-identity pairs."""

    def metric(codes: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
        if "identity" not in labels:
            raise FactorlabError(
                f"identity_verification needs identity labels; the data set gives {sorted(labels)}. "
                "Add a factor 'identity' to the recipe (a [[heads]] or [[adversaries]] entry) or drop the metric"
            )
        same, different = verification_pairs(labels["identity"], config.pairs, config.seed)
        out = {}
        for name, code in codes.items():
            x = _unit(code)
            cos_same = (x[same[:, 0]] * x[same[:, 1]]).sum(axis=1)
            cos_diff = (x[different[:, 0]] * x[different[:, 1]]).sum(axis=1)
            out[f"identity_verification/{name}/auc"] = roc_auc(cos_same, cos_diff)
        return out

    return metric


@factorlab.hookimpl
def factorlab_register_factors(register):
    register(
        "identity",
        identity_factor,
        config=IdentityConfig,
        description="identity of the person (classes from the data set)",
    )


class CosineHeadConfig(BaseModel):
    """Options of the `cosine` head."""

    model_config = ConfigDict(extra="forbid")

    scale: float = Field(16.0, gt=0.0, description="Initial scale of the cosines (learned; normalised softmax).")


class CosineHead(nn.Module):
    """logits = scale * cos(code, class weight): the normalised-softmax classifier of face recognition."""

    def __init__(self, in_features: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, in_features) / in_features**0.5)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        cosine = nn.functional.normalize(code.flatten(1), dim=1) @ nn.functional.normalize(self.weight, dim=1).T
        return self.log_scale.exp() * cosine


def cosine_head(config: CosineHeadConfig, *, in_features: int, num_classes: int) -> CosineHead:
    """A cosine (normalised-softmax) classifier, for identity codes."""
    return CosineHead(in_features, num_classes, config.scale)


@factorlab.hookimpl
def factorlab_register_heads(register):
    register(
        "cosine",
        cosine_head,
        config=CosineHeadConfig,
        description="normalised-softmax classifier (cosine x learned scale), the usual head of an identity code",
    )


@factorlab.hookimpl
def factorlab_register_metrics(register):
    register(
        "identity_verification",
        identity_verification,
        config=VerificationConfig,
        description="per code: ROC AUC of cosine similarity, same vs different identity (works on unseen subjects)",
    )
