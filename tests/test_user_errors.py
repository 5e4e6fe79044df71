"""Every user error exits 2 with a clear message, through the real CLI in subprocesses; run folders stay whole.

The table holds bad inputs of every kind (recipe, override, data, image, checkpoint, weights, output
location, disk space, size of a request). Each runs as `python -m factorlab ...` in its own process
(in parallel: most are `validate`, `compare` or `prepare` on tiny files); cases that need a run folder
use copies of one tiny decoder run built once for the module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from factorlab.testing import TINY_SYNTH, run_cli

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "recipes" / "quickstart.toml")
SWAP_RECIPE = ROOT / "recipes" / "synth" / "identity-swap.toml"
TINY = TINY_SYNTH
CATCH_ALL = "This is not a known user error"
pytestmark = pytest.mark.slow  # ~100 CLI processes: about 3.5 CPU-minutes, run four at a time
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
MOUNTS: list[Path] = []


# ---------------------------------------------------------------------------------------------
# Making bad files


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid PNG header claiming side x side pixels (a decompression bomb), with a tiny body."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


class Payload:
    """Unpickling this would run code (torch.save stores it as a global reference)."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


def random_bytes(path: Path, n: int = 2000) -> Path:
    path.write_bytes(os.urandom(n) if n else b"")
    return path


def copy_run(run: Path, case: Path) -> Path:
    target = case / "run"
    shutil.copytree(run, target)
    return target


def read_only_copy(run: Path, case: Path) -> Path:
    """A copy of the run folder on a read-only bind mount (root only)."""
    target = copy_run(run, case)
    view = case / "ro"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(target), str(view)], check=True)
    MOUNTS.append(view)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
    return view


def can_mount_read_only() -> str | None:
    """None when read-only bind mounts work here, else why not."""
    if not IS_ROOT or shutil.which("mount") is None:
        return "needs root and mount(8) for a read-only bind mount (root ignores permission bits)"
    return None


# ---------------------------------------------------------------------------------------------
# The table


@dataclass
class Case:
    id: str
    args: list[str]  # {run} = the prepared run folder, {case} = this case's folder
    phrase: str  # the key phrase of the message (a regular expression)
    prep: Callable[[Path, Path], dict[str, str]] | None = None  # (case dir, base run) -> extra placeholders
    skip: str | None = None


def v(*overrides: str) -> list[str]:
    return ["validate", QUICK, *overrides]


def _file(name: str, content: bytes) -> Callable[[Path, Path], dict[str, str]]:
    def prep(case: Path, run: Path) -> dict[str, str]:
        (case / name).write_bytes(content)
        return {}

    return prep


def _damaged_run(damage: Callable[[Path, Path], None]) -> Callable[[Path, Path], dict[str, str]]:
    def prep(case: Path, run: Path) -> dict[str, str]:
        target = copy_run(run, case)
        damage(target, case)
        return {"run": str(target)}

    return prep


def _read_only(case: Path, run: Path) -> dict[str, str]:
    return {"run": str(read_only_copy(run, case))}


def _weights(kind: str) -> Callable[[Path, Path], dict[str, str]]:
    def prep(case: Path, run: Path) -> dict[str, str]:
        path = case / "w.pt"
        if kind == "random":
            random_bytes(path)
        elif kind == "json":
            path.write_text('{"conv2d_1a.conv.weight": [1, 2, 3]}')
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "folder":
            path.mkdir()
        elif kind == "evil":
            torch.save({"conv2d_1a.conv.weight": torch.zeros(1), "x": Payload()}, path)
        return {"weights": str(path)}

    return prep


