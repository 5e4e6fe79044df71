"""SynthFaces: procedurally rendered faces whose every factor is known (the embedded default data set).

Identities are fixed traits drawn from (seed, identity); each sample draws its expression intensity,
jitter and nuisances from (seed, global index), so a sample is the same in every split, order and
worker count. Splits are identity-disjoint. Images are generated once into a cache directory
(uint8 memory-mapped `.npy` plus the parameters of every sample), written atomically.

    ds = build(SynthFacesConfig(), split="train", image_size=64, factors={})
    ds.image(0), ds.labels("expression"), ds.ground_truth()["yaw"], ds.render_with(0, 1)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from factorlab.data.base import FactorDataset, remap_labels, train_split_classes
from factorlab.data.synthfaces_render import (
    EXPRESSIONS,
    FACTOR_KEYS,
    IDENTITY_KEYS,
    PARAM_KEYS,
    RENDERER_VERSION,
    _seed_rng,
    identity_params,
    render,
    render_batch,
    sample_params,
)
from factorlab.errors import DataError
from factorlab.factors import Factor

__all__ = ["SynthFaces", "SynthFacesConfig", "build", "preview_grid", "render", "split_identities", "EXPRESSIONS"]

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1  # bump when the cache layout changes
SAMPLE_KEYS = tuple(k for k in PARAM_KEYS if k not in IDENTITY_KEYS)  # columns of params.npy
POSE_CLASSES = ("left", "frontal", "right")
FACTORS = {
    "expression": "8 AffectNet classes",
    "identity": "identity id: the train split's identities are the classes; val/test identities get negative ids",
    "pose": "yaw binned into left / frontal / right",
    "glasses": "no / yes (an identity trait)",
    "occlusion": "no / yes (an occluding patch)",
}
_CHUNK = 256  # samples rendered per batch while building a cache


class SynthFacesConfig(BaseModel):
    """Options of the `synthfaces` data set."""

    model_config = ConfigDict(extra="forbid")

    identities: int = Field(50, ge=3, le=100_000, description="Number of identities over all splits.")
    samples_per_identity: int = Field(
        200, ge=1, le=100_000, description="Images per identity (default: 50 x 200 = 10,000 images in all)."
    )
    difficulty: float = Field(
        1.0,
        ge=0.0,
        le=2.0,
        description="Scales nuisances (pose, lighting, background, blur, noise, occlusion), expression "
        "jitter and low intensities: 0 = clean frontal faces at full intensity, 2 = hard.",
    )
    correlation: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Train split only: probability that a sample shows its identity's habitual expression "
        "(else the balanced schedule). Val and test stay uncorrelated.",
    )
    seed: int = Field(0, ge=0, description="Seed of identities, splits and samples.")
    train_fraction: float = Field(0.7, gt=0.0, lt=1.0, description="Fraction of identities in the train split.")
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0, description="Fraction of identities in the val split.")
    test_fraction: float = Field(0.15, gt=0.0, lt=1.0, description="Fraction of identities in the test split.")
    cache_dir: str | None = Field(
        None, description="Cache directory; None uses $FACTORLAB_CACHE, else ~/.cache/factorlab."
    )

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SynthFacesConfig:
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train_fraction + val_fraction + test_fraction must be 1, got {total:g}; adjust the three fractions"
            )
        return self


def split_identities(config: SynthFacesConfig) -> dict[str, np.ndarray]:
    """Identity ids of each split (disjoint, sorted), drawn from the seed."""
    order = _seed_rng(config.seed, 0).permutation(config.identities)
    n_train = round(config.identities * config.train_fraction)
    n_val = round(config.identities * config.val_fraction)
    n_test = config.identities - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise DataError(
            f"synthfaces: identities={config.identities} gives {n_train}/{n_val}/{n_test} train/val/test identities "
            "with these fractions; every split needs at least one: raise `identities` or change the fractions"
        )
    parts = np.split(order, [n_train, n_train + n_val])
    return {name: np.sort(part) for name, part in zip(SPLITS, parts, strict=True)}


def habitual_expressions(config: SynthFacesConfig) -> np.ndarray:
    """Each identity's habitual expression (used by `correlation`), balanced over identities."""
    return _seed_rng(config.seed, 4).permutation(config.identities) % len(EXPRESSIONS)


