"""Properties of the evaluation metrics on constructed codes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion, f1_score, mutual_info_score

from factorlab import metrics
from factorlab.errors import FactorlabError


def labels_pair(max_classes: int = 6, max_n: int = 60):
    """Two equally long label arrays over the same number of classes."""
    return st.integers(1, max_classes).flatmap(
        lambda k: st.integers(1, max_n).flatmap(
            lambda n: st.tuples(
                st.just(k),
                st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
                st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
            )
        )
    )


# ---------------------------------------------------------------------------------------------
# classification


def test_confusion_and_per_class_accuracy_hand_counted():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    confusion = metrics.confusion_matrix(y_true, y_pred, 4)
    # rows true, columns predicted; class 3 never occurs
    expected = np.array([[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(confusion, expected)
    per_class = metrics.per_class_accuracy(confusion)
    np.testing.assert_allclose(per_class[:3], [1 / 2, 2 / 3, 1.0])
    assert np.isnan(per_class[3])
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    # F1 per present class: 2tp / (true + predicted) = 2/4, 4/6, 2/2
    assert metrics.macro_f1(confusion) == pytest.approx((2 / 4 + 4 / 6 + 1) / 3)
    summary = metrics.classification_summary(y_true, y_pred, ["a", "b", "c", "d"])
    assert summary["per_class_accuracy"]["b"] == pytest.approx(2 / 3)
    assert summary["confusion"] == expected.tolist()


@pytest.mark.filterwarnings("ignore:A single label")  # sklearn's note on one-class inputs, not ours
@settings(deadline=None, max_examples=40)
@given(labels_pair())
def test_confusion_and_macro_f1_agree_with_sklearn(case):
    k, y_true, y_pred = case
    confusion = metrics.confusion_matrix(np.array(y_true), np.array(y_pred), k)
    np.testing.assert_array_equal(confusion, sk_confusion(y_true, y_pred, labels=list(range(k))))
    assert confusion.sum() == len(y_true)
    assert metrics.macro_f1(confusion) == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_confusion_rejects_out_of_range_labels():
    with pytest.raises(FactorlabError, match=r"\[0, 2\)"):
        metrics.confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)


def test_chance_rate_is_majority_share():
    assert metrics.chance_rate(np.array([5, 5, 5, 7])) == pytest.approx(0.75)


def test_a_probe_scored_on_no_samples_gives_nan_not_an_error():
    # a tiny split whose classes each have one sample leaves nothing to score after stratified halves
    x = np.random.default_rng(0).normal(size=(6, 3))
    y = np.array([0, 0, 0, 1, 1, 1])
    assert np.isnan(metrics.probe_accuracy(x, y, np.zeros((0, 3)), np.zeros(0, dtype=np.int64), steps=3))
    assert metrics._flat(np.zeros((0, 2, 2))).shape == (0, 4)


@settings(deadline=None, max_examples=30)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=50), st.integers(0, 3))
def test_stratified_halves_partition_every_class(y, seed):
    y = np.array(y)
    fit, score = metrics.stratified_halves(y, seed)
    assert not set(fit) & set(score)
    assert sorted([*fit, *score]) == list(range(len(y)))
    for value in np.unique(y):
        n = int((y == value).sum())
        assert int((y[fit] == value).sum()) == (n + 1) // 2  # every class is in fit, halves as even as possible


# ---------------------------------------------------------------------------------------------
# leakage probes

RNG = np.random.default_rng(0)


def linear_code(y: np.ndarray, num_classes: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """A code that holds `y` linearly: a random direction per class plus noise."""
    directions = rng.normal(size=(num_classes, dim))
    return directions[y] * 3 + rng.normal(size=(len(y), dim))


def test_probes_read_a_linear_code_and_not_noise():
    rng = np.random.default_rng(1)
    n_train, n_test, k = 1200, 400, 5
    y = rng.integers(0, k, n_train + n_test)
    code = linear_code(y, k, 32, rng)
    noise = rng.normal(size=(n_train + n_test, 32))
    train = {"own": code[:n_train], "other": noise[:n_train]}
    test = {"own": code[n_train:], "other": noise[n_train:]}
    before = torch.get_rng_state()
    results = metrics.leakage_probes(train, {"f": y[:n_train]}, test, {"f": y[n_train:]}, {"f": "own"}, steps=150)
    assert torch.equal(before, torch.get_rng_state())  # the caller's RNG stream is untouched
    by = {(r["code"], r["probe"]): r for r in results}
    assert set(by) == {("own", "linear"), ("own", "mlp"), ("other", "linear"), ("other", "mlp")}
    for kind in ("linear", "mlp"):
        assert by["own", kind]["accuracy"] > 0.97
        assert abs(by["other", kind]["accuracy"] - by["other", kind]["chance"]) < 0.1
        assert by["other", kind]["owner_accuracy"] == by["own", kind]["accuracy"]
        assert by["other", kind]["protocol"] == "train->test"
    chance = metrics.chance_rate(y[n_train:])
    assert all(r["chance"] == chance for r in results)


def test_probes_fall_back_to_test_halves_for_disjoint_classes():
    rng = np.random.default_rng(2)
    # identity-disjoint splits: train ids 0..5, test ids 6..11
    y_train, y_test = rng.integers(0, 6, 300), rng.integers(6, 12, 400)
    directions = rng.normal(size=(12, 16)) * 3
    train = {"id": directions[y_train] + rng.normal(size=(300, 16))}
    test = {"id": directions[y_test] + rng.normal(size=(400, 16))}
    [result] = metrics.leakage_probes(train, {"identity": y_train}, test, {"identity": y_test}, kinds=("linear",))
    assert result["protocol"].startswith("test halves")
    assert result["n_fit"] + result["n_score"] == 400
    assert result["accuracy"] > 0.95  # classes never seen in train are still read off their own code


def test_unknown_probe_kind_is_an_error():
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(FactorlabError, match="linear"):
        metrics.probe_accuracy(x, y, x, y, kind="svm")


# ---------------------------------------------------------------------------------------------
# similarity table (paper Table 3)


def test_similarity_separates_the_factor_a_code_holds():
    rng = np.random.default_rng(3)
    n = 2000
    labels = {"expression": rng.integers(0, 4, n), "identity": rng.integers(0, 20, n)}
    codes = {"exp": linear_code(labels["expression"], 4, 16, rng), "id": linear_code(labels["identity"], 20, 16, rng)}
    result = metrics.similarity_table(codes, labels, "exp", "expression", max_pairs=300, examples=2, seed=0)
    assert result["same_mean"] > 0.7 and result["reverse_mean"] < 0.2
    assert result["same_pairs"] == result["reverse_pairs"] == 300
    for ex in result["same_examples"]:
        assert ex["labels_i"]["expression"] == ex["labels_j"]["expression"]
        assert ex["labels_i"]["identity"] != ex["labels_j"]["identity"]
    for ex in result["reverse_examples"]:
        assert ex["labels_i"]["expression"] != ex["labels_j"]["expression"]
        assert ex["labels_i"]["identity"] == ex["labels_j"]["identity"]
    # the identity code says the reverse about expression
    flipped = metrics.similarity_table(codes, labels, "id", "expression", max_pairs=300)
    assert flipped["reverse_mean"] > flipped["same_mean"] + 0.5
    assert metrics.similarity_table(codes, labels, "exp", "expression", max_pairs=300, examples=2, seed=0) == result


def test_centering_removes_a_shared_offset():
    rng = np.random.default_rng(8)
    labels = {"f": rng.integers(0, 3, 600), "g": rng.integers(0, 3, 600)}
    codes = {"c": linear_code(labels["f"], 3, 8, rng) + 100.0}  # every code far out along one direction
    raw = metrics.similarity_table(codes, labels, "c", "f", max_pairs=200)
    centred = metrics.similarity_table(codes, labels, "c", "f", max_pairs=200, center=True)
    assert raw["reverse_mean"] > 0.99  # the offset makes everything look alike
    assert centred["same_mean"] - centred["reverse_mean"] > 0.8


# ---------------------------------------------------------------------------------------------
# MIG and DCI


@settings(deadline=None, max_examples=25)
@given(
    st.lists(st.integers(0, 3), min_size=2, max_size=80).map(np.array),
    st.lists(st.integers(0, 4), min_size=80, max_size=80).map(np.array),
)
def test_discrete_mutual_info_agrees_with_sklearn(a, y):
    y = y[: len(a)]
    discrete = np.stack([a, (a * 7 + y) % 3], axis=1)
    ours = metrics.discrete_mutual_info(discrete, y)
    for d in range(2):
        assert ours[d] == pytest.approx(mutual_info_score(discrete[:, d], y), abs=1e-9)
    assert metrics.discrete_entropy(y) == pytest.approx(mutual_info_score(y, y), abs=1e-9)


def test_histogram_discretize_uses_ids_one_to_bins():
    x = np.random.default_rng(0).normal(size=(500, 3))
    discrete = metrics.histogram_discretize(x, 20)
    assert discrete.min() == 1 and discrete.max() == 20
    # monotone: a larger value never falls in a lower bin
    order = np.argsort(x[:, 0])
    assert np.all(np.diff(discrete[order, 0]) >= 0)


def constructed_codes(angle: float | None, n: int, rng: np.random.Generator):
    """Two factors in two 1-dim codes: rotated by `angle` (0 = perfectly disentangled), or pure noise (None)."""
    f1, f2 = rng.integers(0, 6, n), rng.integers(0, 5, n)
    z1, z2 = f1 + 0.1 * rng.normal(size=n), f2 + 0.1 * rng.normal(size=n)
    if angle is None:
        z1, z2 = rng.normal(size=n), rng.normal(size=n)
    else:
        z1, z2 = np.cos(angle) * z1 + np.sin(angle) * z2, -np.sin(angle) * z1 + np.cos(angle) * z2
    return {"a": z1[:, None], "b": z2[:, None]}, {"f1": f1, "f2": f2}


def halves(d: dict, n: int):
    return {k: v[:n] for k, v in d.items()}, {k: v[n:] for k, v in d.items()}


@pytest.fixture(scope="module")
def scores():
    """MIG and DCI of a perfect, a mixed (rotated by 0.2 rad) and a random code."""
    rng = np.random.default_rng(4)
    out = {}
    for name, angle in [("perfect", 0.0), ("mixed", 0.2), ("random", None)]:
        codes, labels = constructed_codes(angle, 1800, rng)
        (ctr, cte), (ltr, lte) = halves(codes, 1200), halves(labels, 1200)
        out[name] = (metrics.mig(codes, labels), metrics.dci(ctr, ltr, cte, lte, n_estimators=10))
    return out


def test_mig_orders_perfect_mixed_random(scores):
    perfect, mixed, random = (scores[k][0]["mig"] for k in ("perfect", "mixed", "random"))
    assert perfect > 0.95
    assert random < 0.05
    assert 0.2 < mixed < 0.8


def test_dci_orders_perfect_mixed_random(scores):
    perfect, mixed, random = (scores[k][1] for k in ("perfect", "mixed", "random"))
    assert perfect["disentanglement"] > 0.95 and perfect["completeness"] > 0.95
    assert random["disentanglement"] < 0.1
    assert 0.2 < mixed["disentanglement"] < 0.8
    assert perfect["informativeness"] > 0.95
    assert random["informativeness"] < 0.35  # chance for 6 and 5 classes is about 0.18


def test_code_level_dci_sees_a_code_that_holds_two_factors():
    rng = np.random.default_rng(5)
    n = 900
    f1, f2 = rng.integers(0, 4, n), rng.integers(0, 4, n)
    z1, z2 = f1 + 0.1 * rng.normal(size=n), f2 + 0.1 * rng.normal(size=n)
    labels = {"f1": f1, "f2": f2}
    separate = {"a": np.c_[z1, rng.normal(size=n)], "b": np.c_[z2, rng.normal(size=n)]}
    leaky = {"a": np.c_[z1, z2], "b": np.c_[z2, rng.normal(size=n)]}  # code a also holds f2
    results = {}
    for name, codes in (("separate", separate), ("leaky", leaky)):
        (ctr, cte), (ltr, lte) = halves(codes, 600), halves(labels, 600)
        results[name] = metrics.dci(ctr, ltr, cte, lte, n_estimators=10)
    assert results["separate"]["code_disentanglement"] > 0.9
    assert results["leaky"]["code_disentanglement"] < results["separate"]["code_disentanglement"] - 0.3
    importance = results["separate"]["code_importance"]
    assert importance["a"]["f1"] > 0.9 and importance["b"]["f2"] > 0.9


def test_dci_reduces_wide_codes_and_handles_disjoint_test_classes():
    rng = np.random.default_rng(6)
    y_train, y_test = rng.integers(0, 3, 300), rng.integers(3, 6, 200)
    directions = rng.normal(size=(6, 40)) * 3
    train = {"wide": directions[y_train] + rng.normal(size=(300, 40))}
    test = {"wide": directions[y_test] + rng.normal(size=(200, 40))}
    result = metrics.dci(train, {"id": y_train}, test, {"id": y_test}, max_dims_per_code=8, n_estimators=5)
    assert result["latent_dims"] == {"wide": 8}
    assert result["protocol"]["id"].startswith("test halves")
    assert result["informativeness"] > 0.9


def test_dci_scores_of_importance_matrices():
    assert metrics.dci_scores(np.eye(3))["disentanglement"] == pytest.approx(1.0)
    uniform = metrics.dci_scores(np.ones((3, 3)))
    assert uniform["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert uniform["completeness"] == pytest.approx(0.0, abs=1e-6)
    # one latent that explains everything: perfectly complete, not disentangled
    one = metrics.dci_scores(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert one["completeness"] == pytest.approx(1.0, abs=1e-6)
    assert one["disentanglement"] == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# projections


def test_pca_projection_keeps_distances_of_planar_data():
    rng = np.random.default_rng(7)
    plane = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 10))  # rank-2 data in 10 dims
    points, idx = metrics.project_2d(plane, max_points=150)
    assert points.shape == (150, 2) and len(set(idx)) == 150
    sub = plane[idx]

    def dist(a):
        return np.linalg.norm(a[:, None] - a[None], axis=-1)

    np.testing.assert_allclose(dist(points), dist(sub), atol=1e-8)
    with pytest.raises(FactorlabError, match="pca"):
        metrics.project_2d(plane, "umap")


# ---------------------------------------------------------------------------------------------
# the built-in metrics through the registry (factorlab_register_metrics), with their options

BUILTIN_METRICS = ("probes", "similarity", "mig", "dci")


def test_every_builtin_metric_is_registered_with_a_strict_documented_config() -> None:
    from pydantic import ValidationError

    from factorlab.plugins import load_plugins

    registry = load_plugins().registry("metrics")
    for name in BUILTIN_METRICS:
        entry = registry.get(name)
        assert entry.plugin == "core.metrics" and entry.description
        config = entry.config
        assert config.model_config.get("extra") == "forbid", name
        assert config.model_fields and all(f.description for f in config.model_fields.values()), name
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            config.model_validate({"no_such_option": 1})


def test_ls_metrics_lists_every_builtin_metric_and_the_plugin_one() -> None:
    from factorlab.testing import run_cli

    result = run_cli("ls", "metrics")
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 3}
    for name in BUILTIN_METRICS:
        assert "core.metrics" in rows[name]
    assert "identity" in rows["identity_verification"]


def _two_splits(n: int = 120, seed: int = 0) -> tuple[dict, dict, dict, dict]:
    """Codes where `a` holds factor f (3 classes) and `b` is noise; the same generator for train and test."""
    rng = np.random.default_rng(seed)

    def split() -> tuple[dict, dict]:
        f = rng.integers(0, 3, n)
        g = rng.integers(0, 2, n)
        a = np.eye(3)[f] * 3 + rng.normal(0, 0.3, (n, 3))
        return {"a": a.astype(np.float32), "b": rng.normal(0, 1, (n, 4)).astype(np.float32)}, {"f": f, "g": g}

    return *split(), *split()


def _context(train_codes: dict, train_labels: dict, **extra):
    from factorlab.evalmetrics import MetricContext

    return MetricContext(
        split="test", seed=0, factors=("f",), classes={"f": ["x", "y", "z"]}, train_codes=train_codes,
        train_labels=train_labels, owners={"f": "a"}, pairs=[("a", "f")], **extra,
    )  # fmt: skip


def test_builtin_metric_options_reach_the_metric() -> None:
    from factorlab.evalmetrics import call_metric
    from factorlab.plugins import load_plugins

    train_codes, train_labels, codes, labels = _two_splits()
    context = _context(train_codes, train_labels)
    registry = load_plugins().registry("metrics")

    def run(name: str, **options):
        entry = registry.get(name)
        return call_metric(entry.factory(entry.config.model_validate(options)), codes, labels, context)

    probes = run("probes", kinds=["linear"], max_train=50, steps=100)["probes"]
    # only the recipe's factor f (g is ground truth, probed only with ground_truth=true), one kind, 50 fit samples
    assert {(r["factor"], r["code"], r["probe"]) for r in probes} == {("f", "a", "linear"), ("f", "b", "linear")}
    assert {r["n_fit"] for r in probes} == {50}
    by_code = {r["code"]: r["accuracy"] for r in probes}
    assert by_code["a"] > 0.9 and by_code["b"] < 0.7  # f is read from a, not from the noise code
    assert {r["factor"] for r in run("probes", kinds=["linear"], steps=10, ground_truth=True)["probes"]} == {"f", "g"}

    assert run("dci", max_train=40, n_estimators=5)["dci"]["n_train"] == 40
    assert run("dci")["dci"]["n_train"] == 120  # default max_train (2000) caps nothing here
    low, high = run("mig", bins=2)["mig"], run("mig", bins=20)["mig"]
    assert low["code_mi"]["a"]["f"] != high["code_mi"]["a"]["f"]  # the histogram bins are used
    tables = run("similarity", cosine=["centered"], max_pairs=10, examples=1)["similarity"]
    assert [t["centered"] for t in tables] == [True] and tables[0]["same_pairs"] <= 10
    assert len(tables[0]["same_examples"]) == 1


def test_metrics_written_for_0_1_are_called_without_context() -> None:
    from factorlab.evalmetrics import accepts_context, call_metric

    train_codes, train_labels, codes, labels = _two_splits(n=20)
    context = _context(train_codes, train_labels)
    seen = {}

    def old(codes, labels):  # the 0.1 contract
        return {"n": float(len(labels["f"]))}

    def new(codes, labels, *, context):
        seen["context"] = context
        return {"train_n": float(len(context.train_labels["f"]))}

    def loose(codes, labels, **kwargs):
        return {"keys": float(len(kwargs))}

    assert not accepts_context(old) and accepts_context(new) and accepts_context(loose)
    assert call_metric(old, codes, labels, context) == {"n": 20.0}
    assert call_metric(new, codes, labels, context) == {"train_n": 20.0} and seen["context"] is context
    assert call_metric(loose, codes, labels, context) == {"keys": 1.0}


def test_the_metric_example_of_the_evaluation_docs_registers_and_runs() -> None:
    import re
    import types
    from pathlib import Path

    from factorlab.evalmetrics import call_metric
    from factorlab.plugins import load_plugins

    page = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    section = page.split("### Writing a metric", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    plugin = types.ModuleType("centroid_plugin")
    exec(compile(source, "docs/evaluation.md", "exec"), plugin.__dict__)
    entry = load_plugins({"centroid": plugin}, entry_points=False).get("metrics", "centroid_accuracy")
    train_codes, train_labels, codes, labels = _two_splits()
    context = _context(train_codes, train_labels)
    out = call_metric(entry.factory(entry.config.model_validate({"factor": "f"})), codes, labels, context)
    assert out["centroid/a/accuracy"] > 0.9 and out["centroid/b/accuracy"] < 0.7