def _nan_weights(target: Path, case: Path) -> None:
    """Every float weight of both checkpoints NaN (a diverged training saved as it was)."""
    for path in (target / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        weights = state["model"] if "model" in state else state["trainer"]["model"]
        for value in weights.values():
            if value.is_floating_point():
                value.fill_(float("nan"))
        torch.save(state, path)


def _set_last_epoch(target: Path, epoch: object) -> None:
    path = target / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["epoch"] = epoch
    torch.save(state, path)


def _lock(pid_host: Callable[[], tuple[int, str]]) -> Callable[[Path, Path], None]:
    def damage(target: Path, case: Path) -> None:
        pid, host = pid_host()
        (target / ".lock").write_text(json.dumps({"pid": pid, "host": host, "since": "2026-12-01 10:00:00"}))

    return damage


def _imagefolder_of(content: Callable[[Path], None]) -> Callable[[Path, Path], dict[str, str]]:
    def prep(case: Path, run: Path) -> dict[str, str]:
        for name in ("happy", "sad"):
            (case / "root" / name).mkdir(parents=True)
            content(case / "root" / name / f"{name}.png")
        return {}

    return prep


WEIGHTS_RUN = [
    "run",
    QUICK,
    "data.identities=12",
    "data.samples_per_identity=2",
    "encoder.type=inception_resnet_v1",
    "encoder.cut=conv2d_4b",
    "encoder.weights={weights}",
    "--out",
    "{case}/runs",
]
RO = can_mount_read_only()
NO_GPU = "a CUDA device is available here" if torch.cuda.is_available() else None

CASES = [
    # --- recipe files
    Case("binary recipe", ["validate", "{case}/r.toml"], r"r\.toml is a binary file, not text", _file("r.toml", b"\x00\xff\xfe" + os.urandom(100))),
    Case("latin-1 recipe", ["validate", "{case}/r.toml"], r"r\.toml is not UTF-8 text \(byte 0xe9 at line 2", _file("r.toml", b"[run]\nname = 'caf\xe9'\n")),
    Case("missing recipe", ["validate", "{case}/nope.toml"], "recipe file not found"),
    Case("recipe is a folder", ["validate", "{case}"], r"recipe file not found: .* \(it is a folder\)"),
    Case("TOML syntax", ["validate", "{case}/r.toml"], r"TOML syntax error in .*r\.toml:2", _file("r.toml", b"[run]\nname = \n")),
    Case("empty recipe", ["validate", "{case}/r.toml"], "data: required key is missing", _file("r.toml", b"")),
    # --- values that passed validate and crashed in run
    Case("negative width", v("codes.exp.widths=[128,128,-64,0]"), r"codes\.exp\.widths\.2: Input should be greater than or equal to 1"),
    Case("zero encoder width", v("encoder.widths=[0]"), r"encoder\.widths\.0: Input should be greater than or equal to 1"),
    Case("zero stride", v("codes.exp.strides=[1,0,1,1]"), r"codes\.exp\.strides\.1: Input should be greater"),
    Case("negative head hidden", v("heads.0.type=mlp", "heads.0.hidden=[-1]"), r"heads\.0\.hidden\.0: Input should be greater"),
    Case("zero adversary hidden", v("adversaries.0.hidden=[0]"), r"adversaries\.0\.hidden\.0: Input should be greater"),
    Case("seed 2**64", v("run.seed=18446744073709551616"), r"run\.seed: Input should be less than or equal to 9223372036854775807"),
    Case("negative seed", v("run.seed=-1"), r"run\.seed: Input should be greater than or equal to 0"),
    Case("seed as text", v("run.seed=abc"), r"run\.seed: Input should be a valid integer"),
    Case("device tpu", v("run.device=tpu"), r"run\.device: unknown device 'tpu'; use one of auto, cpu, cuda, cuda:N"),
    Case("device cuda:x", v("run.device=cuda:x"), r"unknown device 'cuda:x'"),
    Case("name escapes run.output", v("run.name=../../escape"), r"run\.name: '\.\./\.\./escape' is not a plain folder name"),
    Case("name with a slash", v("run.name=a/b"), "is not a plain folder name"),
    Case("hidden name", v("run.name=.x"), "is not a plain folder name"),
    Case("empty name", v('run.name=""'), r"run\.name: String should have at least 1 character"),
    Case("zero epochs", v("run.epochs=0"), r"run\.epochs: Input should be greater than or equal to 1"),
    Case("batch of one", v("run.batch_size=1"), r"run\.batch_size: Input should be greater than or equal to 2"),
    Case("zero learning rate", v("optim.main.lr=0"), r"optim\.main\.lr: Input should be greater than 0"),
    Case("tiny images", v("data.image_size=8"), r"data\.image_size: Input should be greater than or equal to 32"),
    Case("unknown key", v("run.epochz=3"), r"run\.epochz: unknown key"),
    Case("unknown encoder", v("encoder.type=nope"), r"encoder\.type: unknown encoder 'nope'"),
    Case("unknown branch", v("codes.exp.branch=nope"), r"codes\.exp\.branch: unknown branch"),
    Case("unknown data set", v("data.dataset=nope"), r"data\.dataset: unknown data ?set 'nope'"),
    Case("head reads no code", v("heads.0.code=nope"), r"heads\.0\.code: no code named 'nope'"),
    Case("override without =", v("run.epochs"), r"override 'run\.epochs' has no '='"),
    Case("list index out of range", v("heads.5.type=mlp"), r"heads has 1 entries"),
    Case("unknown precision", v("run.precision=fp8"), r"run\.precision: Input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
    Case("beta_rec without decoder", v("loss.beta_rec=1"), r"beta_rec > 0 needs a decoder"),
    Case("best metric not measured", v("run.best_metric=nope"), r"run\.best_metric: 'nope' is not measured on val"),
    Case("too few identities", v("data.identities=1"), r"data\.identities: Input should be greater than or equal to 3"),
    Case("crop too large", v("data.augment.crop=0.9"), r"data\.augment\.crop: Input should be less than or equal to 0\.5"),
    # --- output locations
    Case("run.output is a file", v("run.output={case}/f"), r"run\.output .*f is a file, not a folder", _file("f", b"x")),
    Case("run.output in /proc", v("run.output=/proc/factorlab-x"), r"cannot write run\.output /proc/factorlab-x: no file can be created in /proc"),
    Case("run --out in /proc", ["run", QUICK, "--out", "/proc/factorlab-x"], r"cannot write run\.output /proc/factorlab-x"),
    Case("run without recipe", ["run"], "factorlab run needs a recipe file"),
    Case("model too large for memory", ["run", QUICK, "codes.exp.widths=[100000,100000,100000,100000]", "--out", "{case}/runs"],
         r"training the model of .*quickstart\.toml \((at least )?[\d,]+ million parameters\) would need about [\d.]+ GiB of memory"),
    Case("cuda without GPU", ["run", QUICK, *TINY, "run.device=cuda", "--out", "{case}/runs"], "no CUDA device is available", skip=NO_GPU),
    # --- weights files (the trunk loads them when the model is built)
    Case("weights: random bytes", WEIGHTS_RUN, r"w\.pt is not a torch file \(2000 bytes", _weights("random")),
    Case("weights: JSON", WEIGHTS_RUN, r"w\.pt is JSON text", _weights("json")),
    Case("weights: empty", WEIGHTS_RUN, r"w\.pt is empty \(0 bytes\)", _weights("empty")),
    Case("weights: a folder", WEIGHTS_RUN, r"encoder\.weights='.*w\.pt' is a folder, not a weight file", _weights("folder")),
    Case("weights: pickled code", WEIGHTS_RUN, r"refers to Python code or classes that factorlab does not load", _weights("evil")),
    Case("weights: missing", [*WEIGHTS_RUN[:-3], "encoder.weights={case}/none.pt", *WEIGHTS_RUN[-2:]], r"none\.pt': no such file"),
    # --- resuming damaged or busy run folders
    Case("resume: broken line mid-log", ["run", "--resume", "{run}"], r"metrics\.jsonl, line 1: not a JSON record",
         _damaged_run(lambda r, c: (r / "metrics.jsonl").write_text("{torn\n" + (r / "metrics.jsonl").read_text()))),
    Case("resume: best.pt over last.pt", ["run", "--resume", "{run}"], r"last\.pt holds only model weights \(a best\.pt checkpoint\?\)",
         _damaged_run(lambda r, c: shutil.copy(r / "checkpoints" / "best.pt", r / "checkpoints" / "last.pt"))),
    Case("resume: architecture changed", ["run", "--resume", "{run}", "codes.exp.widths=[64,64,32,32]"],
         r"builds a different model .*Changed: codes\.exp\.widths: \[128, 128, 64, 64\] -> \[64, 64, 32, 32\]"),
    Case("resume: random-bytes last.pt", ["run", "--resume", "{run}"], r"last\.pt is not a torch file",
         _damaged_run(lambda r, c: random_bytes(r / "checkpoints" / "last.pt"))),
    Case("resume: truncated last.pt", ["run", "--resume", "{run}"], r"last\.pt is a damaged or truncated torch file",
         _damaged_run(lambda r, c: (r / "checkpoints" / "last.pt").write_bytes((r / "checkpoints" / "last.pt").read_bytes()[:5000]))),
    Case("resume: a tensor, not a checkpoint", ["run", "--resume", "{run}"], r"is a torch file but not a factorlab checkpoint",
         _damaged_run(lambda r, c: torch.save(torch.zeros(3), r / "checkpoints" / "last.pt"))),
    Case("resume: no checkpoint", ["run", "--resume", "{run}"], r"no checkpoint at .*last\.pt",
         _damaged_run(lambda r, c: shutil.rmtree(r / "checkpoints"))),
    Case("resume: not a run folder", ["run", "--resume", "{case}"], r"is not a run folder \(no recipe\.toml\)"),
    Case("resume: binary recipe.toml", ["run", "--resume", "{run}"], r"recipe\.toml is a binary file",
         _damaged_run(lambda r, c: random_bytes(r / "recipe.toml").write_bytes(b"\x00" + os.urandom(50)))),
    Case("resume: unknown device", ["run", "--resume", "{run}", "run.device=tpu"], r"unknown device 'tpu'"),
    Case("resume: in use here", ["run", "--resume", "{run}"], rf"is in use by process {os.getpid()} on {re.escape(socket.gethostname())}",
         _damaged_run(_lock(lambda: (os.getpid(), socket.gethostname())))),
    Case("resume: in use elsewhere", ["run", "--resume", "{run}"], r"is in use by process 1 on elsewhere .*delete .*\.lock",
         _damaged_run(_lock(lambda: (1, "elsewhere")))),
    Case("resume: read-only folder", ["run", "--resume", "{run}"], r"cannot write into run folder .*read-only file system", _read_only, RO),
    # --- eval
    Case("eval: read-only folder", ["eval", "{run}", "--no-probes"], r"cannot write the evaluation into run folder .*read-only file system", _read_only, RO),
    Case("eval: no such folder", ["eval", "{case}/nope"], "run folder not found"),
    Case("eval: binary summary.json", ["eval", "{run}"], r"summary\.json is not UTF-8 text",
         _damaged_run(lambda r, c: random_bytes(r / "summary.json").write_bytes(b"\xff\xfe" + os.urandom(50)))),
    Case("eval: too few samples", ["eval", "{run}", "--max-samples", "3"], r"--max-samples 3: use at least 10"),
    # --- compare
    Case("compare: binary summary.json", ["compare", "{run}"], r"summary\.json is not UTF-8 text",
         _damaged_run(lambda r, c: (r / "summary.json").write_bytes(b"\xff\xfe\x00" + os.urandom(50)))),
    Case("compare: broken summary.json", ["compare", "{run}"], r"summary\.json, line 1: not valid JSON",
         _damaged_run(lambda r, c: (r / "summary.json").write_text("{"))),
    Case("compare: binary eval.json", ["compare", "{run}"], r"eval\.json is not UTF-8 text",
         _damaged_run(lambda r, c: (r / "eval.json").write_bytes(b"\xff" + os.urandom(50)))),
    Case("compare: unfinished run", ["compare", "{run}"], r"has no summary\.json: the run has not finished",
         _damaged_run(lambda r, c: (r / "summary.json").unlink())),
    Case("compare: --out in /proc", ["compare", "{run}", "--out", "/proc/factorlab-x/t.md"], r"cannot write --out /proc/factorlab-x"),
    # --- swap
    Case("swap: --pairs beyond the split", ["swap", "--run", "{run}", "--pairs", "100000", "--out", "{case}/s.png"], r"--pairs 100000: the \d+ samples to draw from give at most \d+"),
    Case("swap: --pairs 0", ["swap", "--run", "{run}", "--pairs", "0"], r"argument --pairs: 0: give a count of 1 or more"),
    Case("swap: --out in /proc", ["swap", "--run", "{run}", "test:0", "test:1", "--out", "/proc/factorlab-x/s.png"], r"cannot write --out /proc/factorlab-x"),
    Case("swap: decompression bomb", ["swap", "--run", "{run}", "{case}/bomb.png", "test:1", "--out", "{case}/s.png"], r"cannot read image .*bomb\.png: too large to decode safely \(.*\); give a smaller image",
         lambda c, r: {"_": str(bomb_png(c / "bomb.png"))}),
    Case("swap: random-bytes image", ["swap", "--run", "{run}", "{case}/x.png", "test:1", "--out", "{case}/s.png"], r"cannot read image .*x\.png", _file("x.png", os.urandom(300))),
    Case("swap: unknown code", ["swap", "--run", "{run}", "test:0", "test:1", "--codes", "nope", "--out", "{case}/s.png"], r"--codes nope: the run's codes are"),
    Case("swap: index out of range", ["swap", "--run", "{run}", "test:99999", "test:1", "--out", "{case}/s.png"], r"test:99999: the test split .* use an index from 0 to"),
    Case("swap: --out not an image", ["swap", "--run", "{run}", "test:0", "test:1", "--out", "{case}/s.txt"], r"give an image file name such as swap\.png"),
    Case("recipe nested too deeply", ["validate", "{case}/r.toml"], r"r\.toml: arrays or tables nested too deeply",
         _file("r.toml", ("x = " + "[" * 5000 + "]" * 5000).encode())),
    Case("override nested too deeply", v("run.epochs=" + "[" * 3000 + "]" * 3000), r"override 'run\.epochs': its value is nested too deeply"),
    Case("100000 loader workers", v("run.num_workers=100000"), r"run\.num_workers: Input should be less than or equal to 128"),
    Case("five million seeds", ["run", QUICK, "--seeds", "0-5000000", "--out", "{case}/runs"], r"'0-5000000' gives 5000001 seeds; a group runs at most 1000"),
    Case("export --opset 7", ["export", "{run}", "--out", "{case}/m.onnx", "--opset", "7"], r"--opset 7: torch\.onnx could not write this opset \(it wrote 18\); opsets 18 to \d+ always work"),
    Case("run --out not UTF-8", ["run", QUICK, "--out", "{case}/runs\udcff"], r"run\.output=.*the value holds bytes that are not UTF-8"),
    Case("override not UTF-8", ["run", QUICK, *TINY, "run.output={case}/o\udcff"], r"run\.output=.*the value holds bytes that are not UTF-8"),
    Case("run --resume --out", ["run", "--resume", "{run}", "--out", "{case}/elsewhere"], r"--out does not go with --resume"),
    # --- run files of the right syntax but the wrong content
    Case("summary.json a list", ["compare", "{run}"], r"summary\.json is not a summary written by factorlab",
         _damaged_run(lambda t, c: (t / "summary.json").write_text("[]"))),
    Case("summary.json metric as text", ["compare", "{run}"], r"summary\.json is not a summary written by factorlab",
         _damaged_run(lambda t, c: (t / "summary.json").write_text(json.dumps(
             {**json.loads((t / "summary.json").read_text()), "splits": {"test": {"head/expression/exp/accuracy": "x"}}})))),
    Case("checkpoint of NaN weights", ["eval", "{run}"], r"the model gives codes that are not finite \(NaN or inf\) for the train split: exp, nonexp",
         _damaged_run(_nan_weights)),
    Case("resume to fewer epochs", ["run", "--resume", "{run}", "run.epochs=2"], r"run\.epochs=2: .* has trained 4 epochs already",
         _damaged_run(lambda t, c: _set_last_epoch(t, 3))),
    Case("resume: epoch not a count", ["run", "--resume", "{run}", "run.epochs=2"], r"last\.pt: its epoch 'x' is not an epoch count",
         _damaged_run(lambda t, c: _set_last_epoch(t, "x"))),
    Case("eval.json of the wrong shape", ["compare", "{run}"], r"eval\.json is not an evaluation written by factorlab eval",
         _damaged_run(lambda t, c: (t / "eval.json").write_text('{"probes": "x"}'))),
    Case("recipe edited after training", ["eval", "{run}", "--no-probes"], r"best\.pt does not fit .*recipe\.toml \(.*size mismatch",
         _damaged_run(lambda t, c: (t / "recipe.toml").write_text(
             (t / "recipe.toml").read_text().replace("widths = [128, 128, 64, 64]", "widths = [8, 8, 8, 8]")))),
    Case("metrics.jsonl a folder", ["run", "--resume", "{run}", "run.epochs=2"], r"metrics\.jsonl: found a folder where a file was expected",
         _damaged_run(lambda t, c: ((t / "metrics.jsonl").unlink(), (t / "metrics.jsonl").mkdir()))),
    # --- command-line options
    Case("eval --device tpu", ["eval", "{run}", "--device", "tpu"], r"argument --device: unknown device 'tpu'"),
    Case("eval --seed -1", ["eval", "{run}", "--seed", "-1"], r"argument --seed: -1: give a seed from 0 to 9223372036854775807"),
    Case("eval --swap too many", ["eval", "{run}", "--swap", str(10**10)], r"--swap 10000000000 would need about [\d.]+ GiB of memory"),
    Case("eval --swap -5", ["eval", "{run}", "--swap", "-5"], r"argument --swap: -5: give a count of 1 or more"),
    Case("swap --seed 2**70", ["swap", "--run", "{run}", "--pairs", "2", "--seed", str(2**70)], r"argument --seed: \d+: give a seed from 0"),
    Case("swap --pairs text", ["swap", "--run", "{run}", "--pairs", "many"], r"argument --pairs: 'many' is not a count"),
    Case("preview --image-size 0", ["data", "preview", "synthfaces", "--image-size", "0"], r"argument --image-size: 0: give an image side from 16 to 1024"),
    Case("prepare --workers 0", ["prepare", "imagefolder", "--root", "{case}", "--workers", "0"], r"argument --workers: 0: give a count of 1 or more"),
    Case("prepare --device tpu", ["prepare", "imagefolder", "--root", "{case}", "--device", "tpu"], r"argument --device: unknown device 'tpu'"),
    # --- prepare
    Case("prepare: every image corrupt", ["prepare", "imagefolder", "--root", "{case}/root", "--out", "{case}/cache", "--workers", "1"],
         r"prepare kept no image of imagefolder: all 2 were skipped, e.g\.\n  happy/happy\.png: ", _imagefolder_of(lambda p: random_bytes(p, 300))),
    Case("prepare: decompression bomb", ["prepare", "imagefolder", "on_error=raise", "--root", "{case}/root", "--out", "{case}/cache", "--workers", "1"],
         r"happy\.png is too large to decode safely", _imagefolder_of(bomb_png)),
    Case("prepare: --out in /proc", ["prepare", "imagefolder", "--root", "{case}", "--out", "/proc/factorlab-x"], r"cannot write --out /proc/factorlab-x"),
    Case("prepare: binary CSV", ["prepare", "fer2013", "--root", "{case}", "--out", "{case}/cache"], r"fer2013\.csv:\d+: the list is not UTF-8 text",
         _file("fer2013.csv", b"emotion,pixels,Usage\n\xff\xfe" + os.urandom(200))),
    Case("prepare: CSV with NUL bytes", ["prepare", "fer2013", "--root", "{case}", "--out", "{case}/cache"], r"no samples found under .* \(skipped 1\) .*fer2013\.csv:2: pixels must be 2304 integers",
         _file("fer2013.csv", b"emotion,pixels,Usage\n0,\x00\x00,Training\n")),
    Case("prepare: unknown data set", ["prepare", "nope", "--root", "{case}"], r"unknown data set 'nope'"),
    Case("prepare: missing root", ["prepare", "imagefolder", "--root", "{case}/nope"], r"image-folder root .*nope does not exist"),
    Case("prepare: bad option", ["prepare", "imagefolder", "margin=7", "--root", "{case}"], r"margin: Input should be less than or equal to 1"),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Running the table (in parallel, once per module)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """One tiny finished run with a decoder (SynthFaces 32 px, one epoch of 3 steps)."""
    out = tmp_path_factory.mktemp("base")
    result = run_cli("run", str(SWAP_RECIPE), *TINY, "--out", str(out / "runs"), cwd=out)
    assert result.returncode == 0, result.stderr
    return Path(re.search(r"run folder: (\S+)", result.stdout).group(1))


@pytest.fixture(scope="module")
def results(base_run: Path, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("cases")
    jobs = {}
    for k, case in enumerate(c for c in CASES if not c.skip):
        folder = root / f"case{k:02d}"
        folder.mkdir()
        places = {"run": str(base_run), "case": str(folder)}
        if case.prep:
            places.update(case.prep(folder, base_run))
        jobs[case.id] = ([arg.format(**places) for arg in case.args], folder)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {
                name: pool.submit(run_cli, *args, cwd=folder, timeout=300) for name, (args, folder) in jobs.items()
            }
            yield {name: future.result() for name, future in futures.items()}
    finally:
        for mount in MOUNTS:
            subprocess.run(["umount", str(mount)], check=False)
        MOUNTS.clear()


def test_a_prepare_that_keeps_no_image_leaves_only_its_report(results: dict, tmp_path_factory) -> None:
    result = results["prepare: every image corrupt"]
    assert result.returncode == 2
    cache = Path(re.search(r"listed in (\S+)/report\.txt", " ".join(result.stderr.split())).group(1))
    assert sorted(p.name for p in cache.iterdir()) == ["report.txt"], "no plan or shards: a rerun starts afresh"
    assert "happy.png" in (cache / "report.txt").read_text()


def test_the_table_is_large() -> None:
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_user_error_exits_2_with_a_clear_message(case: Case, results: dict) -> None:
    if case.skip:
        pytest.skip(case.skip)
    result = results[case.id]
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert CATCH_ALL not in output
    assert "weights_only=False" not in output
    assert "error: " in result.stderr
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert re.search(case.phrase, message) or re.search(case.phrase, result.stderr), result.stderr


# ---------------------------------------------------------------------------------------------
# Run folders stay whole


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_resume_drops_a_torn_last_line_and_clears_a_stale_lock(base_run: Path, tmp_path: Path) -> None:
    run = copy_run(base_run, tmp_path)
    before = (run / "metrics.jsonl").read_text()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 1, "split": "tr')  # killed while writing a line
    (run / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "since": "x"}))
    result = run_cli("run", "--resume", str(run))
    assert result.returncode == 0, result.stderr
    assert "dropped a torn last line" in " ".join(result.stdout.split())
    assert (run / "metrics.jsonl").read_text() == before
    assert not (run / ".lock").exists()


def test_a_second_writer_is_refused_while_a_resume_runs(base_run: Path, tmp_path: Path) -> None:
    run = copy_run(base_run, tmp_path)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "factorlab", "run", "--resume", str(run), "run.epochs=4", "run.max_steps_per_epoch=6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / ".lock").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = run_cli("run", "--resume", str(run), "run.epochs=4")
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    assert f"is in use by process {first.pid}" in " ".join(second.stderr.split())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [(r["epoch"], r["split"]) for r in records]
    assert epochs == sorted(set(epochs)), "every epoch is logged once"
    assert {e for e, _ in epochs} == {0, 1, 2, 3}
    assert not (run / ".lock").exists()


def test_a_full_disk_during_a_checkpoint_exits_2_and_keeps_nothing_half_written(tmp_path: Path) -> None:
    if not IS_ROOT or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (a full disk cannot be made otherwise)")
    disk = tmp_path / "disk"
    disk.mkdir()
    # the quickstart's checkpoint (~18 MB) cannot fit in 4 MB; the recipe and the log can
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        result = run_cli("run", QUICK, *TINY, "--out", str(disk / "runs"))
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Traceback" not in output and CATCH_ALL not in output
        message = " ".join(result.stderr.split())
        assert re.search(r"the disk is full: could not write .*checkpoints/(best|last)\.pt", message), message
        assert "MiB free on the file system of" in message
        leftovers = [p.name for p in disk.rglob("*") if p.suffix == ".tmp" or p.suffix == ".pt"]
        assert leftovers == [], leftovers
        assert not list(disk.rglob(".lock")), "the lock is released"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_files_get_the_users_umask(base_run: Path, tmp_path: Path) -> None:
    # the base run was written under this process's umask: files 0666 & ~umask, folders 0777 & ~umask
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [base_run / "recipe.toml", base_run / "summary.json", base_run / "checkpoints" / "last.pt"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
    assert (base_run / "checkpoints").stat().st_mode & 0o777 == 0o777 & ~mask
    # a CLI process with umask 027: the group can read, others nothing
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, "-m", "factorlab", "data", "preview", "synthfaces", "identities=6", "--out", str(out)],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o027),
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o640


def test_a_memory_hungry_request_is_refused_before_it_allocates(base_run: Path, tmp_path: Path) -> None:
    from factorlab import swap
    from factorlab.errors import ResourceError
    from factorlab.resources import available_memory, check_memory

    # 100 million pairs of a 32-sample split: drawing them alone would take 6.4 GB; refused at once
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "factorlab", "swap", "--run", str(base_run), "--pairs", "100000000",
             "--out", str(tmp_path / "s.png")],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
    message = " ".join(log.read_text().split())
    assert os.waitstatus_to_exitcode(status) == 2, message
    assert re.search(r"--pairs 100000000: the \d+ samples to draw from give at most \d+", message), message
    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
    # the process itself (torch, the model, the split) takes about 1.5 GB; the request would take 6.4 GB more
    assert peak_mib < 3000, f"the refused request grew to {peak_mib:.0f} MiB"
    # a model of 270 billion parameters: counted on the meta device and refused before anything is allocated
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "factorlab", "run", QUICK, "codes.exp.widths=[100000,100000,100000,100000]",
             "--out", str(tmp_path / "runs")],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
    message = " ".join(log.read_text().split())
    assert os.waitstatus_to_exitcode(status) == 2, message
    assert "would need about" in message and usage.ru_maxrss / 1024 < 3000, (message, usage.ru_maxrss)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "no run folder was made"
    # within what a split gives, the memory estimate refuses what the machine cannot hold
    with pytest.raises(ResourceError, match=r"would need about .* GiB of memory, but only .* GiB is available"):
        check_memory(swap.score_bytes(10**9, 160), "scoring 1000000000 pairs", "ask for fewer pairs")
    with pytest.raises(ResourceError):
        check_memory(10 * available_memory(), "a test request", "ask for less")
    check_memory(2**20, "a small request", "ask for less")  # a megabyte is always fine


