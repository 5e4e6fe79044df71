"""Evaluation metrics over frozen codes: classification, leakage probes, similarity, MIG, DCI, projections.

Every function takes plain numpy arrays and returns plain Python values (floats, lists, dicts) so
results go straight into JSON and reports. Conventions used throughout:

- `codes`: code name -> (N, D) float array (a code with more dims is flattened to (N, -1)).
- `labels`: factor name -> (N,) int array; `classes`: factor name -> class names in label-id order.
- Everything random takes a `seed` and uses its own generator, so results are reproducible and the
  global RNG state of the caller is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from factorlab.errors import FactorlabError

# ---------------------------------------------------------------------------------------------
# classification


def _as_ids(y: np.ndarray) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), int(np.prod(x.shape[1:])))  # not -1: an empty sample has no size to infer it from


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): rows are true classes, columns predicted classes."""
    y_true, y_pred = _as_ids(y_true), _as_ids(y_pred)
    if len(y_true) != len(y_pred):
        raise FactorlabError(f"confusion_matrix: {len(y_true)} true labels but {len(y_pred)} predictions")
    bad = (y_true < 0) | (y_true >= num_classes) | (y_pred < 0) | (y_pred >= num_classes)
    if bad.any():
        raise FactorlabError(f"confusion_matrix: labels must lie in [0, {num_classes}), found {int(bad.sum())} outside")
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of predictions equal to the true label (nan when there are none)."""
    y_true, y_pred = _as_ids(y_true), _as_ids(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each true class from a confusion matrix; nan for classes with no samples."""
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / support, np.nan)


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that occur as a true label or a prediction: sklearn's macro F1.

    sklearn's `f1_score` reads labels, not a confusion matrix: each non-empty cell (true i, predicted j)
    is passed once, weighted by its count, which is the same as passing every sample.
    """
    from sklearn.metrics import f1_score

    confusion = np.asarray(confusion)
    true, predicted = np.nonzero(confusion)
    if not len(true):
        return float("nan")
    return float(f1_score(true, predicted, average="macro", sample_weight=confusion[true, predicted], zero_division=0))


def classification_summary(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class accuracy (by class name) and the confusion matrix as lists."""
    confusion = confusion_matrix(y_true, y_pred, len(classes))
    per_class = per_class_accuracy(confusion)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(confusion),
        "per_class_accuracy": {name: float(v) for name, v in zip(classes, per_class, strict=True)},
        "confusion": confusion.tolist(),
        "classes": list(classes),
        "n": int(len(_as_ids(y_true))),
    }


def chance_rate(y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class of `y` (the majority-class rate)."""
    y = _as_ids(y)
    if not len(y):
        return float("nan")
    return float(np.bincount(y - y.min()).max() / len(y))


# ---------------------------------------------------------------------------------------------
# leakage probes


def stratified_halves(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (fit, score) halves class by class; a class with one sample goes to fit only."""
    y = _as_ids(y)
    rng = np.random.default_rng(seed)
    fit, score = [], []
    for value in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == value))
        cut = (len(idx) + 1) // 2
        fit.append(idx[:cut])
        score.append(idx[cut:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(score))


def _probe_model(kind: str, dim: int, num_classes: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    raise FactorlabError(f"unknown probe kind {kind!r}: choose 'linear' or 'mlp'")


def probe_accuracy(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_score: np.ndarray,
    y_score: np.ndarray,
    *,
    kind: str = "linear",
    steps: int = 300,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
    hidden: int = 128,
    seed: int = 0,
) -> float:
    """Train a fresh probe (full-batch Adam on standardised features) on fit data; return its accuracy on score data."""
    x_fit, x_score = _flat(x_fit), _flat(x_score)
    y_fit, y_score = _as_ids(y_fit), _as_ids(y_score)
    # labels can be any ids (identity numbers): index them by the classes seen in fit
    seen = np.unique(y_fit)
    target = torch.from_numpy(np.searchsorted(seen, y_fit))
    mean, std = x_fit.mean(axis=0), x_fit.std(axis=0) + 1e-6
    xf = torch.from_numpy((x_fit - mean) / std).float()
    xs = torch.from_numpy((x_score - mean) / std).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _probe_model(kind, xf.shape[1], len(seen), hidden)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xf), target).backward()
            opt.step()
    with torch.no_grad():
        predicted = seen[model(xs).argmax(dim=1).numpy()]
    return accuracy(y_score, predicted)


