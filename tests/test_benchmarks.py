"""The benchmarks run (`--smoke`: tiny sizes, a couple of steps, real subprocesses) and measure what they claim.

Nothing here is timed: the figures themselves are measured by hand (docs/performance.md).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    """Import a benchmark script as a module (the scripts import each other from their own folder)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def _run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _rows(table: str, first: str) -> list[list[str]]:
    """Cells of the Markdown table rows whose first cell starts with `first`."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines() if line.startswith("|")
    ]
    return [row for row in rows if row[0].startswith(first)]


def _number(cell: str) -> float:
    return float(re.sub(r"[*,%]", "", cell.split()[0]))


@pytest.mark.parametrize("model", ["quickstart", "paper160"])
def test_plain_loop_computes_the_same_update_as_the_trainer(model: str) -> None:
    # The A/B comparison is only fair if the hand-written loop does the same work: same loss, same new weights.
    train_step = _load("train_step")
    torch.set_num_threads(1)
    a = train_step.make_setup(model, smoke=True, pool=1)
    b = train_step.make_setup(model, smoke=True, pool=1)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    before = [p.detach().clone() for p in a.model.parameters()]
    images, labels = a.batches[0]
    loss_a = train_step.factorlab_step(a, images, labels)
    loss_b = train_step.plain_step(b, images, labels)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    for (name, pa), pb, p0 in zip(a.model.named_parameters(), b.model.parameters(), before, strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=name)
        assert not torch.equal(pa, p0), f"{name} did not move"  # every parameter took a step in both


def test_train_step_smoke_prints_the_ab_table() -> None:
    out = _run("benchmarks/train_step.py", "step", "--smoke", "--models", "quickstart")
    (row,) = _rows(out, "quickstart")
    factorlab, plain = _number(row[3]), _number(row[4])
    low, median, high = (_number(x) for x in row[5].split("/"))
    assert factorlab > 0 and plain > 0
    assert 0 < low <= median <= high


def test_data_smoke_compares_loader_and_step() -> None:
    out = _run("benchmarks/train_step.py", "data", "--smoke")
    (row,) = _rows(out, "32x32")
    loader, augmented, step = _number(row[3]), _number(row[4]), _number(row[5])
    assert loader > 0 and augmented > 0 and step > 0
    # the last column is the data path's time per image as a share of the step's
    assert _number(row[6]) == pytest.approx(100 * step / augmented, rel=0.01, abs=0.1)


def test_memory_smoke_measures_each_child() -> None:
    out = _run("benchmarks/memory.py", "--smoke")
    (floor,) = _rows(out, "import torch")
    (run,) = _rows(out, "quickstart run")
    steps = _rows(out, "paper160 step")
    assert len(steps) == 1
    assert "factorlab run recipes/quickstart.toml" in run[2]
    # building a model and training on top of the same imports needs more memory than the imports alone
    for row in [run, *steps]:
        assert _number(row[1]) > _number(floor[1]) > 50


def test_gpu_smoke_runs_every_option_on_the_cpu() -> None:
    out = _run("benchmarks/gpu.py", "--smoke")
    gflops = float(re.search(r"training GFLOP/image = 3 x ([\d.]+)", out).group(1))
    assert gflops > 0
    for option in ("fp32", "bf16", "bf16+channels_last"):
        (row,) = [r for r in _rows(out, option) if r[0] == option]
        assert _number(row[1]) > 0


def test_gpu_peak_table_matches_device_names() -> None:
    gpu = _load("gpu")
    assert gpu.gpu_peaks("NVIDIA H100 80GB HBM3") == gpu.PEAKS["H100"]
    assert gpu.gpu_peaks("NVIDIA H100 PCIe") == gpu.PEAKS["H100 PCIe"]
    assert gpu.gpu_peaks("NVIDIA H100 NVL") == gpu.PEAKS["H100 NVL"]
    assert gpu.gpu_peaks("NVIDIA H200") == gpu.PEAKS["H200"]
    assert gpu.gpu_peaks("NVIDIA GeForce RTX 4090") is None


def test_forward_gflops_counts_a_convolution() -> None:
    gpu = _load("gpu")
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    images = torch.zeros(4, 3, 16, 16)
    # 2 FLOPs per multiply-add: out channels x in channels x kernel area x output pixels, per image
    assert gpu.forward_gflops(conv, images) == pytest.approx(2 * 8 * 3 * 9 * 16 * 16 / 1e9)


def test_predict_smoke_times_predict_bare_and_onnx_runtime() -> None:
    out = _run("benchmarks/predict.py", "--smoke", "--models", "quickstart")
    rows = _rows(out, "quickstart")
    assert [row[1] for row in rows] == [
        "bare model(x), decoded batches",
        "predict, eager PyTorch",
        "predict, ONNX Runtime",
        "predict --align mtcnn, eager PyTorch",
        "predict --align mtcnn, ONNX Runtime",
    ]
    assert all(_number(row[2]) > 0 for row in rows)
    for row, label in ((rows[1], "predict/bare"), (rows[2], "ORT/eager")):
        low, median, high = (_number(x) for x in row[3].removeprefix(label).split("/"))
        assert 0 < low <= median <= high


def test_cli_startup_benchmark_runs_and_no_command_imports_torch() -> None:
    table = _run("benchmarks/cli_startup.py", "--smoke")
    rows = _rows(table, "`factorlab")
    assert len(rows) == 4
    assert all(row[-1] == "no" for row in rows), table


def test_metrics_benchmark_libraries_agree_with_the_former_hand_written_versions() -> None:
    table = _run("benchmarks/metrics.py", "--smoke")
    rows = {row[0] + " " + row[3]: row for row in _rows(table, "") if row[0] not in ("function", "---")}
    names = {key.split(" ")[0] for key in rows}
    assert {"ssim", "confusion_matrix", "macro_f1", "discrete_entropy", "PCA", "discrete_mutual_info"} <= names
    for key, row in rows.items():
        assert _number(row[4]) >= 0 and _number(row[5]) >= 0, key
        assert float(row[6]) < 1e-6, f"{key}: the library and the former version differ by {row[6]}"


def test_end_to_end_smoke_compares_factorlab_run_with_the_plain_script() -> None:
    out = _run("benchmarks/end_to_end.py", "compare", "--smoke")
    assert re.search(r"repeat 1: factorlab \d+ img/s, [\d.]+ s \| plain \d+ img/s, [\d.]+ s \| ratios", out), out
    for name in ("images/s factorlab / plain", "wall time factorlab / plain"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert _number(line.split("median ")[1]) > 0


def test_end_to_end_smoke_times_the_first_line() -> None:
    out = _run("benchmarks/end_to_end.py", "first-line", "--smoke")
    assert re.search(r"^[\d.]+ s: run folder: ", out, re.M), out


def test_end_to_end_load_smoke_runs_a_spin_count_policy() -> None:
    end_to_end = _load("end_to_end")
    env = end_to_end._env("spin:1000")  # PASSIVE with libgomp's spin rounds, which override PASSIVE's zero
    assert (env["OMP_WAIT_POLICY"], env["GOMP_SPINCOUNT"]) == ("PASSIVE", "1000")
    assert "GOMP_SPINCOUNT" not in end_to_end._env("PASSIVE")
    out = _run("benchmarks/end_to_end.py", "load", "--smoke", "--policies", "spin:1000")
    line = next(line for line in out.splitlines() if line.startswith("spin:1000, default threads: wall"))
    assert _number(line.split("median ")[1]) > 0, out