def test_only_one_of_several_processes_takes_over_a_stale_lock(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "since": "x"}))
    script = (
        "import sys, time\n"
        "from factorlab.errors import RunFolderError\n"
        "from factorlab.rundir import RunLock\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together\n"
        "try:\n"
        "    RunLock(sys.argv[1]).acquire()\n"
        "except RunFolderError:\n"
        "    print('refused')\n"
        "else:\n"
        "    print('took it')\n"
        "    time.sleep(3)\n"
    )
    start = str(time.time() + 8)  # after every process has imported factorlab
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), start], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = sorted(proc.communicate(timeout=120)[0].strip() for proc in procs)
    assert outcomes == ["refused", "refused", "refused", "took it"], outcomes
    assert not (tmp_path / ".lock").exists() and not (tmp_path / ".lock.takeover").exists()


def test_torch_out_of_memory_errors_are_user_errors() -> None:
    import torch

    from factorlab.errors import ResourceError, as_user_error

    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried ...")

    class AcceleratorOutOfMemory(torch.OutOfMemoryError):  # a backend's own kind of torch's error
        pass

    class OutOfMemoryError(Exception):  # torch's name, but not torch's error: a bug stays a bug
        pass

    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    for exc in (cpu, cuda, AcceleratorOutOfMemory("out of memory"), MemoryError()):
        error = as_user_error(exc)
        assert isinstance(error, ResourceError) and "run.batch_size" in str(error)
    assert as_user_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None  # a bug stays a bug
    assert as_user_error(OutOfMemoryError("not from torch")) is None


