"""SynthFaces benchmarks: rendering throughput, resident memory of a cached split, difficulty curve.

    OMP_NUM_THREADS=1 python benchmarks/synthfaces.py throughput
    OMP_NUM_THREADS=1 python benchmarks/synthfaces.py memory --images 100000
    OMP_NUM_THREADS=1 python benchmarks/synthfaces.py difficulty --epochs 8

Everything runs on one CPU thread. Figures are printed as Markdown rows for docs/datasets/synthfaces.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from factorlab.data import synthfaces_render as R
from factorlab.data.synthfaces import SynthFacesConfig, build


def _params(n: int, difficulty: float = 1.0) -> dict[str, np.ndarray]:
    rows = []
    for i in range(n):
        traits = R.identity_params(0, i % 50)
        rows.append(dict(R.sample_params(0, i, traits, i % 8, difficulty), identity=float(i % 50)))
    return R.stack_params(rows)


def throughput(n: int = 2048, repeats: int = 3) -> None:
    """Images/s of the renderer alone (best of `repeats`) and of a whole cache build (CPU time, one core)."""
    print("| size | render only (img/s) | cache build: params + render + write (img/s) |")
    print("| --- | --- | --- |")
    for size in (64, 160):
        count = n if size == 64 else n // 4
        params = _params(count)
        best = float("inf")
        for _ in range(repeats):
            t = time.process_time()
            for s in range(0, count, 256):
                R.render_batch({k: v[s : s + 256] for k, v in params.items()}, size)
            best = min(best, time.process_time() - t)
        with tempfile.TemporaryDirectory() as cache:
            config = SynthFacesConfig(identities=10, samples_per_identity=count // 7, cache_dir=cache)
            t = time.process_time()
            built = len(build(config, split="train", image_size=size, factors={}))
            build_s = time.process_time() - t
        print(f"| {size}x{size} | {count / best:,.0f} | {built / build_s:,.0f} |")


def _rss() -> dict[str, int]:
    """Resident memory of this process in MiB (total, anonymous, file-backed) from /proc."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0]) // 1024
    return fields


def memory(images: int, cache_dir: str) -> None:
    """Resident memory of a fresh process iterating every item of a cached split of `images` images."""
    spi = 200
    identities = int(np.ceil(images / spi / 0.7))
    config = SynthFacesConfig(identities=identities, samples_per_identity=spi, cache_dir=cache_dir)
    t = time.time()
    ds = build(config, split="train", image_size=64, factors={})
    print(
        f"images: {len(ds):,} at 64x64 ({ds.images.nbytes / 2**20:,.0f} MiB on disk), cache build {time.time() - t:.0f} s"
    )
    # Iterate in a fresh process, so that what the build allocated is not counted.
    cmd = [sys.executable, __file__, "iterate", "--images", str(images), "--cache-dir", cache_dir]
    subprocess.run(cmd, check=True)


def iterate(images: int, cache_dir: str) -> None:
    """Open the cached split (no generation) and read every item, sampling /proc/self/status."""
    import torch  # noqa: F401  (imported first, so that its own footprint is in the "before" figure)

    config = SynthFacesConfig(
        identities=int(np.ceil(images / 200 / 0.7)), samples_per_identity=200, cache_dir=cache_dir
    )
    before = _rss()
    t = time.time()
    ds = build(config, split="train", image_size=64, factors={})
    opened = _rss()
    peak = dict(opened)
    for i in range(len(ds)):
        item = ds[i]
        if i % 2000 == 0:
            peak = {k: max(v, _rss()[k]) for k, v in peak.items()}
    del item
    after = _rss()
    print(f"iterated {len(ds):,} items in {time.time() - t:.1f} s (MiB)")
    print("| when | VmRSS | RssAnon | RssFile |")
    print("| --- | --- | --- | --- |")
    for name, m in (("after import torch", before), ("data set opened", opened), ("peak while iterating", peak),
                    ("after iterating", after)):  # fmt: skip
        print(f"| {name} | {m['VmRSS']} | {m['RssAnon']} | {m['RssFile']} |")


def difficulty_curve(levels: list[float], epochs: int, spi: int, size: int) -> None:
    """Expression accuracy of a small CNN on held-out identities, per `difficulty`."""
    import torch
    from torch import nn

    torch.set_num_threads(1)

    def small_cnn() -> nn.Module:
        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        return nn.Sequential(
            block(3, 16), block(16, 32), block(32, 64), block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 8),
        )  # fmt: skip

    def tensors(ds):
        x = torch.from_numpy(np.array(ds.images)).permute(0, 3, 1, 2).float().div(255)
        return x, torch.from_numpy(ds.labels("expression"))

    print(f"| difficulty | train acc | test acc (held-out identities) | seconds |  ({epochs} epochs, {size}px)")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as cache:
        for level in levels:
            t = time.time()
            config = SynthFacesConfig(samples_per_identity=spi, difficulty=level, cache_dir=cache)
            x, y = tensors(build(config, split="train", image_size=size, factors={}))
            xt, yt = tensors(build(config, split="test", image_size=size, factors={}))
            torch.manual_seed(0)
            model = small_cnn()
            opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * ((len(x) + 63) // 64))
            for _ in range(epochs):
                model.train()
                for idx in torch.randperm(len(x)).split(64):
                    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
            model.eval()
            with torch.no_grad():
                train_acc = torch.cat([model(b).argmax(1) for b in x.split(512)]).eq(y).float().mean().item()
                test_acc = torch.cat([model(b).argmax(1) for b in xt.split(512)]).eq(yt).float().mean().item()
            print(f"| {level:g} | {train_acc:.1%} | {test_acc:.1%} | {time.time() - t:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["throughput", "memory", "difficulty", "iterate"])
    parser.add_argument("--images", type=int, default=100_000, help="memory: size of the cached split")
    parser.add_argument("--cache-dir", default=None, help="memory: cache directory (default: a temporary one)")
    parser.add_argument("--levels", default="0,0.5,1,1.5,2", help="difficulty: comma-separated levels")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--samples-per-identity", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.part == "throughput":
        throughput()
    elif args.part == "iterate":
        iterate(args.images, args.cache_dir)
    elif args.part == "memory":
        if args.cache_dir:
            memory(args.images, args.cache_dir)
        else:
            with tempfile.TemporaryDirectory() as cache:
                memory(args.images, cache)
    else:
        levels = [float(v) for v in args.levels.split(",")]
        difficulty_curve(levels, args.epochs, args.samples_per_identity, args.size)


if __name__ == "__main__":
    main()
