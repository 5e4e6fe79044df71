"""factorlab export RUNDIR --format onnx --out model.onnx: the trained model as a file any ONNX runtime can run."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from factorlab.errors import FactorlabError

console = Console(highlight=False)

EPILOG = """\
examples:
  factorlab export runs/quickstart-20261201-101500 --out quickstart.onnx      encoder, branches, heads
  factorlab export RUNDIR --out swap.onnx --decoder                           + the decoder (reconstruction)
  factorlab predict quickstart.onnx photos/                                   run it with ONNX Runtime

Input `images`: float32 (N, 3, S, S) RGB in [0, 1]; outputs logits/<factor>/<code> and code/<name>.
The class names and S are in the model's metadata (key "factorlab"). Needs: pip install "factorlab[export]".
"""


def export_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """factorlab export RUNDIR [--format onnx] --out model.onnx [--decoder] [--checkpoint best|last]"""
    parser.add_argument("rundir", type=Path, help="a run folder (the one `factorlab run` printed)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="file format (default onnx)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write, e.g. model.onnx")
    parser.add_argument("--decoder", action="store_true", help="also export the decoder (output `reconstruction`)")
    parser.add_argument(
        "--checkpoint", choices=["best", "last"],
        help="which checkpoint to export (default: the recipe's run.checkpoint, the one summary.json scores)",
    )  # fmt: skip
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    parser.epilog = EPILOG

    def handle(args: argparse.Namespace) -> int:
        from factorlab.export import export_onnx

        if args.out.suffix.lower() != ".onnx":
            raise FactorlabError(f"--out {args.out}: give a file name ending in .onnx")
        if args.out.is_dir():
            raise FactorlabError(f"--out {args.out} is a folder; give a file name such as model.onnx")
        started = time.perf_counter()
        path = export_onnx(args.rundir, args.out, checkpoint=args.checkpoint, decoder=args.decoder, opset=args.opset)
        size = path.stat().st_size / 2**20
        console.print(f"wrote {path} ({size:.1f} MiB, {time.perf_counter() - started:.1f} s)")
        return 0

    return handle
