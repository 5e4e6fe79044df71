"""Images/s of the paper model's training step on one GPU per speed option, and the fraction of the FLOP-bound rate.

    python benchmarks/gpu.py                          # 160x160, batch 256, < 5 minutes on one H100/H200
    python benchmarks/gpu.py --batch 128 --cudnn-benchmark
    python benchmarks/gpu.py --peak-bf16 989 --peak-tf32 495   # a GPU missing from PEAKS
    python benchmarks/gpu.py --smoke                  # tiny, on the CPU: checks the script's logic (CI)

The step is factorlab's `Trainer.step` (adversary step + main step) of recipes/expression.toml with
`encoder.weights=none` (the weights do not change the speed), with the `[run]` options switched on one by one:
fp32, bf16 autocast, + channels_last, + torch.compile. Training FLOPs per image are taken as 3x the forward
FLOPs of encoder + branches + head, counted by torch's FlopCounterMode at the benchmark's size (3.05 GFLOP at
160x160: the trunk cut at repeat_2 is 2.46 of them; the uncut Inception-ResNet-V1 is 2.84). The fraction of
peak is images/s x FLOPs/image / the GPU's dense peak: the bf16 tensor-core peak for bf16 rows and the TF32 peak
for fp32 rows (cuDNN runs fp32 convolutions in TF32 by default, torch.backends.cudnn.allow_tf32).

`host syncs` counts the step's device-to-host synchronisations (torch.cuda.set_sync_debug_mode): 0 means the
step queues work without waiting for the GPU.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import factorlab_step, make_setup, sync, time_steps  # noqa: E402

# Dense (no sparsity) peak TFLOP/s: (bf16/fp16 tensor cores, tf32 tensor cores), from NVIDIA's data sheets.
PEAKS = {
    "H200": (989.4, 494.7),
    "H100 NVL": (835.0, 417.5),
    "H100 PCIe": (756.0, 378.0),
    "H100": (989.4, 494.7),  # SXM5
    "A100": (312.0, 156.0),
}
OPTIONS = {
    "fp32": ["run.precision=fp32", "run.channels_last=false", "run.compile=false"],
    "bf16": ["run.precision=bf16", "run.channels_last=false", "run.compile=false"],
    "bf16+channels_last": ["run.precision=bf16", "run.channels_last=true", "run.compile=false"],
    "bf16+channels_last+compile": ["run.precision=bf16", "run.channels_last=true", "run.compile=true"],
}


def gpu_peaks(name: str) -> tuple[float, float] | None:
    """(bf16, tf32) dense peak TFLOP/s of a GPU from its device name, or None if it is not in PEAKS."""
    for key, peaks in PEAKS.items():  # most specific names first
        if all(part in name for part in key.split()):
            return peaks
    return None


def forward_gflops(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Forward GFLOP per image of `model` (encoder + branches + heads), counted by FlopCounterMode."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops() / images.shape[0] / 1e9


def host_syncs(setup, steps: int = 1) -> int | None:
    """Device-to-host synchronisations during `steps` training steps (None on the CPU: nothing to count)."""
    if setup.batches[0][0].device.type != "cuda":
        return None
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i in range(steps):  # not time_steps: its explicit synchronize is not the step's
                images, labels = setup.batches[i % len(setup.batches)]
                factorlab_step(setup, images, labels)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def bench_option(option: str, args: argparse.Namespace, device: str) -> dict:
    """Build a fresh model with `option`'s [run] settings; warm up (compiles), then time `args.steps` steps."""
    if device == "cuda":
        gc.collect()  # the previous option's model and optimiser state
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    setup = make_setup(
        "paper160",
        [*OPTIONS[option], f"data.image_size={args.size}"],
        batch_size=args.batch,
        device=device,
        pool=2,
        smoke=args.smoke,
    )
    start = time.perf_counter()
    time_steps(factorlab_step, setup, 0, args.warmup)
    warmup_s = time.perf_counter() - start
    syncs = host_syncs(setup)
    sync(torch.device(device))
    wall, _ = time_steps(factorlab_step, setup, 0, args.steps)
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {"rate": setup.batch_size * args.steps / wall, "warmup_s": warmup_s, "syncs": syncs, "memory": memory}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="batch size (one GPU)")
    parser.add_argument("--size", type=int, default=160, help="image side")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per option")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per option (torch.compile runs here)")
    parser.add_argument(
        "--options", nargs="+", choices=list(OPTIONS), default=None, help="default: all (--smoke: no compile)"
    )
    parser.add_argument("--peak-bf16", type=float, default=None, help="dense bf16 peak TFLOP/s (default: PEAKS)")
    parser.add_argument("--peak-tf32", type=float, default=None, help="dense tf32 peak TFLOP/s (default: PEAKS)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the logic, not the speed")
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.smoke:
        args.batch, args.size, args.steps, args.warmup = 2, 80, 1, 1
        torch.set_num_threads(1)
        # Inductor's C++ code generation takes minutes on a CPU; the eager backend still traces the model with
        # dynamo, so the Trainer's compile path is exercised; that still takes ~20 s on a busy CPU, so the
        # compile row runs in --smoke only when --options names it.
        torch.compile = functools.partial(torch.compile, backend="eager")
        args.options = args.options or [o for o in OPTIONS if "compile" not in o]
    args.options = args.options or list(OPTIONS)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peaks = gpu_peaks(name) if device == "cuda" else None
    bf16_peak = args.peak_bf16 or (peaks[0] if peaks else None)
    tf32_peak = args.peak_tf32 or (peaks[1] if peaks else None)

    probe = make_setup("paper160", [f"data.image_size={args.size}"], batch_size=2, device=device, pool=1)
    gflops = forward_gflops(probe.model.net, probe.batches[0][0])
    del probe
    train_gflops = 3 * gflops
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch}, {args.size}x{args.size}")
    print(f"training GFLOP/image = 3 x {gflops:.2f} (forward of encoder + branches + head) = {train_gflops:.2f}")
    if device == "cuda" and bf16_peak is None:
        print("peak unknown for this GPU: pass --peak-bf16 and --peak-tf32 (TFLOP/s) for the fraction column")
    print(f"dense peak TFLOP/s: bf16 {bf16_peak or 'n/a'}, tf32 {tf32_peak or 'n/a'}")
    print()
    print("| option | images/s | TFLOP/s | fraction of peak | warm-up s | host syncs/step | GPU memory GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for option in args.options:
        try:
            row = bench_option(option, args, device)
        except torch.cuda.OutOfMemoryError:
            print(f"| {option} | out of memory at batch {args.batch}: pass a smaller --batch | | | | | |", flush=True)
            continue
        achieved = row["rate"] * train_gflops / 1e3
        peak = bf16_peak if option.startswith("bf16") else tf32_peak
        fraction = f"{achieved / peak:.1%}" if peak else "n/a"
        syncs = "n/a" if row["syncs"] is None else str(row["syncs"])
        memory = "n/a" if row["memory"] is None else f"{row['memory']:.1f}"
        print(
            f"| {option} | {row['rate']:,.0f} | {achieved:.1f} | {fraction} | {row['warmup_s']:.1f} | {syncs} | "
            f"{memory} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