def _split_params(config: SynthFacesConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(identity table (identities, len(IDENTITY_KEYS)), per-sample table (n, len(SAMPLE_KEYS))) of a split."""
    ids = split_identities(config)[split]
    habitual = habitual_expressions(config)
    spi = config.samples_per_identity
    identity_table = np.array(
        [[identity_params(config.seed, i)[k] for k in IDENTITY_KEYS] for i in range(config.identities)]
    )
    samples = np.empty((len(ids) * spi, len(SAMPLE_KEYS)), dtype=np.float64)
    for n, ident in enumerate(ids):
        traits = dict(zip(IDENTITY_KEYS, identity_table[ident], strict=True))
        # Balanced schedule: each identity cycles through the expressions in its own order.
        schedule = _seed_rng(config.seed, 3, int(ident)).permutation(len(EXPRESSIONS))
        for k in range(spi):
            index = int(ident) * spi + k  # global index: the same whatever the split
            rng = _seed_rng(config.seed, 2, index)
            habit = rng.random() < config.correlation  # always drawn, so the rest is split-independent
            expression = int(habitual[ident]) if (split == "train" and habit) else int(schedule[k % len(EXPRESSIONS)])
            p = sample_params(config.seed, index, traits, expression, config.difficulty, rng=rng)
            p["identity"] = float(ident)
            samples[n * spi + k] = [p[key] for key in SAMPLE_KEYS]
    return identity_table, samples


def cache_root(config: SynthFacesConfig) -> Path:
    """The cache directory this config uses."""
    root = config.cache_dir or os.environ.get("FACTORLAB_CACHE") or Path.home() / ".cache" / "factorlab"
    return Path(root).expanduser() / "synthfaces"


def cache_key(config: SynthFacesConfig, split: str, image_size: int) -> str:
    """Hash of everything the cached images depend on (not the cache location)."""
    blob = json.dumps(
        {
            "config": config.model_dump(exclude={"cache_dir"}),
            "split": split,
            "image_size": image_size,
            "renderer": RENDERER_VERSION,
            "format": CACHE_FORMAT,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_cache(config: SynthFacesConfig, split: str, image_size: int) -> Path:
    """The cache directory of (config, split, image_size), generating it first if it is missing.

    It is generated into a private temporary directory and renamed into place in one step, so a
    reader sees either nothing or a complete cache. Processes that build at the same time (DDP ranks)
    each finish their own copy; the first rename wins and the others discard theirs.
    """
    root = cache_root(config)
    final = root / f"{split}-{image_size}px-{cache_key(config, split, image_size)}"
    if final.is_dir():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    except OSError as err:
        raise DataError(
            f"synthfaces: cannot write the cache under {root} ({err}); set `cache_dir` or $FACTORLAB_CACHE "
            "to a writable directory"
        ) from None
    try:
        identity_table, samples = _split_params(config, split)
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(samples), image_size, image_size, 3)
        )
        identity_cols = {k: identity_table[samples[:, SAMPLE_KEYS.index("identity")].astype(np.int64), c]
                         for c, k in enumerate(IDENTITY_KEYS)}  # fmt: skip
        from factorlab.progress import task

        description = f"rendering SynthFaces {split} split once into the cache ({len(samples)} images)"
        with task("render", description, total=len(samples), unit="images") as shown:
            for start in range(0, len(samples), _CHUNK):
                stop = min(start + _CHUNK, len(samples))
                batch = {k: samples[start:stop, c] for c, k in enumerate(SAMPLE_KEYS)}
                batch.update({k: v[start:stop] for k, v in identity_cols.items()})
                images[start:stop] = render_batch(batch, image_size)
                shown.advance(stop - start)
        images.flush()
        del images
        np.save(tmp / "samples.npy", samples)
        np.save(tmp / "identities.npy", identity_table)
        meta = {
            "config": config.model_dump(exclude={"cache_dir"}),
            "split": split,
            "image_size": image_size,
            "renderer": RENDERER_VERSION,
            "sample_keys": list(SAMPLE_KEYS),
            "identity_keys": list(IDENTITY_KEYS),
            "n": len(samples),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race: use its cache
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


class SynthFaces(FactorDataset):
    """One split of SynthFaces, read from its memory-mapped cache."""

    def __init__(
        self, config: SynthFacesConfig, *, split: str, image_size: int, factors: Mapping[str, Factor] | None = None
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"synthfaces: unknown split {split!r}; choose one of {list(SPLITS)}")
        if not 32 <= int(image_size) <= 160:
            raise DataError(f"synthfaces: image_size={image_size} is out of range; SynthFaces renders 32 to 160 px")
        factors = dict(factors or {})
        unknown = [name for name in factors if name not in FACTORS]
        if unknown:
            listed = ", ".join(f"{k} ({v})" for k, v in FACTORS.items())
            raise DataError(f"synthfaces cannot label factor(s) {unknown}; it supports: {listed}")
        self.config, self.split, self.image_size = config, split, int(image_size)
        self.root = ensure_cache(config, split, self.image_size)
        self.images = np.load(self.root / "images.npy", mmap_mode="r")
        self._samples = np.load(self.root / "samples.npy", mmap_mode="r")
        self._identities = np.load(self.root / "identities.npy")
        self.identity_ids = split_identities(config)[split]

        native = {
            "expression": list(EXPRESSIONS),
            "identity": [f"id{i:03d}" for i in range(config.identities)],
            "pose": list(POSE_CLASSES),
            "glasses": ["no", "yes"],
            "occlusion": ["no", "yes"],
        }
        raw = self._native_labels()
        wanted = ["expression", "identity"] + [f for f in factors if f not in ("expression", "identity")]
        keep = np.ones(len(self._samples), dtype=bool)
        self.classes: dict[str, list[str]] = {}
        labels: dict[str, np.ndarray] = {}
        for name in wanted:
            target = factors.get(name)
            if target is not None and target.classes is not None:
                mask, _ = remap_labels(raw[name], native[name], target.classes, where=f"synthfaces factor {name!r}")
                keep &= mask
                self.classes[name] = list(target.classes)
            elif name == "identity":  # the train split's identities (splits are identity-disjoint)
                train_ids = split_identities(config)["train"]
                self.classes[name], unseen, identity_lookup = train_split_classes(native[name], train_ids)
                self.unseen_classes = {name: unseen}
            else:
                self.classes[name] = native[name]
        self.indices = np.flatnonzero(keep)
        self.dropped: dict[str, int] = {}
        for name in wanted:
            target = factors.get(name)
            if target is not None and target.classes is not None:
                mask, _ = remap_labels(raw[name], native[name], target.classes)
                self.dropped[name] = int((~mask).sum())
                _, labels[name] = remap_labels(raw[name][self.indices], native[name], target.classes)
            elif name == "identity":
                labels[name] = identity_lookup[raw[name][self.indices]]
            else:
                labels[name] = raw[name][self.indices]
        self._labels = labels

    def _column(self, key: str) -> np.ndarray:
        return np.asarray(self._samples[:, SAMPLE_KEYS.index(key)])

    def _native_labels(self) -> dict[str, np.ndarray]:
        identity = self._column("identity").astype(np.int64)
        yaw = self._column("yaw")
        return {
            "expression": self._column("expression").astype(np.int64),
            "identity": identity,
            "pose": np.where(yaw < -0.15, 0, np.where(yaw > 0.15, 2, 1)).astype(np.int64),
            "glasses": self._identities[identity, IDENTITY_KEYS.index("glasses")].astype(np.int64),
            "occlusion": self._column("occluded").astype(np.int64),
        }

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> np.ndarray:
        """The image of sample `index` as uint8 (H, W, 3)."""
        return np.array(self.images[self.indices[index]])  # a writable copy, not a view of the cache

    def image_batch(self, indices: np.ndarray) -> np.ndarray:
        """The images of `indices`: one gather from the cache (a copy)."""
        return self.images[self.indices[np.asarray(indices, dtype=np.int64)]]

    def labels(self, factor: str) -> np.ndarray:
        """Labels of `factor` (ids into `classes[factor]`) of every sample, as int64."""
        if factor not in self._labels:
            raise DataError(f"synthfaces: no labels for factor {factor!r}; this data set has {list(self._labels)}")
        return self._labels[factor]

    def ground_truth(self) -> dict[str, np.ndarray]:
        """Every factor value of every sample: class ids (native, e.g. 8 expressions) and continuous values."""
        rows = self.indices
        truth = {k: np.asarray(self._samples[rows, c]) for c, k in enumerate(SAMPLE_KEYS)}
        identity = truth["identity"].astype(np.int64)
        truth.update({k: self._identities[identity, c] for c, k in enumerate(IDENTITY_KEYS)})
        for key in ("expression", "identity", "hair_style", "glasses", "beard", "mole", "occluded", "noise_seed"):
            truth[key] = truth[key].astype(np.int64)
        truth.update({f"{k}_label": v for k, v in self._labels.items()})
        return truth

    def params(self, index: int) -> dict[str, float]:
        """The full render parameters of sample `index`: render(ds.params(i), ds.image_size) == ds.image(i)."""
        row = self._samples[self.indices[index]]
        p = {k: float(row[c]) for c, k in enumerate(SAMPLE_KEYS)}
        p.update({k: float(v) for k, v in zip(IDENTITY_KEYS, self._identities[int(p["identity"])], strict=True)})
        return p

    def render_with(self, i: int, j: int, factors: Sequence[str] = ("expression",)) -> np.ndarray:
        """Sample i re-rendered with the listed factors taken from sample j (the true result of a swap)."""
        if isinstance(factors, str):
            factors = (factors,)
        unknown = [f for f in factors if f not in FACTOR_KEYS]
        if unknown:
            raise DataError(f"synthfaces.render_with: unknown factor(s) {unknown}; choose from {list(FACTOR_KEYS)}")
        p, q = self.params(i), self.params(j)
        for name in factors:
            p.update({k: q[k] for k in FACTOR_KEYS[name]})
        return render(p, self.image_size)


def build(
    config: SynthFacesConfig, *, split: str, image_size: int, factors: Mapping[str, Factor] | None = None
) -> SynthFaces:
    """SynthFaces: procedurally rendered faces with ground-truth expression, identity and nuisances."""
    return SynthFaces(config, split=split, image_size=image_size, factors=factors)


def preview_grid(config: SynthFacesConfig, *, image_size: int = 64, identities: int = 8, pad: int = 2) -> np.ndarray:
    """A uint8 picture: rows are identities, columns the 8 expressions (full intensity, neutral nuisances)."""
    rows = min(identities, config.identities)
    params = []
    for ident in range(rows):
        traits = identity_params(config.seed, ident)
        for expression in range(len(EXPRESSIONS)):
            p = sample_params(config.seed, ident * len(EXPRESSIONS) + expression, traits, expression, 0.0)
            params.append(dict(p, identity=float(ident)))
    faces = render_batch({k: np.array([p[k] for p in params]) for k in PARAM_KEYS}, image_size)
    cell = image_size + pad
    grid = np.full((rows * cell + pad, len(EXPRESSIONS) * cell + pad, 3), 255, dtype=np.uint8)
    for k, face in enumerate(faces):
        r, c = divmod(k, len(EXPRESSIONS))
        grid[pad + r * cell : pad + r * cell + image_size, pad + c * cell : pad + c * cell + image_size] = face
    return grid


def preview_labels(config: SynthFacesConfig, *, identities: int = 8) -> dict:
    """The row and column names of `preview_grid`: identities (rows) and expressions (columns)."""
    rows = min(identities, config.identities)
    return {
        "rows": [f"id{i:03d}" for i in range(rows)],
        "columns": list(EXPRESSIONS),
        "row_title": "identity",
        "column_title": "expression",
        "title": f"SynthFaces: {rows} identities (rows) x {len(EXPRESSIONS)} expressions (columns), full intensity",
    }
