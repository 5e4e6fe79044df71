"""Mean and standard deviation over seeds of the swap scores of seed groups (issue 18).

    python benchmarks/swap_seeds.py GROUP [GROUP ...] [--pool] [--erased]

GROUP is a folder written by `factorlab run RECIPE --seeds 0,1,2`; each of its seed-*/ runs must hold the
swap_scores.json that `factorlab eval RUNDIR --swap` (or `factorlab swap --run RUNDIR --score`) writes.
Prints one markdown table per group: each answer's PSNR, SSIM and judge accuracies, mean +- sd (n seeds),
and the swap's accuracies as a fraction of the judge's ceiling (its accuracy on the true swapped images).
With --pool, the seeds of all the groups make one table (one recipe whose seeds were run in several groups);
a group named twice (the same folder) is refused, as its seeds would count twice.
With --erased, the scores of the post-hoc LEACE swaps are read instead (seed-*/leace/swap_scores.json, written by
`factorlab eval RUNDIR --erase --swap N`).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ANSWERS = ("swap", "reconstruction", "x1", "x2", "truth")


class UsageError(Exception):
    """A mistake in the command line or the groups it names; the script exits 2 with the message."""


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def _read_scores(path: Path) -> dict:
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); score the run again with factorlab swap --score") from None
    if not isinstance(scores, dict) or not {"image", "accuracy", "pairs"} <= scores.keys():
        raise UsageError(f"{path} is not a swap_scores.json (no image, accuracy and pairs); score the run again")
    return scores


def table(*groups: Path, erased: bool = False) -> str:
    pattern = "seed-*/leace/swap_scores.json" if erased else "seed-*/swap_scores.json"
    scores = []
    for group in groups:
        found = [_read_scores(p) for p in sorted(group.glob(pattern))]
        if not found:
            command = "factorlab eval RUNDIR --erase --swap N" if erased else "factorlab eval RUNDIR --swap"
            raise UsageError(f"no {pattern} in {group}; run {command} first")
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


def repeated_groups(groups: list[Path]) -> list[str]:
    """The groups (as given) that name a folder already named before them, compared by resolved path."""
    seen: dict[Path, str] = {}
    repeated = []
    for group in groups:
        resolved = group.resolve()
        if resolved in seen:
            repeated.append(f"{group} (the same folder as {seen[resolved]})")
        else:
            seen[resolved] = str(group)
    return repeated


def main(argv: list[str]) -> str:
    import argparse

    parser = argparse.ArgumentParser(prog="python benchmarks/swap_seeds.py", description=__doc__.split("\n")[0])
    parser.add_argument("groups", nargs="+", type=Path, metavar="GROUP", help="seed-group folders (run --seeds)")
    parser.add_argument("--pool", action="store_true", help="one table over the seeds of all the groups")
    parser.add_argument("--erased", action="store_true", help="the post-hoc LEACE swaps' scores instead")
    args = parser.parse_intermixed_args(argv)  # usage errors exit 2 with argparse's message
    groups, erased = args.groups, args.erased
    if args.pool:
        repeated = repeated_groups(groups)
        if repeated:
            raise UsageError(
                f"--pool was given a group more than once: {'; '.join(repeated)}; pooling a group with itself "
                "counts its seeds twice; name each group folder once"
            )
        return table(*groups, erased=erased)
    return "\n\n".join(table(group, erased=erased) for group in groups)


if __name__ == "__main__":
    try:
        print(main(sys.argv[1:]))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
