"""The erasure benchmark (docs/erasure.md): every recipe of recipes/synth/erasure/, several seeds, two settings.

    OMP_WAIT_POLICY=PASSIVE nice -n 5 python benchmarks/erasure.py --out runs/erasure          # everything
    python benchmarks/erasure.py --out runs/erasure --phase table                             # table + plot only
    python benchmarks/erasure.py --smoke --out /tmp/erasure-smoke                             # what the test runs

Phases (each skips what an earlier, interrupted invocation finished, so rerunning continues):
1. train: `factorlab run` of each recipe x seed x setting (default difficulty; `data.correlation=0.8`),
   seeds interleaved so that a partial benchmark still has every method (with the default `--phase all`
   each run is evaluated right after it trained);
2. eval: `factorlab eval RUN --metrics probes` (linear and MLP probes of expression and identity from each
   code; identity on SynthFaces' unseen test identities is fitted and scored on stratified halves of the
   test codes), for the `none`, `uniform` and `leace` runs also with `--erase` (post-hoc LEACE);
3. table: one row per method and setting, mean ± sample std over seeds, into OUT/erasure.md and
   OUT/erasure.json, and a plot (C_exp test accuracy vs MLP-probe leakage, one point per method and seed)
   into OUT/erasure.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "synth" / "erasure"
METHODS = (
    "none",
    "uniform",
    "mlp",
    "ensemble",
    "hsic",
    "hsic-w3",
    "hsic-w1",
    "leace",
)  # recipes; `leace` erases during training; the post-hoc LEACE rows are `none` / `uniform` + --erase
ERASED = ("none", "uniform", "leace")
SETTINGS = {"default": [], "shortcut": ["data.correlation=0.8"]}
SMOKE = ["run.epochs=1", "run.batch_size=16", "data.identities=9", "data.samples_per_identity=8"]


def factorlab(*args: str, log: Path, attempts: int = 3) -> None:
    """Run `python -m factorlab ARGS`, appending its output to `log`; retried twice after a pause (a shared
    checkout may be mid-edit), then a failure stops the benchmark."""
    for attempt in range(1, attempts + 1):
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\n$ factorlab {' '.join(args)}\n")
            out.flush()
            done = subprocess.run([sys.executable, "-m", "factorlab", *args], stdout=out, stderr=subprocess.STDOUT)
        if done.returncode == 0:
            return
        if attempt < attempts:
            print(f"  failed (exit {done.returncode}), retrying in 60 s", flush=True)
            time.sleep(60)
    raise SystemExit(f"factorlab {' '.join(args)} failed (exit {done.returncode}); see {log}")


def run_dir(out: Path, setting: str, method: str, seed: int) -> Path | None:
    """The finished run folder of (setting, method, seed), or None."""
    found = sorted((out / setting / method / f"seed-{seed}").glob("*/summary.json"))
    return found[-1].parent if found else None


def train(
    out: Path, methods: list[str], seeds: list[int], settings: list[str], extra: list[str], log: Path, then=None
) -> None:
    """Train every (setting, seed, method) not yet finished; `then(setting, method, seed)` after each (the eval)."""
    for setting in settings:
        for seed in seeds:
            for method in methods:
                if not run_dir(out, setting, method, seed):
                    where = out / setting / method / f"seed-{seed}"
                    print(f"[{time.strftime('%H:%M:%S')}] train {setting} {method} seed {seed}", flush=True)
                    factorlab("run", str(RECIPES / f"{method}.toml"), f"run.seed={seed}", *SETTINGS[setting], *extra,
                              "--out", str(where), log=log)  # fmt: skip
                if then is not None:
                    then(setting, method, seed)


def evaluate(out: Path, setting: str, method: str, seed: int, max_samples: int, log: Path) -> None:
    """Probe one finished run: `factorlab eval --metrics probes` (+ `--erase` for the LEACE rows)."""
    rundir = run_dir(out, setting, method, seed)
    if rundir is None:
        return
    common = ["--metrics", "probes", "--max-samples", str(max_samples), "--device", "cpu"]
    if not (rundir / "eval.json").is_file():
        print(f"[{time.strftime('%H:%M:%S')}] eval {setting} {method} seed {seed}", flush=True)
        factorlab("eval", str(rundir), *common, log=log)
    if method in ERASED and not (rundir / "leace" / "eval.json").is_file():
        print(f"[{time.strftime('%H:%M:%S')}] eval --erase {setting} {method} seed {seed}", flush=True)
        factorlab("eval", str(rundir), *common, "--erase", log=log)


def _row(rundir: Path, erased: bool) -> dict:
    from factorlab.leakage import normalised

    summary = json.loads((rundir / "summary.json").read_text(encoding="utf-8"))
    ev = json.loads((rundir / ("leace/eval.json" if erased else "eval.json")).read_text(encoding="utf-8"))
    (leak,) = [r for r in ev["leakage"] if (r["factor"], r["code"]) == ("expression", "nonexp")]
    # identity from nonexp: the same probes (SynthFaces' test identities are unseen: fitted on halves of the test codes)
    identity = {r["probe"]: r for r in ev["probes"] if (r["factor"], r["code"]) == ("identity", "nonexp")}
    test = summary["splits"]["test"]
    return {
        "head": test["head/expression/exp/accuracy"],
        "adversary": leak["adversary"],
        "linear": leak["linear_probe"],
        "mlp": leak["mlp_probe"],
        "chance": leak["chance"],
        "mlp_normalised": normalised(leak["mlp_probe"], leak["chance"], test["head/expression/exp/accuracy"]),
        "identity_mlp": identity["mlp"]["accuracy"],
        "identity_chance": identity["mlp"]["chance"],
        "train_s": summary["wall_time_s"],
    }


def collect(out: Path, methods: list[str], seeds: list[int], settings: list[str]) -> list[dict]:
    """One record per (setting, method, seed) with a finished evaluation."""
    records = []
    for setting in settings:
        for method in methods:
            for erased in (False, True) if method in ERASED else (False,):
                for seed in seeds:
                    rundir = run_dir(out, setting, method, seed)
                    if rundir is None or not (rundir / ("leace" if erased else "") / "eval.json").is_file():
                        continue
                    name = f"{method} + LEACE" if erased else method
                    records.append({"setting": setting, "method": name, "seed": seed, "rundir": str(rundir),
                                    **_row(rundir, erased)})  # fmt: skip
    return records


COLUMNS = [  # key, header, scale, digits
    ("head", "C_exp test", 100, 1),
    ("adversary", "adversary", 100, 1),
    ("linear", "linear probe (nonexp)", 100, 1),
    ("mlp", "MLP probe (nonexp)", 100, 1),
    ("mlp_normalised", "normalised MLP", 1, 2),
    ("identity_mlp", "identity MLP probe (nonexp)", 100, 1),
    ("train_s", "train time (s)", 1, 0),
]


def _stat(values: list[float], scale: float, digits: int) -> str:
    from factorlab.stats import describe

    stat = describe([v for v in values if v is not None])
    if stat.n == 0:
        return "–"
    if stat.n == 1:
        return f"{stat.mean * scale:.{digits}f} (n=1)"
    return f"{stat.mean * scale:.{digits}f} ± {stat.std * scale:.{digits}f}"


def p_values(rows: list[dict], method: str) -> list[str]:
    """(head, MLP probe, identity MLP probe) p-values of a method: Welch's t-test against `none` over seeds; a `+ LEACE` row is
    compared with the same runs before erasure by a paired t-test (the same seeds, before and after)."""
    from scipy.stats import ttest_rel

    from factorlab.stats import welch_p

    def values(name: str, key: str) -> dict[int, float]:
        return {r["seed"]: r[key] for r in rows if r["method"] == name and r[key] is not None}

    out = []
    for key in ("head", "mlp", "identity_mlp"):
        mine = values(method, key)
        if method.endswith(" + LEACE"):
            before = values(method.removesuffix(" + LEACE"), key)
            seeds = sorted(set(mine) & set(before))
            p = (
                float(ttest_rel([before[s] for s in seeds], [mine[s] for s in seeds]).pvalue)
                if len(seeds) > 1
                else math.nan
            )
        elif method == "none":
            p = math.nan
        else:
            p = welch_p(list(mine.values()), list(values("none", key).values()))
        out.append("–" if math.isnan(p) else f"{p:.3f}")
    return out


def table(records: list[dict]) -> str:
    lines = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        rows = [r for r in records if r["setting"] == setting]
        chance = rows[0]["chance"]
        ident = rows[0]["identity_chance"]
        lines.append(
            f"**{setting}** ({'data.correlation = 0.8' if setting == 'shortcut' else 'default difficulty'}; "
            f"expression chance {chance * 100:.1f}%, identity chance {ident * 100:.1f}%; mean ± std over seeds, "
            "in % except the normalised leakage and the time; p: Welch vs `none`, paired vs the same runs "
            "before LEACE)\n"
        )
        headers = [c[1] for c in COLUMNS] + ["p head", "p MLP probe", "p identity"]
        lines.append("| method | " + " | ".join(headers) + " | seeds |")
        lines.append("|" + " --- |" * (len(headers) + 2))
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            cells = [_stat([r[key] for r in mine], scale, digits) for key, _, scale, digits in COLUMNS]
            cells += p_values(rows, method)
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {len(mine)} |")
        lines.append("")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(r["setting"] for r in records))
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4.2), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in records))
    colours = plt.get_cmap("tab10")
    for ax, setting in zip(axes[0], settings, strict=True):
        rows = [r for r in records if r["setting"] == setting]
        for k, method in enumerate(methods):
            mine = [r for r in rows if r["method"] == method]
            ax.scatter([100 * r["mlp"] for r in mine], [100 * r["head"] for r in mine], color=colours(k), label=method)
        ax.axvline(100 * rows[0]["chance"], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.axvline(100 * rows[0]["chance"] + 5, color="grey", linestyle=":", linewidth=1, label="chance + 5 (target)")
        ax.set_xlabel("MLP-probe expression accuracy from nonexp (%)")
        ax.set_ylabel("C_exp test accuracy (%)")
        ax.set_title(f"{setting}: one point per method and seed")
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("runs/erasure"), help="benchmark folder (default runs/erasure)"
    )
    parser.add_argument("--seeds", default="0,1,2", help="seeds (default 0,1,2)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--phase", choices=["all", "train", "eval", "table"], default="all")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="recipes to run")
    parser.add_argument("--max-samples", type=int, default=2000, help="samples per split for the probes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one seed, default setting (for the tests)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    extra, settings = [], args.settings
    if args.smoke:
        extra, seeds, settings = SMOKE, seeds[:1], ["default"]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "benchmark.log"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # oversubscribed cores: no spinning (docs/performance.md)

    def probe(setting: str, method: str, seed: int) -> None:
        evaluate(args.out, setting, method, seed, args.max_samples, log)

    if args.phase in ("all", "train"):  # "all": each run is evaluated right after it trained
        train(args.out, args.methods, seeds, settings, extra, log, then=probe if args.phase == "all" else None)
    if args.phase == "eval":
        for setting in settings:
            for seed in seeds:
                for method in args.methods:
                    probe(setting, method, seed)
    if args.phase in ("all", "table"):
        records = collect(args.out, args.methods, seeds, settings)
        if not records:
            raise SystemExit(f"no evaluated runs under {args.out}; run the train and eval phases first")
        (args.out / "erasure.json").write_text(json.dumps(records, indent=2), encoding="utf-8")
        text = table(records)
        (args.out / "erasure.md").write_text(text + "\n", encoding="utf-8")
        plot(records, args.out / "erasure.png")
        print(text)
        print(f"wrote {args.out / 'erasure.md'}, {args.out / 'erasure.json'} and {args.out / 'erasure.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
