"""Mean and standard deviation over seeds of the swap scores of seed groups (issue 18).

    python benchmarks/swap_seeds.py GROUP [GROUP ...] [--pool] [--erased]

GROUP is a folder written by `factorlab run RECIPE --seeds 0,1,2`; each of its seed-*/ runs must hold the
swap_scores.json that `factorlab eval RUNDIR --swap` (or `factorlab swap --run RUNDIR --score`) writes.
Prints one markdown table per group: each answer's PSNR, SSIM and judge accuracies, mean +- sd (n seeds),
and the swap's accuracies as a fraction of the judge's ceiling (its accuracy on the true swapped images).
With --pool, the seeds of all the groups make one table (one recipe whose seeds were run in several groups).
With --erased, the scores of the post-hoc LEACE swaps are read instead (seed-*/leace/swap_scores.json, written by
`factorlab eval RUNDIR --erase --swap N`).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ANSWERS = ("swap", "reconstruction", "x1", "x2", "truth")


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def table(*groups: Path, erased: bool = False) -> str:
    pattern = "seed-*/leace/swap_scores.json" if erased else "seed-*/swap_scores.json"
    scores = []
    for group in groups:
        found = [json.loads(p.read_text()) for p in sorted(group.glob(pattern))]
        if not found:
            command = "factorlab eval RUNDIR --erase --swap N" if erased else "factorlab eval RUNDIR --swap"
            raise SystemExit(f"error: no {pattern} in {group}; run {command} first")
        scores += found
    factors = list(scores[0]["accuracy"]["swap"])
    lines = [
        f"{' + '.join(g.name for g in groups)}{' + LEACE' if erased else ''}: {len(scores)} seeds, {scores[0]['pairs']} pairs each (both directions)",
        "",
        "| answer | PSNR dB | SSIM | " + " | ".join(f"{f} acc" for f in factors) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in factors) + " |",
    ]
    for answer in ANSWERS:
        image = [s["image"][answer] for s in scores if answer in s["image"]]
        cells = [_cell([i["psnr"] for i in image], 2), _cell([i["ssim"] for i in image], 3)]
        cells += [_cell([s["accuracy"][answer][f] for s in scores], 3) for f in factors]
        lines.append(f"| {answer} | " + " | ".join(cells) + " |")
    ratios = [_cell([s["accuracy"]["swap"][f] / s["accuracy"]["truth"][f] for s in scores], 3) for f in factors]
    lines.append("| swap / ceiling | | | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--pool", "--erased")]
    erased = "--erased" in sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    if "--pool" in sys.argv[1:]:
        print(table(*map(Path, args), erased=erased))
    else:
        print("\n\n".join(table(Path(arg), erased=erased) for arg in args))
