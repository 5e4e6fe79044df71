"""The whole quickstart, end to end: `factorlab run` against a plain PyTorch script doing the same job.

    python benchmarks/end_to_end.py compare --repeats 2        # A/B ratios: images/s and whole-process wall
    python benchmarks/end_to_end.py compare --same-malloc      # the plain script with the CLI's malloc thresholds too
    python benchmarks/end_to_end.py load --repeats 2           # quickstart wall alone vs next to a 2-thread job
    python benchmarks/end_to_end.py load --policies PASSIVE --threads 1 2   # the same for each thread count
    python benchmarks/end_to_end.py first-line --repeats 3     # seconds to the first line `factorlab run` prints
    python benchmarks/end_to_end.py compare --smoke            # tiny sizes, one repeat (what the tests run)

`compare`: A = `factorlab run recipes/quickstart.toml` in a child process; B = `plain` below in a child process:
what a researcher would write for the same job by hand (the SynthFaces train split read once into one uint8
tensor in memory, random batches sliced from it, the hand-written alternating step of `train_step.py` over the
same modules and optimisers, val accuracy after every epoch, test accuracy and one `torch.save` at the end).
Each repeat runs A then B, the next B then A; the ratios A/B of training images/s and of the child's wall time
(interpreter start to exit) are taken per repeat and their median is quoted, so both sides of a ratio ran back
to back under the same load. Both children get the same OMP_WAIT_POLICY (the one the CLI sets).

`load`: the quickstart's wall time alone and next to one competing job (a 2-thread float matmul loop in another
process), interleaved; per wait policy in `--policies` (`PASSIVE`, which the CLI sets, `default`: libgomp's
own spin-then-sleep, `spin:N`: PASSIVE with GOMP_SPINCOUNT=N, i.e. libgomp spins N rounds before it sleeps).
The ratio loaded/alone is the figure to quote.

`first-line`: start `factorlab run` and time the first line on stdout (then stop it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"
SMOKE = ["run.epochs=1", "data.identities=12", "data.samples_per_identity=24", "data.image_size=32",
         "run.batch_size=16", "run.max_steps_per_epoch=3"]  # fmt: skip
COMPETITOR = (
    "import torch\ntorch.set_num_threads(2)\na = torch.randn(768, 768)\nwhile True:\n    a = (a @ a).clamp_(-1, 1)\n"
)


# ---------------------------------------------------------------------------------------------
# B: the plain script


def plain(overrides: list[str]) -> dict:
    """The quickstart's job written by hand; returns its timings and accuracies."""
    started = time.perf_counter()
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from train_step import Setup, plain_step

    from factorlab.data.loading import build_dataset
    from factorlab.model import build_model, resolve_factors
    from factorlab.recipe import load_recipe
    from factorlab.train import Trainer

    recipe = load_recipe(QUICKSTART, ["run.device=cpu", *overrides])
    torch.manual_seed(recipe.run.seed)
    factors = resolve_factors(recipe)
    splits = {name: build_dataset(recipe, name, factors) for name in ("train", "val", "test")}

    def in_memory(dataset) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        everything = np.arange(len(dataset))
        images = torch.from_numpy(dataset.image_batch(everything)).permute(0, 3, 1, 2).contiguous()
        return images, torch.from_numpy(dataset.labels("expression")[everything])

    data = {name: in_memory(dataset) for name, dataset in splits.items()}
    model = build_model(recipe, classes=splits["train"].classes)
    trainer = Trainer(recipe, model, torch.device("cpu"), total_steps=10_000)  # its optimisers, as A's
    setup = Setup("quickstart", recipe, model, trainer, [])
    net, adversary = model.net, model.adversaries.adversaries["expression_from_nonexp"].classifier

    @torch.no_grad()
    def accuracy(images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        model.eval()
        head_right = adv_right = 0
        for start in range(0, len(images), recipe.run.batch_size):
            x = images[start : start + recipe.run.batch_size].float().div_(255.0)
            y = labels[start : start + recipe.run.batch_size]
            features = net.encoder(x)
            head_right += int(
                (net.heads["expression_from_exp"](net.branches["exp"](features).flatten(1)).argmax(1) == y).sum()
            )
            adv_right += int((adversary(net.branches["nonexp"](features).flatten(1)).argmax(1) == y).sum())
        model.train()
        return head_right / len(images), adv_right / len(images)

    images, labels = data["train"]
    batch = recipe.run.batch_size
    steps = len(images) // batch
    if recipe.run.max_steps_per_epoch:
        steps = min(steps, recipe.run.max_steps_per_epoch)
    train_time, seen, history = 0.0, 0, []
    for _ in range(recipe.run.epochs):
        order = torch.randperm(len(images))
        epoch_start = time.perf_counter()
        for k in range(steps):
            idx = order[k * batch : (k + 1) * batch]
            plain_step(setup, images[idx].float().div_(255.0), {"expression": labels[idx]})
        train_time += time.perf_counter() - epoch_start
        seen += steps * batch
        history.append(accuracy(*data["val"]))
    test = accuracy(*data["test"])
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(model.state_dict(), Path(tmp) / "model.pt")
    return {
        "images_per_s": seen / train_time,
        "train_time_s": train_time,
        "in_process_s": time.perf_counter() - started,
        "val": history,
        "test": test,
    }


# ---------------------------------------------------------------------------------------------
# children


SAME_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}


