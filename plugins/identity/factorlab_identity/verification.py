"""The `identity_verification` metric: do two codes of one person lie closer (by cosine) than two people's?"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from factorlab import FactorlabError
from factorlab_identity import VerificationConfig


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive score > a negative score), ties counting half (the area under the ROC curve): sklearn's."""
    from sklearn.metrics import roc_auc_score

    positive, negative = np.ravel(positive), np.ravel(negative)
    truth = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    return float(roc_auc_score(truth, np.concatenate([positive, negative]).astype(np.float64)))


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
