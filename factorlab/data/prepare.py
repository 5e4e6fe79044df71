"""Crop every face of a data set once into a uint8 cache (the engine of `factorlab prepare`).

The samples are dealt, in listing order, into shards of `--shard-size`; worker processes decode and
crop whole shards (MTCNN runs batched within a shard) and write each one atomically. A shard whose
files exist is done, so rerunning an interrupted command resumes where it stopped and ends with the
same bytes an uninterrupted run writes. Unreadable images, faces MTCNN cannot find and bad rows are
skipped, counted and listed in `report.txt`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from factorlab.data.align import FaceCropper
from factorlab.data.cache import FORMAT, read_json, save_array, shard_name, write_json
from factorlab.data.records import Sample, Scan, Skipped, Source, SourceConfig
from factorlab.errors import DataError, RecipeError
from factorlab.files import atomic_write_bytes, check_writable_dir


@dataclass
class Prepared:
    """What a prepare run produced."""

    out: Path
    images: int
    skipped: int
    dropped: dict[str, int]
    shards: int
    seconds: float


@dataclass
class ShardJob:
    """One shard's work, small enough to send to a worker process."""

    source: Source  # picklable: its functions and config model are module attributes
    config: str  # the data set's config as JSON
    samples: list[Sample]
    out: Path
    shard: int
    image_size: int
    device: str
    batch_size: int


def plan_of(source: Source, config: SourceConfig, scan: Scan, image_size: int, shard_size: int) -> dict:
    """What this prepare run will write; a resumed run must find the very same plan."""
    digest = hashlib.sha256()
    for s in scan.samples:
        digest.update(json.dumps([s.source, s.where, s.labels, s.part, s.group], sort_keys=True).encode())
    return {
        "format": FORMAT,
        "dataset": source.name,
        "config": config.model_dump(mode="json", exclude={"cache"}),
        "align": source.align(config),
        "image_size": image_size,
        "shard_size": shard_size,
        "classes": scan.classes,
        "samples": len(scan.samples),
        "fingerprint": digest.hexdigest(),
    }


def shard_done(out: Path, k: int) -> bool:
    """A shard is done when its metadata exists: it is written after its images, each atomically."""
    name = shard_name(k)
    return (out / "shards" / f"{name}.json").is_file() and (out / "shards" / f"{name}.npy").is_file()


_croppers: dict[tuple, FaceCropper] = {}  # one per process, so MTCNN's networks load once per worker


def prepare_shard(job: ShardJob) -> int:
    """Decode, crop and write one shard; return how many samples it covered."""
    source = job.source
    config = source.config.model_validate_json(job.config)
    key = (source.align(config), job.image_size, config.margin, job.device, job.batch_size)
    if key not in _croppers:
        _croppers[key] = FaceCropper(*key[:3], device=job.device, batch_size=job.batch_size)
    cropper = _croppers[key]
    raw, readable, skipped = [], [], []
    for sample in job.samples:
        try:
            raw.append(source.read(config, sample))
            readable.append(sample)
        except DataError as exc:
            if config.on_error == "raise":
                raise
            skipped.append(Skipped(sample.where, str(exc).removeprefix(f"{sample.where}: ")))
    crops, kept = [], []
    for sample, crop in zip(readable, cropper.crop_batch(raw, readable), strict=True):
        if isinstance(crop, str):
            if config.on_error == "raise":
                raise DataError(f"{sample.where}: {crop} (set on_error=skip to skip and list such images)")
            skipped.append(Skipped(sample.where, crop))
        else:
            crops.append(crop)
            kept.append(sample)
    size = job.image_size
    images = np.stack(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)
    name = shard_name(job.shard)
    save_array(job.out / "shards" / f"{name}.npy", images)
    meta = {
        "count": len(kept),
        "sources": [s.source for s in kept],
        "wheres": [s.where for s in kept],
        "parts": [s.part for s in kept],
        "groups": [s.group for s in kept],
        "labels": {f: [s.labels[f] for s in kept] for f in job.samples[0].labels},
        "skipped": sorted([s.where, s.reason] for s in skipped),
    }
    write_json(job.out / "shards" / f"{name}.json", meta)
    return len(job.samples)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # workers share the cores; one thread each avoids oversubscription


