"""What the real data sets share: samples read from list files, split selection, and one dataset class.

Each real data set (affectnet, ckplus, fer2013, rafdb, imagefolder) is a `Source`: it scans its list
files into `Sample`s (labels as ids over its own native class names), reads one sample's raw image,
and picks the samples of a split from a `Table` of per-sample columns. The table comes either from
a fresh scan or from a prepared cache, so both paths select exactly the same samples.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from factorlab.data.align import FaceCropper
from factorlab.data.base import FactorDataset, remap_labels, train_split_classes
from factorlab.data.cache import open_cache
from factorlab.data.types import AlignMode, Sample, Scan, Skipped, Table
from factorlab.errors import DataError
from factorlab.factors import Factor

SPLITS = ("train", "val", "test")
OnError = Literal["raise", "skip"]


class SourceConfig(BaseModel):
    """Options every real data set has."""

    model_config = ConfigDict(extra="forbid")

    root: Path = Field(description="Folder holding the data set in its official layout (see docs/datasets/).")
    cache: Path | None = Field(
        None,
        description="A cache written by `factorlab prepare`; when set, images come from it and no JPEG is decoded.",
    )
    on_error: OnError = Field(
        "raise",
        description="What a bad row or a missing/empty image found while listing does: 'raise' stops with the file and "
        "line; 'skip' drops it, counts it and lists it (`dataset.skipped`, the prepare report).",
    )
    margin: float = Field(0.2, ge=0.0, le=1.0, description="Border added around a face box, as a fraction of its side.")


class Problems:
    """Raises a DataError, or records the problem and moves on, as `on_error` says."""

    def __init__(self, on_error: OnError) -> None:
        self.on_error = on_error
        self.skipped: list[Skipped] = []

    def __call__(self, where: str, reason: str) -> None:
        if self.on_error == "raise":
            raise DataError(f"{where}: {reason} (set on_error=skip to skip such items and list them instead)")
        self.skipped.append(Skipped(where, reason))


def read_from_root(config: Any, sample: Sample) -> np.ndarray:
    """The sample's image file under the data set's root (the default `Source.read`)."""
    return read_image(config.root / sample.source, sample.where)


def select_with_holdout(config: Any, table: Table, split: str) -> np.ndarray:
    """test = the official test part; train/val = the train part minus/only its seeded held-out fraction."""
    if split == "test":
        return np.nonzero(table.parts == "test")[0]
    train = np.nonzero(table.parts == "train")[0]
    held = holdout_mask([table.sources[i] for i in train], config.val_fraction, config.seed)
    return train[held] if split == "val" else train[~held]


def align_from_config(config: Any) -> AlignMode:
    """The crop mode the config asks for (the default `Source.align`)."""
    return config.align


@dataclass(frozen=True)
class Source:
    """A real data set: how to list it, read one raw image, and select a split."""

    name: str
    config: type[SourceConfig]
    scan: Callable[[Any], Scan]
    description: str
    read: Callable[[Any, Sample], np.ndarray] = read_from_root  # raw RGB uint8 (H, W, 3), before cropping
    select: Callable[[Any, Table, str], np.ndarray] = select_with_holdout  # indices into the table
    align: Callable[[Any], AlignMode] = align_from_config  # how faces are cropped under this config

    def build(self, config: SourceConfig, *, split: str, image_size: int, factors: dict[str, Factor]) -> RecordDataset:
        """The registered data-set factory: the split of this data set under `config`."""
        return build_dataset(self, config, split=split, image_size=image_size, factors=factors)

    def registration(self) -> tuple:
        """Deprecated (0.1): (name, factory, config model, description); register with `source=` instead."""
        import warnings

        warnings.warn(
            "Source.registration() is deprecated: register(name, source.build, config=source.config, "
            "description=..., source=source) so `factorlab prepare` can cache the data set",
            DeprecationWarning,
            stacklevel=2,
        )
        return (self.name, self.build, self.config, self.description)


# ---------------------------------------------------------------------------------------------- reading


def read_image(path: Path, where: str = "") -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3); grayscale and palette images are converted."""
    prefix = f"{where}: " if where and where != str(path) else ""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{prefix}image {path} is missing; check the data set root and its layout") from None
    if size == 0:
        raise DataError(f"{prefix}image {path} is empty (0 bytes); download it again or set on_error=skip")
    try:
        with Image.open(path) as im:
            im.load()  # Pillow decodes lazily: load() is where a truncated file fails
            return np.array(im.convert("RGB"))  # a writable copy: torch warns on read-only arrays
    except UnidentifiedImageError:
        raise DataError(f"{prefix}{path} is not an image Pillow can read; replace it or set on_error=skip") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{prefix}image {path} is too large to decode safely ({exc}); resize it or remove it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{prefix}image {path} is corrupt or truncated ({exc}); download it again") from None


