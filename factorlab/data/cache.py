"""The preprocessed cache `factorlab prepare` writes: uint8 image shards plus an index, written atomically.

Layout of a cache folder:

    plan.json           what is being prepared (data set, its config, image size, shard size, sample fingerprint)
    shards/00000.npy    uint8 (n, S, S, 3) face crops, memory-mapped when read
    shards/00000.json   per-image columns of that shard (source, list line, part, group, native labels) and
                        the items of its slice that were skipped, with the reason
    index.json          written last: its presence marks a complete cache
    report.txt          every skipped item (file and line, reason) and the counts of dropped ones

Each file is written to a temporary name and renamed into place, so a killed `prepare` leaves only
whole shards behind and resumes from the first missing one; a resumed cache is byte-identical to an
uninterrupted one because nothing in it depends on time or order of completion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from factorlab.data.types import Skipped, Table
from factorlab.errors import DataError
from factorlab.files import atomic_write, atomic_write_bytes

FORMAT = 1


def write_json(path: Path, data: Any) -> None:
    """Atomically write canonical JSON (sorted keys) so equal content gives equal bytes."""
    atomic_write_bytes(path, (json.dumps(data, sort_keys=True, indent=1) + "\n").encode())


def save_array(path: Path, array: np.ndarray) -> None:
    """Atomically write a .npy file."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a path
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)

    atomic_write(path, write)


def shard_name(k: int) -> str:
    """The file stem of shard k."""
    return f"{k:05d}"


def read_json(path: Path) -> Any:
    """Parse a JSON file of the cache, or a DataError that says how to repair the cache."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"cache file {path} is missing; rerun `factorlab prepare` with the same --out to complete it"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: cache file is not valid JSON ({exc.msg}); delete it and rerun prepare"
        ) from None


class Cache:
    """A complete cache, opened for reading: its table of samples and memory-mapped images."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(
                f"cache {self.path} does not exist; create it with `factorlab prepare DATASET --out {self.path}`"
            )
        if not (self.path / "index.json").is_file():
            raise DataError(
                f"cache {self.path} is incomplete (no index.json): `factorlab prepare` was interrupted; "
                "rerun the same command to resume it"
            )
        self.index = read_json(self.path / "index.json")
        try:
            self._read_table()
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:  # JSON of the wrong shape
            raise DataError(
                f"cache {self.path}: index.json or a shards/*.json is not what `factorlab prepare` writes "
                f"({type(exc).__name__}: {exc}); delete the cache and rerun prepare"
            ) from None

    def _read_table(self) -> None:
        if self.index.get("format") != FORMAT:
            raise DataError(f"cache {self.path} has format {self.index.get('format')}, this factorlab reads {FORMAT}")
        self.dataset: str = self.index["dataset"]
        self.image_size: int = self.index["image_size"]
        self.classes: dict[str, list[str]] = self.index["classes"]
        self.skipped = [Skipped(w, r) for w, r in self.index["skipped_listing"]]
        sources, wheres, parts, groups = [], [], [], []
        labels: dict[str, list[int]] = {f: [] for f in self.classes}
        counts = []
        for shard in self.index["shards"]:
            meta = read_json(self.path / "shards" / f"{shard}.json")
            counts.append(meta["count"])
            sources += meta["sources"]
            wheres += meta["wheres"]
            parts += meta["parts"]
            groups += meta["groups"]
            for f in self.classes:
                labels[f] += meta["labels"][f]
            self.skipped += [Skipped(w, r) for w, r in meta["skipped"]]
        self.table = Table(
            sources=sources,
            wheres=wheres,
            parts=np.array(parts, dtype=str),
            groups=np.array(groups, dtype=str),
            labels={f: np.array(v, dtype=np.int64) for f, v in labels.items()},
            classes=self.classes,
        )
        for factor, values in self.table.labels.items():
            if len(values) and values.max() >= len(self.classes[factor]):
                raise ValueError(f"{factor} label {values.max()} with {len(self.classes[factor])} classes")
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._shards: list[np.ndarray | None] = [None] * len(counts)

    def shard(self, k: int) -> np.ndarray:
        """Shard k's images, memory-mapped (opened on first use, so DataLoader workers each map their own)."""
        if self._shards[k] is None:
            path = self.path / "shards" / f"{self.index['shards'][k]}.npy"
            count = int(self.offsets[k + 1] - self.offsets[k])
            expected = (count, self.image_size, self.image_size, 3)
            try:
                shard = np.load(path, mmap_mode="r", allow_pickle=False)
            except (FileNotFoundError, ValueError, OSError, EOFError) as exc:
                reason = "not an image array" if "pickle" in str(exc) else str(exc) or type(exc).__name__
                raise DataError(
                    f"cache shard {path} cannot be read ({reason}); delete the cache and rerun prepare"
                ) from None
            if shard.shape != expected or shard.dtype != np.uint8:
                raise DataError(
                    f"cache shard {path} holds {shard.dtype} {shard.shape}, not uint8 {expected}: it is damaged; "
                    "delete the cache and rerun prepare"
                )
            self._shards[k] = shard
        return self._shards[k]

    def image(self, i: int) -> np.ndarray:
        """Image i of the cache, uint8 (S, S, 3)."""
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return np.array(self.shard(k)[i - self.offsets[k]])  # a copy: the memory map is read-only

    def images(self, indices: np.ndarray) -> np.ndarray:
        """Images at `indices`, uint8 (B, S, S, 3): one fancy-indexed read per shard touched."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.image_size, self.image_size, 3), dtype=np.uint8)
        shards = np.searchsorted(self.offsets, indices, side="right") - 1
        for k in np.unique(shards):
            rows = np.nonzero(shards == k)[0]
            out[rows] = self.shard(int(k))[indices[rows] - self.offsets[k]]
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_shards"] = [None] * len(self._shards)  # memory maps do not travel to worker processes
        return state


def open_cache(path: Path, *, dataset: str, image_size: int) -> Cache:
    """Open the cache at `path`, checking it holds `dataset` at `image_size`."""
    cache = Cache(path)
    if cache.dataset != dataset:
        raise DataError(
            f"cache {path} holds data set {cache.dataset!r}, not {dataset!r}; point cache= at a {dataset} cache"
        )
    if cache.image_size != image_size:
        raise DataError(
            f"cache {path} holds {cache.image_size}x{cache.image_size} images but the recipe asks for "
            f"{image_size}x{image_size}; run `factorlab prepare {dataset} --image-size {image_size}` into another folder"
        )
    return cache