def test_disk_and_permission_errnos_are_user_errors_and_read_in_words() -> None:
    import errno

    from factorlab.errors import DiskFullError, OutputError, as_user_error

    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # EFBIG: a file past the file system's size limit
        assert isinstance(as_user_error(OSError(code, os.strerror(code), "/data/run/last.pt")), DiskFullError)
    read_only = as_user_error(OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/run"))
    assert isinstance(read_only, OutputError) and "/mnt/ro/run: read-only file system" in str(read_only)
    denied = as_user_error(PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/root/x"))
    assert isinstance(denied, OutputError) and "Permission denied" in str(denied)
    assert as_user_error(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None  # a missing file is a bug here


def test_a_file_size_limit_during_a_checkpoint_exits_2_and_names_the_limit(tmp_path: Path) -> None:
    """EFBIG (a file past `ulimit -f`) is no full disk: the message says which limit to raise."""
    import resource

    limit = 4 * 2**20  # the quickstart's checkpoint (~18 MB) cannot be written under it; the recipe and log can

    def limit_file_size() -> None:  # in the child only; Python ignores SIGXFSZ, so the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "factorlab", "run", QUICK, *TINY, "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        preexec_fn=limit_file_size, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and CATCH_ALL not in output
    message = " ".join(result.stderr.split())
    assert re.search(r"a file grew past the largest size allowed .*ulimit -f.*: could not write .*\.pt", message)
    assert "the disk is full" not in message
    assert not [p.name for p in tmp_path.rglob("*") if p.suffix in (".tmp", ".pt")], "nothing half-written is kept"


def test_output_onto_a_fifo_a_folder_or_a_symlink_never_destroys_it(tmp_path: Path) -> None:
    """Renaming a temporary file over --out would replace a device, a FIFO or a link with a plain file."""
    fifo, folder = tmp_path / "pipe.png", tmp_path / "folder.png"
    os.mkfifo(fifo)
    folder.mkdir()
    for target, words in ((fifo, "not a regular file"), (folder, "it is a folder")):
        result = run_cli("data", "preview", "synthfaces", "--out", str(target))
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
    assert fifo.is_fifo() and folder.is_dir()
    real, link = tmp_path / "real.png", tmp_path / "link.png"
    real.write_text("old")
    link.symlink_to(real)
    result = run_cli("data", "preview", "synthfaces", "--out", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and real.read_bytes().startswith(b"\x89PNG"), "written through the link"


def test_a_name_too_long_or_a_folder_for_a_file_exits_2(tmp_path: Path) -> None:
    long = tmp_path / ("z" * 256 + ".toml")
    result = run_cli("validate", str(long))
    message = " ".join(result.stderr.split())
    assert result.returncode == 2 and "file name too long" in message and CATCH_ALL not in message, message
    assert len(result.stderr) < 600, "the path is shortened in the message"
    longer_out = tmp_path / ("a" * 246 + ".png")  # legal, but `.<name>.XXXXXXXX.tmp` beside it would not be
    result = run_cli("data", "preview", "synthfaces", "--out", str(longer_out))
    assert result.returncode == 0 and longer_out.is_file(), result.stderr