def prepare(
    source: Source,
    config: SourceConfig,
    out: Path,
    *,
    image_size: int = 160,
    shard_size: int = 1000,
    workers: int = 1,
    device: str = "cpu",
    batch_size: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> Prepared:
    """Write (or resume, or confirm) the cache of `source` under `config` into `out`.

    `on_progress(images_done, images_total)` is called as shards finish (images_done counts resumed shards too).
    """
    if shard_size < 1:
        raise RecipeError(f"--shard-size {shard_size}: give 1 or more images per shard")
    if not 16 <= image_size <= 1024:
        raise RecipeError(f"--image-size {image_size}: give a side between 16 and 1024 pixels")
    start = time.perf_counter()
    out = Path(out)
    check_writable_dir(out, "--out")
    config = config.model_copy(update={"root": Path(config.root).resolve()})
    scan = source.scan(config)
    if not scan.samples:
        reasons = "".join(f"\n  {s.where}: {s.reason}" for s in scan.skipped[:5])
        more = f"\n  ... and {len(scan.skipped) - 5} more" if len(scan.skipped) > 5 else ""
        raise DataError(
            f"{source.name}: no samples found under {config.root} (skipped {len(scan.skipped)}){reasons}{more}"
        )
    plan = plan_of(source, config, scan, image_size, shard_size)
    if (out / "plan.json").is_file():
        if read_json(out / "plan.json") != plan:
            raise DataError(
                f"{out} holds a cache prepared with other settings or data (see {out / 'plan.json'}); "
                "delete it or choose another --out"
            )
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not a factorlab cache; choose another --out")
    else:
        write_json(out / "plan.json", plan)

    for stale in (out / "shards").glob(".*.tmp"):
        stale.unlink()  # half-written files of a killed run; their shards are redone below
    samples = scan.samples
    n_shards = (len(samples) + shard_size - 1) // shard_size
    done = sum(min(shard_size, len(samples) - k * shard_size) for k in range(n_shards) if shard_done(out, k))
    if on_progress:
        on_progress(done, len(samples))
    jobs = [
        ShardJob(
            source,
            config.model_dump_json(),
            samples[k * shard_size : (k + 1) * shard_size],
            out,
            k,
            image_size,
            device,
            batch_size,
        )
        for k in range(n_shards)
        if not shard_done(out, k)
    ]
    if workers <= 1:
        for job in jobs:
            done += prepare_shard(job)
            if on_progress:
                on_progress(done, len(samples))
    elif jobs:
        try:
            pickle.dumps(source)  # worker processes receive it: its functions must be importable by name
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise DataError(
                f"data set {source.name!r}: its source cannot be sent to worker processes ({exc}); define its "
                "scan/read/select/align functions at module level in the plugin, or use --workers 1"
            ) from None
        context = get_context("spawn")  # safe with torch (and CUDA) in the parent
        pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_worker_init)
        try:
            pending = {pool.submit(prepare_shard, job) for job in jobs}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    done += future.result()
                    if on_progress:
                        on_progress(done, len(samples))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return finish(out, plan, scan, n_shards, time.perf_counter() - start)


def finish(out: Path, plan: dict, scan: Scan, n_shards: int, seconds: float) -> Prepared:
    """Write the report and, last, the index that marks the cache complete."""
    names = [shard_name(k) for k in range(n_shards)]
    metas = [read_json(out / "shards" / f"{name}.json") for name in names]
    images = sum(m["count"] for m in metas)
    skipped = sorted([s.where, s.reason] for s in scan.skipped) + [s for m in metas for s in m["skipped"]]
    lines = [
        f"factorlab prepare report: {plan['dataset']}, {images} images written, {len(skipped)} skipped, "
        f"{sum(scan.dropped.values())} dropped",
        "",
        "dropped (expected exclusions, counted):",
        *[f"  {reason}: {count}" for reason, count in sorted(scan.dropped.items())],
        "",
        "skipped (file[:line]<TAB>reason):",
        *[f"{where}\t{reason}" for where, reason in skipped],
    ]
    atomic_write_bytes(out / "report.txt", ("\n".join(lines) + "\n").encode())
    if images == 0:  # an empty cache would only fail later, at run time ("split 'train' is empty")
        reasons = "\n".join(f"  {where}: {reason}" for where, reason in skipped[:5])
        more = f"\n  ... and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        shutil.rmtree(out / "shards", ignore_errors=True)  # a rerun after fixing the images starts afresh
        (out / "plan.json").unlink(missing_ok=True)
        raise DataError(
            f"prepare kept no image of {plan['dataset']}: all {plan['samples']} were skipped, e.g.\n{reasons}{more}\n"
            f"Every reason is listed in {out / 'report.txt'}. Fix the data set (or --root, or its options) and run "
            "prepare again; no usable cache was written."
        )
    index = {
        "format": FORMAT,
        "dataset": plan["dataset"],
        "image_size": plan["image_size"],
        "config": plan["config"],
        "classes": plan["classes"],
        "shards": names,
        "count": images,
        "skipped_listing": sorted([s.where, s.reason] for s in scan.skipped),
        "dropped": dict(sorted(scan.dropped.items())),
    }
    write_json(out / "index.json", index)
    return Prepared(out, images, len(skipped), dict(scan.dropped), n_shards, seconds)