def csv_records(
    path: Path, columns: Sequence[str], required: Sequence[str], problems: Problems
) -> Iterator[tuple[str, int, dict[str, str]]]:
    """Rows of a CSV list as (where = "file:line", line, {column: text}).

    The header must name `columns`; a row with too few fields or a NULL/empty `required` field is
    reported to `problems` with its file and line, and skipped.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [c.strip() for c in next(reader, [])]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(_not_csv(path, reader.line_num + 1, exc)) from None
        if any(c not in header for c in columns):
            raise DataError(f"{path}:1: header must name the columns {','.join(columns)}; found {header}")
        column = {c: header.index(c) for c in columns}
        while True:
            try:
                row = next(reader, None)
            except (UnicodeDecodeError, csv.Error) as exc:
                raise DataError(_not_csv(path, reader.line_num + 1, exc)) from None
            if row is None:
                break
            where = f"{path}:{reader.line_num}"
            if not row:
                continue
            if len(row) < len(header):
                problems(where, f"has {len(row)} fields, expected {len(header)} ({','.join(header)})")
                continue
            value = {c: row[i].strip() for c, i in column.items()}
            null = [c for c in required if value[c] in ("", "NULL")]
            if null:
                problems(where, f"field(s) {', '.join(null)} are NULL or empty")
                continue
            yield where, reader.line_num, value


def _not_csv(path: Path, line: int, exc: Exception) -> str:
    what = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"is not a valid CSV file ({exc})"
    return (
        f"{path}:{line}: the list {what}; it may be damaged or a binary file. Check that the data set root "
        "holds the official files (docs/datasets/ lists them), and download the list again if needed"
    )


def check_image_file(path: Path, where: str, problems: Problems) -> bool:
    """True when `path` exists and is not empty; otherwise report it (a stat, no decoding)."""
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        problems(where, f"image {path} is missing")
        return False
    if size == 0:
        problems(where, f"image {path} is empty (0 bytes)")
        return False
    return True


def require_dir(path: Path, what: str) -> None:
    """A DataError unless `path` is a folder."""
    if not path.is_dir():
        raise DataError(
            f"{what} {path} does not exist or is not a folder; point data.root= at it (factorlab run RECIPE data.root=/path, or --root for prepare); docs/datasets/ says what to download"
        )


def require_file(path: Path, what: str) -> None:
    """A DataError unless `path` is a file."""
    if not path.is_file():
        raise DataError(f"{what} {path} is missing; the data set's official layout has it (see docs/datasets/)")


# --------------------------------------------------------------------------------------------- splitting


def check_split(split: str, where: str) -> None:
    """A DataError unless `split` is train, val or test."""
    if split not in SPLITS:
        raise DataError(f"{where}: unknown split {split!r}; use one of {', '.join(SPLITS)}")


def holdout_mask(keys: list[str] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Marks about `fraction` of `keys` as held out, by a seeded hash of each key.

    A hash (not a permutation) keeps each item's side fixed whatever else is in the list, so a split
    read from a cache (where unreadable images are gone) holds the same items as one read from disk.
    """
    threshold = fraction * 2**64
    digest = hashlib.blake2b
    return np.array(
        [int.from_bytes(digest(f"{seed}:{key}".encode(), digest_size=8).digest()) < threshold for key in keys],
        dtype=bool,
    )


# ----------------------------------------------------------------------------------------------- dataset


