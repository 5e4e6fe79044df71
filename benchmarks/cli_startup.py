"""How long the CLI takes to answer: `factorlab --help`, `ls`, `validate` (target: under 1 s each).

Each command runs `--repeats` times in a fresh process (interleaved, so load spikes hit all alike);
the table gives the median and the spread, and whether torch was imported (it must not be: registering
and validating never imports a part's heavy modules).

    python benchmarks/cli_startup.py              # 7 repeats
    python benchmarks/cli_startup.py --smoke      # 1 repeat (the test suite runs this)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "factorlab --help": ["--help"],
    "factorlab ls": ["ls"],
    "factorlab validate recipes/quickstart.toml": ["validate", "recipes/quickstart.toml"],
    "factorlab validate recipes/expression.toml": ["validate", "recipes/expression.toml", "data.root=."],
}
PROBE = (
    "import sys, runpy; sys.argv = ['factorlab', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('factorlab', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"
)


def time_once(args: list[str]) -> tuple[float, bool]:
    """Wall seconds of one fresh process running `factorlab ARGS`, and whether it imported torch."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, proc.stderr.strip().endswith("torch imported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="one repeat")
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    torch_seen: dict[str, bool] = dict.fromkeys(COMMANDS, False)
    for _ in range(repeats):
        for name, argv in COMMANDS.items():
            seconds, imported = time_once(argv)
            times[name].append(seconds)
            torch_seen[name] |= imported
    print("| command | median s | min s | max s | imports torch |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in times.items():
        row = [f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}"]
        print(f"| `{name}` | {' | '.join(row)} | {'yes' if torch_seen[name] else 'no'} |")


if __name__ == "__main__":
    main()
