"""SynthFaces: determinism, splits, labels, correlation, rendering and the cache."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from factorlab.data import synthfaces_render as R
from factorlab.data.base import labels_for_evaluation
from factorlab.data.synthfaces import (
    SynthFacesConfig,
    _split_params,
    build,
    cache_root,
    ensure_cache,
    habitual_expressions,
    preview_grid,
    split_identities,
)
from factorlab.errors import DataError
from factorlab.factors import Factor

SMALL = dict(identities=12, samples_per_identity=16)


@pytest.fixture
def config(tmp_path) -> SynthFacesConfig:
    return SynthFacesConfig(**SMALL, cache_dir=str(tmp_path / "cache"))


def test_same_config_gives_byte_identical_images_in_a_fresh_cache(tmp_path, config):
    a = build(config, split="val", image_size=32, factors={})
    other = config.model_copy(update={"cache_dir": str(tmp_path / "other")})
    b = build(other, split="val", image_size=32, factors={})
    assert a.root != b.root
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
    assert np.array_equal(a.labels("expression"), b.labels("expression"))


def test_sample_is_independent_of_batch_and_order():
    params = []
    for i in range(12):
        traits = R.identity_params(0, i % 3)
        params.append(dict(R.sample_params(0, i, traits, i % 8, 2.0), identity=float(i % 3)))
    stacked = R.stack_params(params)
    whole = R.render_batch(stacked, 48)
    reverse = R.render_batch({k: v[::-1] for k, v in stacked.items()}, 48)[::-1]
    alone = np.stack([R.render(p, 48) for p in params])
    assert np.array_equal(whole, alone)
    assert np.array_equal(whole, reverse)


def test_sample_params_do_not_depend_on_the_split(config):
    # A sample is seeded by its global index, so an identity's samples are the same in whichever split it lands.
    _, val = _split_params(config, "val")
    other = config.model_copy(update={"train_fraction": 0.5, "val_fraction": 0.25, "test_fraction": 0.25})
    _, val2 = _split_params(other, "val")
    ids = set(val[:, _sample_col("identity")].tolist()) & set(val2[:, _sample_col("identity")].tolist())
    assert ids  # the seed's identity order makes the smaller val split a prefix of the larger one
    for ident in ids:
        rows = val[val[:, _sample_col("identity")] == ident]
        rows2 = val2[val2[:, _sample_col("identity")] == ident]
        assert np.array_equal(rows, rows2)


def test_splits_are_identity_disjoint_and_cover_all_identities(config):
    splits = split_identities(config)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    all_ids = np.concatenate(list(splits.values()))
    assert sorted(all_ids.tolist()) == list(range(config.identities))
    seen = {}
    train_names = [f"id{i:03d}" for i in sorted(splits["train"].tolist())]
    for split in ("train", "val", "test"):
        ds = build(config, split=split, image_size=32, factors={})
        labels, names = labels_for_evaluation(ds, "identity")  # held-out identities appended
        seen[split] = {names[k] for k in labels}
        assert seen[split] == {f"id{i:03d}" for i in splits[split].tolist()}
        assert ds.classes["identity"] == train_names  # one label space: the train identities only
        assert (ds.labels("identity") >= 0).all() == (split == "train")
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])


def test_labels_in_range_and_balanced_without_correlation(config):
    ds = build(config, split="train", image_size=32, factors={})
    expression = ds.labels("expression")
    assert expression.dtype == np.int64 and len(expression) == len(ds) == 8 * 16
    assert expression.min() >= 0 and expression.max() < 8
    assert np.bincount(expression, minlength=8).tolist() == [16] * 8  # 16 per identity: two full cycles
    assert ds.classes["expression"] == list(R.EXPRESSIONS)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and set(item) == {"image", "expression", "identity"}


@pytest.mark.parametrize("correlation", [0.0, 0.6])
def test_correlation_statistics(tmp_path, correlation):
    config = SynthFacesConfig(identities=20, samples_per_identity=80, correlation=correlation, cache_dir=str(tmp_path))
    habitual = habitual_expressions(config)
    for split in ("train", "val"):
        _, samples = _split_params(config, split)
        expression = samples[:, _sample_col("expression")].astype(np.int64)
        ids = samples[:, _sample_col("identity")].astype(np.int64)
        share = np.mean(expression == habitual[ids])
        expected = correlation + (1 - correlation) / 8 if split == "train" else 1 / 8
        # Binomial standard error with n = 1120 train / 240 val samples is < 0.03.
        assert abs(share - expected) < 0.08, (split, share, expected)


def _sample_col(key: str) -> int:
    from factorlab.data.synthfaces import SAMPLE_KEYS

    return SAMPLE_KEYS.index(key)


def test_render_of_own_params_equals_the_sample_and_render_with(config):
    ds = build(config, split="test", image_size=40, factors={})
    for i in (0, 7, len(ds) - 1):
        assert np.array_equal(R.render(ds.params(i), 40), ds.image(i))
        assert np.array_equal(ds.render_with(i, i, ("expression", "identity")), ds.image(i))
    i, j = 0, 1
    assert ds.labels("expression")[i] != ds.labels("expression")[j]
    swapped = ds.render_with(i, j, ("expression",))
    assert not np.array_equal(swapped, ds.image(i))
    # Taking every group from j gives j's image exactly.
    assert np.array_equal(ds.render_with(i, j, tuple(R.FACTOR_KEYS)), ds.image(j))
    with pytest.raises(DataError, match="unknown factor"):
        ds.render_with(i, j, ("hairdo",))


def test_ground_truth_has_every_factor_for_every_sample(config):
    ds = build(config, split="val", image_size=32, factors={})
    truth = ds.ground_truth()
    for key in R.PARAM_KEYS:
        assert key in truth and len(truth[key]) == len(ds)
    assert np.array_equal(truth["expression"], ds.labels("expression"))
    # ground truth keeps the renderer's identity ids; the labels map them one to one
    pairs = set(zip(truth["identity"].tolist(), ds.labels("identity").tolist(), strict=True))
    assert len(pairs) == len(set(truth["identity"].tolist())) == len({label for _, label in pairs})


def test_factor_with_fewer_classes_drops_and_counts(config):
    seven = Factor("expression", classes=tuple(R.EXPRESSIONS[:7]))
    full = build(config, split="val", image_size=32, factors={})
    ds = build(config, split="val", image_size=32, factors={"expression": seven})
    contempt = int((full.labels("expression") == 7).sum())
    assert contempt > 0 and ds.dropped == {"expression": contempt}
    assert len(ds) == len(full) - contempt
    assert ds.labels("expression").max() == 6 and ds.classes["expression"] == list(R.EXPRESSIONS[:7])
    assert np.array_equal(ds.image(0), full.image(int(np.flatnonzero(full.labels("expression") != 7)[0])))


def test_unknown_factor_is_a_data_error_listing_the_supported(config):
    with pytest.raises(DataError, match=r"age.*expression.*identity"):
        build(config, split="val", image_size=32, factors={"age": Factor("age")})


def test_extra_supported_factor_is_labelled(config):
    ds = build(config, split="val", image_size=32, factors={"pose": Factor("pose")})
    assert ds.classes["pose"] == ["left", "frontal", "right"]
    assert set(ds.labels("pose").tolist()) <= {0, 1, 2}


def test_config_rejects_bad_fractions_and_unknown_keys():
    with pytest.raises(ValueError, match="must be 1"):
        SynthFacesConfig(train_fraction=0.8)
    with pytest.raises(ValueError, match="extra"):
        SynthFacesConfig(identites=10)
    with pytest.raises(DataError, match="at least one"):
        split_identities(SynthFacesConfig(identities=3, train_fraction=0.9, val_fraction=0.05, test_fraction=0.05))


_FINITE = dict(allow_nan=False, allow_infinity=False)


@st.composite
def render_params(draw):
    p = {}
    for key in R.PARAM_KEYS:
        lo, hi = R.PARAM_RANGES[key]
        if key in R.INTEGER_PARAMS:
            p[key] = float(draw(st.integers(int(lo), int(min(hi, 2**31 - 1)))))
        else:
            p[key] = draw(st.floats(lo, hi, **_FINITE))
    return p


@settings(deadline=None, max_examples=40)
@given(params=render_params(), size=st.integers(32, 96))
def test_renderer_never_nan_always_uint8_right_shape(params, size):
    image = R.render(params, size)
    assert image.dtype == np.uint8 and image.shape == (size, size, 3)
    s = R._prepare({k: np.array([v]) for k, v in params.items()}, size)
    grid = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    linear = R._draw(s, np.tile(grid, size)[None], np.repeat(grid, size)[None], size)
    assert np.isfinite(linear).all()


@settings(deadline=None, max_examples=10)
@given(params=render_params(), other=render_params())
def test_image_does_not_depend_on_its_batch_neighbour(params, other):
    batch = R.render_batch({k: np.array([other[k], params[k]]) for k in R.PARAM_KEYS}, 48)
    assert np.array_equal(batch[1], R.render(params, 48))


def test_cache_is_reused_not_regenerated(config):
    first = ensure_cache(config, "val", 32)
    stamp = os.stat(first / "images.npy").st_mtime_ns
    again = ensure_cache(config, "val", 32)
    assert again == first and os.stat(again / "images.npy").st_mtime_ns == stamp
    other_size = ensure_cache(config, "val", 36)
    assert other_size != first  # the key includes the image size


def test_half_written_cache_is_never_read(config, monkeypatch):
    import factorlab.data.synthfaces as S

    calls = {"n": 0}
    real = S.render_batch

    def failing(params, size):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed mid-write")
        return real(params, size)

    monkeypatch.setattr(S, "_CHUNK", 16)
    monkeypatch.setattr(S, "render_batch", failing)
    with pytest.raises(RuntimeError, match="killed"):
        ensure_cache(config, "val", 32)
    root = cache_root(config)
    assert list(root.iterdir()) == []  # no final directory and the temporary one is cleaned up
    monkeypatch.setattr(S, "render_batch", real)
    ds = build(config, split="val", image_size=32, factors={})
    assert np.array_equal(R.render(ds.params(20), 32), ds.image(20))


def test_concurrent_builders_agree(config):
    roots, errors = [], []

    def worker():
        try:
            roots.append(ensure_cache(config, "test", 32))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(roots)) == 1
    leftovers = [p.name for p in cache_root(config).iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []
    ds = build(config, split="test", image_size=32, factors={})
    assert np.array_equal(R.render(ds.params(3), 32), ds.image(3))


def test_preview_grid_shape_and_distinct_cells():
    grid = preview_grid(SynthFacesConfig(), image_size=32, identities=3)
    assert grid.shape == (3 * 34 + 2, 8 * 34 + 2, 3) and grid.dtype == np.uint8
    cells = [grid[2 + r * 34 : 2 + r * 34 + 32, 2 + c * 34 : 2 + c * 34 + 32] for r in range(3) for c in range(8)]
    assert len({c.tobytes() for c in cells}) == 24  # every identity x expression differs


def test_feature_bands_never_clip_a_feature(monkeypatch):
    # Eyes and mouth are drawn only on bands of rows computed from the parameters; drawing them on the
    # whole frame instead must give the same bytes, for typical and for extreme parameters.
    rng = np.random.default_rng(0)
    params = [
        dict(R.sample_params(0, i, R.identity_params(0, i % 7), i % 8, (0.0, 1.0, 2.0)[i % 3]), identity=float(i % 7))
        for i in range(48)
    ]
    params += [{k: rng.uniform(*R.PARAM_RANGES[k]) for k in R.PARAM_KEYS} for _ in range(48)]
    stacked = R.stack_params(params)
    banded = R.render_batch(stacked, 48)

    def whole_frame(*args):
        return np.float32(3.0), np.float32(-5.0), np.float32(5.0)

    monkeypatch.setattr(R, "_eye_box", whole_frame)
    monkeypatch.setattr(R, "_mouth_box", whole_frame)
    assert np.array_equal(banded, R.render_batch(stacked, 48))
