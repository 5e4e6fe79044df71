"""Peak resident memory (maxrss) of a quickstart run and of the paper model's training step, one process each.

    OMP_NUM_THREADS=2 python benchmarks/memory.py                 # quickstart run (1 epoch), paper steps
    OMP_NUM_THREADS=2 python benchmarks/memory.py --epochs 5      # the whole quickstart
    python benchmarks/memory.py --smoke                           # tiny sizes (CI)

Every figure is measured in a fresh subprocess and read from the kernel's accounting of that one child
(`os.wait4` -> `ru_maxrss`), so nothing the parent imported or allocated is counted. The first row is the
floor: a process that only imports torch and factorlab's trainer.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
QUICKSTART_SMOKE = [
    "data.identities=6",
    "data.samples_per_identity=20",
    "data.image_size=32",
    "run.batch_size=8",
    "run.max_steps_per_epoch=2",
]


def peak_rss_mib(command: list[str], env: dict[str, str] | None = None) -> float:
    """Run `command` to completion and return its peak resident set in MiB; raise if it fails."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(command)} exited with {proc.returncode}:\n{tail}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def child_step(model: str, impl: str, steps: int, batch: int | None, smoke: bool) -> None:
    """In the measured child: build the model and run `steps` training steps."""
    import torch

    sys.path.insert(0, str(HERE.parent))
    from train_step import factorlab_step, make_setup, plain_step, time_steps

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    setup = make_setup(model, batch_size=batch, smoke=smoke, pool=1)
    time_steps(factorlab_step if impl == "factorlab" else plain_step, setup, 0, steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the quickstart run (the recipe has 5)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per paper-model measurement")
    parser.add_argument("--batch", type=int, default=None, help="paper-model batch (default 16)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, not the figures")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_step(*args.child, steps=args.steps, batch=args.batch, smoke=args.smoke)
        return
    if args.smoke:
        args.steps, args.epochs = 1, 1
    env = {"OMP_NUM_THREADS": "1" if args.smoke else os.environ.get("OMP_NUM_THREADS", "2")}
    python = sys.executable
    child = [python, str(HERE), *(["--smoke"] if args.smoke else []), "--steps", str(args.steps)]
    if args.batch:
        child += ["--batch", str(args.batch)]
    batch = args.batch or (2 if args.smoke else 16)
    print(f"peak resident memory (ru_maxrss of one child process), OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    print()
    print("| what | peak RSS (MiB) | command |")
    print("| --- | --- | --- |")
    with tempfile.TemporaryDirectory() as out:
        quickstart = ["recipes/quickstart.toml", f"run.epochs={args.epochs}", "run.device=cpu"]
        quickstart += QUICKSTART_SMOKE if args.smoke else []
        rows = [
            ("import torch + factorlab.train", [python, "-c", "import torch, factorlab.train"]),
            (
                f"quickstart run, {args.epochs} epoch(s)",
                [python, "-m", "factorlab", "run", *quickstart, "--out", out],
            ),
        ]
        for model in ("paper160",) if args.smoke else ("paper160", "paper112"):
            for impl in ("factorlab",) if args.smoke else ("factorlab", "plain"):
                what = f"{model} step x{args.steps}, batch {batch}, {impl}"
                rows.append((what, [*child, "--child", model, impl]))
        for what, command in rows:
            names = {python: "python", str(HERE): "benchmarks/memory.py", out: "OUT"}
            shown = shlex.join(names.get(c, c) for c in command)
            print(f"| {what} | {peak_rss_mib(command, env):,.0f} | `{shown}` |", flush=True)


if __name__ == "__main__":
    main()