def leakage_probes(
    train_codes: Mapping[str, np.ndarray],
    train_labels: Mapping[str, np.ndarray],
    test_codes: Mapping[str, np.ndarray],
    test_labels: Mapping[str, np.ndarray],
    owners: Mapping[str, str] | None = None,
    *,
    kinds: Sequence[str] = ("linear", "mlp"),
    max_train: int = 5000,
    seed: int = 0,
    **probe_options,
) -> list[dict]:
    """Fresh probes for every (factor, code, kind): accuracy vs chance and vs the same probe on the factor's own code.

    `owners` maps a factor to the code meant to hold it (e.g. {"expression": "exp"}). Probes are
    trained on train codes and scored on test codes; when the test split has classes the train split
    lacks (identity-disjoint splits), they are trained and scored on stratified halves of the test
    split instead, and `protocol` says so.
    """
    owners = dict(owners or {})
    results: list[dict] = []
    for factor, y_test in test_labels.items():
        y_test, y_train = _as_ids(y_test), _as_ids(train_labels[factor])
        if set(np.unique(y_test)) <= set(np.unique(y_train)):
            protocol = "train->test"
            rng = np.random.default_rng(seed)
            fit_idx = np.sort(rng.permutation(len(y_train))[:max_train])
            score_idx = np.arange(len(y_test))
            fit_codes, fit_y = train_codes, y_train
        else:
            protocol = "test halves (test classes not in train)"
            fit_idx, score_idx = stratified_halves(y_test, seed)
            fit_codes, fit_y = test_codes, y_test
        chance = chance_rate(y_test[score_idx])
        accs: dict[tuple[str, str], float] = {}
        for code in test_codes:
            for kind in kinds:
                accs[code, kind] = probe_accuracy(
                    _flat(fit_codes[code])[fit_idx],
                    fit_y[fit_idx],
                    _flat(test_codes[code])[score_idx],
                    y_test[score_idx],
                    kind=kind,
                    seed=seed,
                    **probe_options,
                )
        owner = owners.get(factor)
        for (code, kind), acc in accs.items():
            results.append(
                {
                    "factor": factor,
                    "code": code,
                    "probe": kind,
                    "accuracy": acc,
                    "chance": chance,
                    "owner": owner,
                    "owner_accuracy": accs.get((owner, kind)) if owner else None,
                    "protocol": protocol,
                    "n_fit": int(len(fit_idx)),
                    "n_score": int(len(score_idx)),
                }
            )
    return results


# ---------------------------------------------------------------------------------------------
# paper Table 3, generalised: cosine similarity of a code across controlled pairs