def _env(policy: str | None, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    if policy == "default":
        env["OMP_WAIT_POLICY"] = ""  # set (so the CLI leaves it) but empty: libgomp keeps its own default
    elif policy and policy.startswith("spin:"):  # PASSIVE, but libgomp spins N rounds first (GOMP_SPINCOUNT wins)
        env["OMP_WAIT_POLICY"], env["GOMP_SPINCOUNT"] = "PASSIVE", policy.removeprefix("spin:")
    elif policy:
        env["OMP_WAIT_POLICY"] = policy
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads (default: one per core)
    return env


def run_factorlab(overrides: list[str], policy: str | None = "PASSIVE", threads: int | None = None) -> dict:
    """A: `factorlab run` in a child; images/s from its summary.json, wall time from outside."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "factorlab", "run", str(QUICKSTART), *overrides, "--out", out, "--quiet"],
            capture_output=True, text=True, env=_env(policy, threads),
        )  # fmt: skip
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"factorlab run failed:\n{done.stderr}")
        summary = json.loads((Path(done.stdout.strip()) / "summary.json").read_text())
    return {"wall_s": wall, "images_per_s": summary["images_per_s"], "test": summary["splits"]["test"]}


def run_plain(overrides: list[str], policy: str | None = "PASSIVE") -> dict:
    """B: this script's `plain` in a child."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "plain", *overrides], capture_output=True, text=True, env=_env(policy)
    )
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"plain loop failed:\n{done.stderr}")
    return {"wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def _summary(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}, n {len(values)})"


def compare(repeats: int, overrides: list[str]) -> dict:
    speed, wall = [], []
    for r in range(repeats):
        order = (run_factorlab, run_plain) if r % 2 == 0 else (run_plain, run_factorlab)
        results = {fn.__name__: fn(overrides) for fn in order}
        a, b = results["run_factorlab"], results["run_plain"]
        speed.append(a["images_per_s"] / b["images_per_s"])
        wall.append(a["wall_s"] / b["wall_s"])
        print(
            f"repeat {r + 1}: factorlab {a['images_per_s']:.0f} img/s, {a['wall_s']:.1f} s | plain "
            f"{b['images_per_s']:.0f} img/s, {b['wall_s']:.1f} s | ratios {speed[-1]:.3f} img/s, {wall[-1]:.3f} wall",
            flush=True,
        )
    print(_summary("images/s factorlab / plain (target >= 0.97)", speed))
    print(_summary("wall time factorlab / plain (target <= 1.10)", wall))
    return {"images_per_s_ratio": speed, "wall_ratio": wall}


def load(repeats: int, overrides: list[str], policies: list[str], threads: list[int]) -> dict:
    out = {}
    for policy in policies:
        for count in threads:
            label = f"{policy}, {count or 'default'} threads"
            ratios = []
            for r in range(repeats):
                walls = {}
                for loaded in (False, True) if r % 2 == 0 else (True, False):
                    competitor = (
                        subprocess.Popen([sys.executable, "-c", COMPETITOR], env=_env(policy)) if loaded else None
                    )
                    try:
                        walls[loaded] = run_factorlab(overrides, policy, count)["wall_s"]
                    finally:
                        if competitor is not None:
                            competitor.send_signal(signal.SIGTERM)
                            competitor.wait()
                ratios.append(walls[True] / walls[False])
                print(f"{label} repeat {r + 1}: alone {walls[False]:.1f} s, next to a 2-thread job {walls[True]:.1f} s "
                      f"({ratios[-1]:.2f}x)", flush=True)  # fmt: skip
            print(_summary(f"{label}: wall with a competing job / alone (target <= 1.5)", ratios))
            out[label] = ratios
    return out


def first_line(repeats: int, overrides: list[str]) -> list[float]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            child = subprocess.Popen(
                [sys.executable, "-m", "factorlab", "run", str(QUICKSTART), *overrides, "--out", out],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(None),
            )  # fmt: skip
            line = child.stdout.readline()
            times.append(time.perf_counter() - started)
            child.terminate()
            child.wait()
            print(f"{times[-1]:.2f} s: {line.strip()}", flush=True)
    print(_summary("seconds to the first line of factorlab run (target < 3)", times))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["compare", "load", "first-line", "plain"])
    parser.add_argument("overrides", nargs="*", help="recipe overrides for both sides, e.g. run.epochs=2")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["PASSIVE", "default"])
    parser.add_argument(
        "--threads", nargs="+", type=int, default=[0], help="load: OMP_NUM_THREADS values to try (0 = torch's default)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one repeat (CI)")
    parser.add_argument(
        "--same-malloc",
        action="store_true",
        help="compare: give both children the malloc thresholds the CLI sets (as MALLOC_* variables)",
    )
    args = parser.parse_args()
    overrides = [*SMOKE, *args.overrides] if args.smoke else args.overrides
    if args.same_malloc:
        os.environ.update(SAME_MALLOC)  # the children inherit them; the CLI then leaves malloc alone
    repeats = 1 if args.smoke else args.repeats
    if args.mode == "plain":
        print(json.dumps(plain(overrides)))
    elif args.mode == "compare":
        compare(repeats, overrides)
    elif args.mode == "load":
        load(repeats, overrides, args.policies[:1] if args.smoke else args.policies, args.threads)
    else:
        first_line(repeats, overrides)


if __name__ == "__main__":
    main()