class RecordDataset(FactorDataset):
    """The samples of one split of a real data set, with labels remapped onto the run's factors."""

    def __init__(
        self,
        name: str,
        table: Table,
        indices: np.ndarray,
        image: Callable[[int], np.ndarray],
        factors: dict[str, Factor],
        *,
        split: str,
        skipped: list[Skipped] | None = None,
        images: Callable[[np.ndarray], np.ndarray] | None = None,
        train_indices: np.ndarray | None = None,
    ) -> None:
        """`train_indices`: the train split's rows of `table`, whose classes become those of factors without
        canonical classes (identity); None = this split's own rows."""
        self.name, self.split = name, split
        self._image, self._images = image, images
        self.skipped = list(skipped or [])
        self.dropped: dict[str, int] = {}
        indices = np.asarray(indices, dtype=np.int64)
        labels: dict[str, np.ndarray] = {}
        self.classes = {}
        self.unseen_classes = {}
        train_rows = _rows_kept(table, np.asarray(indices if train_indices is None else train_indices), factors)
        for factor_name, factor in factors.items():
            if factor_name not in table.classes:
                raise DataError(
                    f"data set {name!r} has no {factor_name!r} labels; it labels {sorted(table.classes)}. "
                    f"Use a data set that labels {factor_name!r} or drop the factor from the recipe."
                )
            native = table.classes[factor_name]
            if factor.classes is None:  # classes the train split shows; held-out ones get negative labels
                classes, unseen, lookup = train_split_classes(native, table.labels[factor_name][train_rows])
                self.classes[factor_name], self.unseen_classes[factor_name] = classes, unseen
                labels[factor_name] = lookup[table.labels[factor_name]]
                continue
            keep, new = remap_labels(table.labels[factor_name][indices], native, factor.classes, where=name)
            self.dropped[factor_name] = int((~keep).sum())
            self.classes[factor_name] = list(factor.classes)
            full = np.full(len(table), -1, dtype=np.int64)
            full[indices[keep]] = new
            labels[factor_name] = full
            indices = indices[keep]
        if len(indices) == 0:
            raise DataError(
                f"data set {name!r}: split {split!r} is empty after filtering (dropped {self.dropped}, skipped "
                f"{len(self.skipped)}); check root, the split options and the factors' classes"
            )
        self.indices = indices
        self._labels = {f: lab[indices] for f, lab in labels.items()}
        self.sources = [table.sources[i] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> np.ndarray:
        """The image of sample `index` as uint8 (H, W, 3)."""
        return self._image(int(self.indices[index]))

    def labels(self, factor: str) -> np.ndarray:
        """All labels of `factor`, int64, without decoding images."""
        return self._labels[factor]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch at once (torch's DataLoader calls this): one read per cache shard instead of one per image."""
        if self._images is None:
            return [self[i] for i in indices]
        import torch

        batch = torch.from_numpy(self._images(self.indices[np.asarray(indices)])).permute(0, 3, 1, 2)
        return [
            {"image": batch[k], **{f: int(lab[i]) for f, lab in self._labels.items()}} for k, i in enumerate(indices)
        ]


def _train_rows(source: Source, config: SourceConfig, table: Table, factors: dict[str, Factor]) -> np.ndarray | None:
    """The train split's rows, when a factor takes its classes from the train split (else None: not needed)."""
    if all(factor.classes is not None for factor in factors.values()):
        return None
    return source.select(config, table, "train")


def _rows_kept(table: Table, rows: np.ndarray, factors: dict[str, Factor]) -> np.ndarray:
    """The `rows` whose labels are among the classes of every factor that has canonical classes."""
    rows = np.asarray(rows, dtype=np.int64)
    for name, factor in factors.items():
        if factor.classes is not None and name in table.classes:
            keep, _ = remap_labels(table.labels[name][rows], table.classes[name], factor.classes, where=name)
            rows = rows[keep]
    return rows


# options that only choose a split from the cached samples, or say where things are
SPLIT_ONLY = frozenset(
    {"root", "cache", "on_error", "val_fraction", "test_fraction", "seed", "folds", "fold", "val_fold"}
)


def check_cache_options(prepared: dict, config: SourceConfig, path: Path) -> None:
    """A DataError when the recipe asks for samples other than those the cache was prepared with."""
    wanted = config.model_dump(mode="json")
    differ = [
        f"{key} = {prepared[key]!r} in the cache, {wanted[key]!r} in the recipe"
        for key in sorted(set(prepared) & set(wanted) - SPLIT_ONLY)
        if prepared[key] != wanted[key]
    ]
    if differ:
        raise DataError(
            f"cache {path} was prepared with other options: {'; '.join(differ)}. Use the cache's values, or "
            "prepare another cache with yours: factorlab prepare DATASET --root R --out OTHER key=value ..."
        )


def build_dataset(
    source: Source, config: SourceConfig, *, split: str, image_size: int, factors: dict[str, Factor]
) -> RecordDataset:
    """The split of `source` under `config`, read from the cache when `config.cache` is set."""
    check_split(split, source.name)
    if config.cache is not None:
        cache = open_cache(config.cache, dataset=source.name, image_size=image_size)
        check_cache_options(cache.index.get("config", {}), config, config.cache)
        indices = source.select(config, cache.table, split)
        return RecordDataset(
            source.name,
            cache.table,
            indices,
            cache.image,
            factors,
            split=split,
            skipped=cache.skipped,
            images=cache.images,
            train_indices=_train_rows(source, config, cache.table, factors),
        )
    scan = source.scan(config)
    table = Table.from_samples(scan.samples, scan.classes)
    indices = source.select(config, table, split)
    cropper = FaceCropper(source.align(config), image_size, config.margin)

    def image(i: int) -> np.ndarray:
        sample = scan.samples[i]
        return cropper.crop(source.read(config, sample), sample)

    train_indices = _train_rows(source, config, table, factors)
    dataset = RecordDataset(
        source.name, table, indices, image, factors, split=split, skipped=scan.skipped, train_indices=train_indices
    )
    dataset.dropped.update({f"listing: {k}": v for k, v in scan.dropped.items()})
    return dataset


def config_json(config: BaseModel) -> str:
    """The config as canonical JSON (sorted keys), for fingerprints."""
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)