def _sample_pairs(group: np.ndarray, rng: np.random.Generator, attempts: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs (i, j) with group[i] == group[j], drawn uniformly within the anchor's group."""
    order = np.argsort(group, kind="stable")
    _, start, size = np.unique(group[order], return_index=True, return_counts=True)
    _, inverse = np.unique(group, return_inverse=True)
    i = rng.integers(0, len(group), size=attempts)
    g = inverse[i]
    j = order[start[g] + (rng.random(attempts) * size[g]).astype(np.int64)]
    return i, j


def _group_key(columns: list[np.ndarray], n: int) -> np.ndarray:
    if not columns:
        return np.zeros(n, dtype=np.int64)
    _, key = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    return key.reshape(-1)


def similarity_table(
    codes: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    code: str,
    factor: str,
    *,
    others: Sequence[str] | None = None,
    classes: Mapping[str, Sequence[str]] | None = None,
    max_pairs: int = 2000,
    examples: int = 3,
    center: bool = False,
    seed: int = 0,
) -> dict:
    """Mean cosine of `code` over pairs with the same `factor` and all `others` different, versus the reverse.

    "Same" pairs share the factor value and differ in every factor of `others` (default: all other
    factors in `labels`); "reverse" pairs differ in the factor and share every factor of `others`.
    A code that holds the factor and nothing else has a high "same" and a low "reverse" similarity.
    The paper uses the raw cosine; `center=True` subtracts the mean code first, so that an offset
    shared by all codes (e.g. non-negative activations) does not lift every similarity.
    """
    others = [f for f in (others if others is not None else labels) if f != factor]
    x = _flat(codes[code])
    if center:
        x = x - x.mean(axis=0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = _as_ids(labels[factor])
    other_y = [_as_ids(labels[f]) for f in others]
    rng = np.random.default_rng(seed)
    attempts = 20 * max_pairs

    def describe(i: int) -> dict:
        out = {}
        for f in [factor, *others]:
            value = int(labels[f][i])
            out[f] = classes[f][value] if classes and f in classes else value
        return out

    result: dict = {"code": code, "factor": factor, "others": others}
    for kind in ("same", "reverse"):
        if kind == "same":
            i, j = _sample_pairs(y, rng, attempts)
            keep = np.ones(len(i), dtype=bool)
            for oy in other_y:
                keep &= oy[i] != oy[j]
        else:
            i, j = _sample_pairs(_group_key(other_y, len(y)), rng, attempts)
            keep = y[i] != y[j]
        keep &= i != j
        i, j = i[keep][:max_pairs], j[keep][:max_pairs]
        cos = np.einsum("nd,nd->n", x[i], x[j])
        result[f"{kind}_mean"] = float(cos.mean()) if len(cos) else float("nan")
        result[f"{kind}_std"] = float(cos.std()) if len(cos) else float("nan")
        result[f"{kind}_pairs"] = int(len(cos))
        result[f"{kind}_examples"] = [
            {"i": int(a), "j": int(b), "labels_i": describe(a), "labels_j": describe(b), "cosine": float(c)}
            for a, b, c in zip(i[:examples], j[:examples], cos[:examples], strict=True)
        ]
    return result


# ---------------------------------------------------------------------------------------------
# MIG (Chen et al. 2018) and DCI (Eastwood & Williams 2018), as in disentanglement_lib


def histogram_discretize(x: np.ndarray, bins: int = 20) -> np.ndarray:
    """Bin each column of (N, D) into `bins` equal-width bins (ids 1..bins), as disentanglement_lib does."""
    x = _flat(x)
    out = np.zeros(x.shape, dtype=np.int64)
    for d in range(x.shape[1]):
        out[:, d] = np.digitize(x[:, d], np.histogram(x[:, d], bins)[1][:-1])
    return out


def _dense_ids(y: np.ndarray) -> np.ndarray:
    return np.unique(_as_ids(y), return_inverse=True)[1].reshape(-1)


def discrete_mutual_info(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between each column of discrete (N, D) `a` and discrete (N,) `y`: shape (D,).

    Hand-written because it is measured faster at the same result: sklearn's `mutual_info_score` takes
    one column per call, 0.40 s of CPU per factor on N = 10000 points and 256 dims, where this one
    bincount over all columns takes 0.012 s; the two agree to 1e-15 nats (benchmarks/metrics.py
    measures both; tests/test_metrics.py checks the agreement).
    """
    a = np.asarray(a, dtype=np.int64)
    a = a - a.min(axis=0, keepdims=True)
    y = _dense_ids(y)
    n, dims = a.shape
    na, ny = int(a.max()) + 1, int(y.max()) + 1
    # one bincount builds every column's contingency table: index = (column, a, y)
    index = (np.arange(dims)[None, :] * na + a) * ny + y[:, None]
    joint = np.bincount(index.ravel(), minlength=dims * na * ny).reshape(dims, na, ny) / n
    pa, py = joint.sum(axis=2, keepdims=True), joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / (pa * py)), 0.0)
    return terms.sum(axis=(1, 2))


def discrete_entropy(y: np.ndarray) -> float:
    """Entropy (nats) of a discrete label array."""
    from scipy.stats import entropy

    return float(entropy(np.bincount(_dense_ids(y))))


def _concat(codes: Mapping[str, np.ndarray], names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Concatenate codes along dims; also return, per dim, the code it came from."""
    arrays = [_flat(codes[name]) for name in names]
    owner = [name for name, arr in zip(names, arrays, strict=True) for _ in range(arr.shape[1])]
    return np.concatenate(arrays, axis=1), owner


def mig(
    codes: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    *,
    bins: int = 20,
    max_points: int = 10000,
    seed: int = 0,
) -> dict:
    """Mutual Information Gap over the concatenated code dims, plus per-code normalised MI (codes x factors).

    For each factor: MI with every latent dim (20-bin histograms), divided by the factor's entropy;
    the gap between the two largest is the factor's MIG; `mig` is their mean. `code_mi[code][factor]`
    is the largest normalised MI among the dims of that code; the histogram estimate is biased up by
    about (bins - 1)(classes - 1) / (2 N) nats, which matters for many-class factors on few points.
    """
    names = list(codes)
    x, owner = _concat(codes, names)
    idx = np.random.default_rng(seed).permutation(len(x))[:max_points]
    discrete = histogram_discretize(x[idx], bins)
    per_factor, code_mi = {}, {name: {} for name in names}
    for factor, y in labels.items():
        y = _as_ids(y)[idx]
        entropy = discrete_entropy(y)
        if entropy <= 0:  # a constant factor carries no information to find
            per_factor[factor] = float("nan")
            for name in names:
                code_mi[name][factor] = float("nan")
            continue
        mi = discrete_mutual_info(discrete, y) / entropy
        top = np.sort(mi)[::-1]
        per_factor[factor] = float(top[0] - (top[1] if len(top) > 1 else 0.0))
        for name in names:
            code_mi[name][factor] = float(max(m for m, o in zip(mi, owner, strict=True) if o == name))
    finite = [v for v in per_factor.values() if np.isfinite(v)]
    return {"mig": float(np.mean(finite)) if finite else float("nan"), "per_factor": per_factor, "code_mi": code_mi}


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of distributions along `axis`, in base = their length (so 0..1); length 1 gives 0."""
    from scipy.stats import entropy

    k = p.shape[axis]
    if k == 1:
        return np.zeros(np.delete(p.shape, axis))
    return entropy(p + 1e-11, base=k, axis=axis)  # + 1e-11 as disentanglement_lib: an all-zero row becomes uniform


def dci_scores(importance: np.ndarray) -> dict:
    """Disentanglement and completeness of an importance matrix (latents x factors), weighted as in disentanglement_lib."""
    importance = np.abs(np.asarray(importance, dtype=np.float64))
    per_latent = 1.0 - _normalised_entropy(importance, axis=1)
    per_factor = 1.0 - _normalised_entropy(importance, axis=0)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    latent_w = weights.sum(axis=1) / weights.sum()
    factor_w = weights.sum(axis=0) / weights.sum()
    return {
        "disentanglement": float((per_latent * latent_w).sum()),
        "completeness": float((per_factor * factor_w).sum()),
        "per_latent_disentanglement": per_latent.tolist(),
        "per_factor_completeness": per_factor.tolist(),
    }


def _pca(x: np.ndarray, k: int):
    """sklearn's PCA with the leading min(k, N, D) components of (N, D) `x`, fitted on `x`.

    Exact solvers only (the default 'auto' may pick the randomized one): the eigenvectors of the
    covariance when N >= D (3x less CPU than the former numpy SVD on 2000 x 512 and 3000 x 1024, same
    components to 3e-12: benchmarks/metrics.py), else the full SVD.
    sklearn also fixes each component's sign (the former `np.linalg.svd` left it to LAPACK), so
    projections are the same on every machine.
    """
    from sklearn.decomposition import PCA

    solver = "covariance_eigh" if x.shape[0] >= x.shape[1] else "full"
    with np.errstate(divide="ignore", invalid="ignore"):  # one point: its explained variance is 0 / 0
        return PCA(min(k, *x.shape), svd_solver=solver).fit(x)


def dci(
    train_codes: Mapping[str, np.ndarray],
    train_labels: Mapping[str, np.ndarray],
    test_codes: Mapping[str, np.ndarray],
    test_labels: Mapping[str, np.ndarray],
    *,
    max_train: int = 2000,
    max_test: int = 2000,
    max_dims_per_code: int = 64,
    n_estimators: int = 20,
    all_features_up_to: int = 16,
    seed: int = 0,
) -> dict:
    """DCI with gradient boosted trees (sklearn), over latent dims and aggregated per code.

    Importance of each latent dim for each factor is the trees' feature importance, informativeness
    the test accuracy of the per-factor trees. To stay fast, at most `max_train` train points are
    used, each code with more than `max_dims_per_code` dims is replaced by its leading principal
    components (fitted on the train points), `n_estimators` trees are grown (disentanglement_lib
    uses sklearn's default of 100), and when there are more than `all_features_up_to` latent dims
    each split considers a random sqrt(dims) of them (about 10x faster on 128 dims; with few dims a
    random subset would credit useless dims, so all are used, as in disentanglement_lib). A factor
    whose test classes are missing from train is fitted and scored on stratified halves of the test
    split. Tree importances credit noise dims when a factor has many classes and few samples each,
    so read the code-level scores next to the leakage probes. `code_importance` sums each code's dims
    (codes x factors), and the code-level scores are computed from it.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    names = list(test_codes)
    rng = np.random.default_rng(seed)
    train_idx = np.sort(rng.permutation(len(_flat(train_codes[names[0]])))[:max_train])
    test_idx = np.sort(rng.permutation(len(_flat(test_codes[names[0]])))[:max_test])
    train_parts, test_parts, owner = [], [], []
    for name in names:
        xtr, xte = _flat(train_codes[name])[train_idx], _flat(test_codes[name])[test_idx]
        if xtr.shape[1] > max_dims_per_code:
            pca = _pca(xtr, max_dims_per_code)
            xtr, xte = pca.transform(xtr), pca.transform(xte)
        train_parts.append(xtr)
        test_parts.append(xte)
        owner += [name] * xtr.shape[1]
    x_train, x_test = np.concatenate(train_parts, axis=1), np.concatenate(test_parts, axis=1)

    factors = list(test_labels)
    max_features = None if x_train.shape[1] <= all_features_up_to else "sqrt"
    importance = np.zeros((x_train.shape[1], len(factors)))
    informativeness, protocols = {}, {}
    for k, factor in enumerate(factors):
        y_train, y_test = _as_ids(train_labels[factor])[train_idx], _as_ids(test_labels[factor])[test_idx]
        if set(np.unique(y_test)) <= set(np.unique(y_train)):
            xf, yf, xs, ys, protocols[factor] = x_train, y_train, x_test, y_test, "train->test"
        else:
            fit, score = stratified_halves(y_test, seed)
            xf, yf, xs, ys = x_test[fit], y_test[fit], x_test[score], y_test[score]
            protocols[factor] = "test halves (test classes not in train)"
        if len(np.unique(yf)) < 2:  # nothing to learn; importance stays zero
            informativeness[factor] = accuracy(ys, np.full(len(ys), yf[0]))
            continue
        model = GradientBoostingClassifier(n_estimators=n_estimators, max_features=max_features, random_state=seed)
        model.fit(xf, yf)
        importance[:, k] = np.abs(model.feature_importances_)
        informativeness[factor] = accuracy(ys, model.predict(xs))

    owner_arr = np.array(owner)
    code_importance = np.stack([importance[owner_arr == name].sum(axis=0) for name in names])
    dims, per_code = dci_scores(importance), dci_scores(code_importance)
    return {
        "disentanglement": dims["disentanglement"],
        "completeness": dims["completeness"],
        "informativeness": float(np.mean(list(informativeness.values()))),
        "per_factor_informativeness": informativeness,
        "per_factor_completeness": dict(zip(factors, dims["per_factor_completeness"], strict=True)),
        "code_disentanglement": per_code["disentanglement"],
        "code_completeness": per_code["completeness"],
        "code_importance": {
            name: dict(zip(factors, row.tolist(), strict=True))
            for name, row in zip(names, code_importance, strict=True)
        },
        "protocol": protocols,
        "latent_dims": {name: int((owner_arr == name).sum()) for name in names},
        "n_train": int(len(train_idx)),
    }


# ---------------------------------------------------------------------------------------------
# 2-D projections


def project_2d(
    x: np.ndarray, method: str = "pca", *, max_points: int = 3000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, D) to (n, 2) with PCA or t-SNE on at most `max_points` points; returns (points, indices used)."""
    x = _flat(x)
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_points])
    x = x[idx]
    if method == "pca":
        points = _pca(x, 2).transform(x)
        if points.shape[1] < 2:  # a 1-dim code: pad so every projection is (n, 2)
            points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
        return points, idx
    if method == "tsne":
        from sklearn.manifold import TSNE

        init = min(50, x.shape[1])
        if x.shape[1] > init:  # t-SNE on the leading components is the usual, much faster practice
            x = _pca(x, init).transform(x)
        perplexity = float(min(30, max(2, (len(x) - 1) / 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x), idx
    raise FactorlabError(f"unknown projection method {method!r}: choose 'pca' or 'tsne'")
