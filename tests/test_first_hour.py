"""The first hour (issue 16): what `factorlab run`/`eval`/`runs` print, the plots' labels, report.html in Chromium.

Everything runs the real CLI in subprocesses on tiny SynthFaces runs. Speed targets are not asserted here
(timed tests flake on shared machines): `benchmarks/end_to_end.py` measures them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factorlab import plots
from factorlab.cli import set_thread_defaults
from factorlab.headline import what_this_run_shows
from factorlab.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "recipes" / "quickstart.toml")
TINY = [
    "run.epochs=2",
    "run.max_steps_per_epoch=3",
    "data.identities=12",
    "data.samples_per_identity=24",
    "data.image_size=32",
    "run.batch_size=16",
    "run.device=cpu",
]
NARROW = {"COLUMNS": "40"}  # a narrow console that is not a terminal (stdout is a pipe): nothing may wrap


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny quickstart trained and evaluated through the CLI, its output piped (plain mode)."""
    out = tmp_path_factory.mktemp("plain")
    result = run_cli("run", QUICKSTART, *TINY, "--out", str(out), env=NARROW)
    assert result.returncode == 0, result.stderr
    rundir = Path(result.stdout.splitlines()[0].removeprefix("run folder: "))
    evaluated = run_cli("eval", str(rundir), "--max-samples", "96", "--device", "cpu", env=NARROW)
    assert evaluated.returncode == 0, evaluated.stderr
    return rundir, result


def test_run_names_the_run_folder_first_and_last_and_says_what_next(plain_run) -> None:
    rundir, result = plain_run
    lines = result.stdout.splitlines()
    assert lines[0] == f"run folder: {rundir}" and rundir.is_dir()
    assert lines[-1] == f"run folder: {rundir}"  # scripts that read the last line keep working
    assert (rundir / "summary.json").is_file()
    nexts = lines[lines.index("next:") + 1 :]
    assert any(line.split()[:3] == ["factorlab", "eval", str(rundir)] for line in nexts)
    assert any(line.split()[:2] == ["factorlab", "runs"] for line in nexts)
    assert not any("swap" in line for line in nexts)  # the quickstart has no decoder: no swap to suggest


def test_plain_output_is_one_line_per_event_on_a_narrow_pipe(plain_run) -> None:
    rundir, result = plain_run
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for k, line in enumerate(epoch_lines, 1):  # the whole epoch line, with its speed, on one line
        assert re.fullmatch(rf"epoch {k}/2  train loss \S+  val .*acc .*  \d+ img/s  \S+ s.*", line), line
    rows = [line for line in lines if "head/expression/exp/accuracy" in line]
    assert len(rows) == 1 and len(re.findall(r"\d\.\d{4}", rows[0])) == 2, rows  # val and test cells on the row
    assert max(len(line) for line in lines) > 40  # longer than the 40 columns: not wrapped, not cut
    assert "…" not in result.stdout  # rich cuts cells with an ellipsis when a table is too wide


def test_eval_output_is_not_cut_on_a_narrow_pipe(plain_run) -> None:
    rundir, _ = plain_run
    result = run_cli("eval", str(rundir), "--max-samples", "96", "--device", "cpu", "--metrics", "probes", env=NARROW)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert re.search(
        r"│ expression\s+│ nonexp\s+│ linear\s+│ [\d.]+%\s+│ [\d.]+%\s+│ [\d.–%]+\s+│ train->test", result.stdout
    )
    assert re.search(r"^what this run shows: The expression head reads expression .* chance", result.stdout, re.M)


def test_json_mode_prints_only_json_events(tmp_path: Path) -> None:
    result = run_cli("run", QUICKSTART, *TINY, "--out", str(tmp_path), "--json", env=NARROW)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]  # every line parses
    assert events[0]["event"] == "run_dir" and Path(events[0]["path"]).is_dir()
    kinds = [e["event"] for e in events]
    assert kinds.count("epoch") == 2 and kinds[-2:] == ["summary", "next"]
    epoch = next(e for e in events if e["event"] == "epoch")
    assert epoch["epoch"] == 1 and epoch["epochs"] == 2 and epoch["images_per_s"] > 0
    summary = events[-2]
    assert 0 <= summary["splits"]["test"]["head/expression/exp/accuracy"] <= 1
    assert events[-1]["commands"][0] == f"factorlab eval {events[0]['path']}"


def test_quiet_mode_prints_the_run_folder_only(tmp_path: Path) -> None:
    result = run_cli("run", QUICKSTART, *TINY, "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    rundir = Path(result.stdout.strip())
    assert rundir.parent == tmp_path and (rundir / "summary.json").is_file()


def test_quiet_and_json_do_not_go_together(tmp_path: Path) -> None:
    result = run_cli("run", QUICKSTART, "--out", str(tmp_path), "--quiet", "--json")
    assert result.returncode == 2 and "not allowed with" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_fails_before_training_leaves_no_run_folder(tmp_path: Path) -> None:
    empty = tmp_path / "no-images"
    empty.mkdir()
    recipe = Path(QUICKSTART).read_text()
    recipe = recipe.replace('dataset = "synthfaces"', 'dataset = "imagefolder"')
    recipe = recipe.replace("identities = 200", f"root = {json.dumps(str(empty))}")
    (tmp_path / "bad.toml").write_text(recipe.replace("samples_per_identity = 30\n", ""))
    out = tmp_path / "runs"
    result = run_cli("run", str(tmp_path / "bad.toml"), "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "holds no <class>/<image> files" in result.stderr
    assert result.stdout.startswith(f"run folder: {out}")  # it was named first ...
    assert list(out.iterdir()) == []  # ... and removed again: nothing half-made to list


def test_runs_lists_folders_with_state_and_headline_numbers(plain_run, tmp_path: Path) -> None:
    rundir, _ = plain_run
    stopped = tmp_path / "runs" / "stopped-run"
    shutil.copytree(rundir, stopped, ignore=shutil.ignore_patterns("summary.json", "report.html"))
    for folder in (rundir.parent, tmp_path / "runs"):
        result = run_cli("runs", str(folder), env=NARROW)
        assert result.returncode == 0, result.stderr
    listed = run_cli("runs", str(rundir.parent), str(tmp_path / "runs"), "--json")
    rows = {row["path"]: row for row in map(json.loads, listed.stdout.splitlines())}
    summary = json.loads((rundir / "summary.json").read_text())
    done = rows[str(rundir)]
    assert done["state"] == "finished" and done["epochs"] == done["planned_epochs"] == 2 and done["evaluated"]
    assert done["test"]["expression head (exp)"] == summary["splits"]["test"]["head/expression/exp/accuracy"]
    assert rows[str(stopped)]["state"] == "stopped" and rows[str(stopped)]["test"] == {}
    table = run_cli("runs", str(rundir.parent), env=NARROW).stdout
    row = next(line for line in table.splitlines() if str(rundir) in line)
    assert "finished" in row and f"{100 * done['test']['expression head (exp)']:.1f}%" in row
    missing = run_cli("runs", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr


# ---------------------------------------------------------------------------------------------
# plots read without the docs


def _labels(path: Path) -> dict:
    return json.loads(Image.open(path).info["factorlab:labels"])


def _assert_labelled(path: Path) -> dict:
    labels = _labels(path)
    assert labels["title"], path
    assert labels["panels"], path
    for panel in labels["panels"]:
        assert panel["title"] and panel["x"] and panel["y"], (path, panel)
    return labels


def test_every_plot_has_a_title_and_axis_labels(tmp_path: Path) -> None:
    records = [{"epoch": e, "split": s, "head/expression/exp/accuracy": 0.3 + 0.1 * e, "total/loss": 2.0 - e}
               for e in range(3) for s in ("train", "val")]  # fmt: skip
    curves = _assert_labelled(plots.plot_training_curves(records, tmp_path / "curves.png"))
    assert all(p["x_range"] == [1, 3] for p in curves["panels"])  # epochs 1..3, as the console numbers them
    assert {p["y"] for p in curves["panels"]} == {"accuracy (fraction, 1 = all correct)", "loss (mean per image)"}
    rng = np.random.default_rng(0)
    _assert_labelled(plots.plot_confusion(np.eye(3) * 5 + 1, ["a", "b", "c"], tmp_path / "c.png", title="head"))
    _assert_labelled(plots.plot_matrix(rng.random((2, 2)), ["exp", "nonexp"], ["expression", "identity"],
                                       tmp_path / "m.png", title="DCI importance"))  # fmt: skip
    points = {"exp": (rng.normal(size=(20, 2)), np.arange(20))}
    _assert_labelled(plots.plot_projections(points, {"expression": np.arange(20) % 3}, {}, tmp_path / "pca.png"))


def test_probe_plot_marks_chance_per_factor_and_the_head_ceiling(tmp_path: Path) -> None:
    rows = [
        {"factor": "expression", "code": code, "probe": kind, "accuracy": acc, "chance": 0.125}
        for code, kind, acc in [("exp", "linear", 0.6), ("nonexp", "linear", 0.3), ("nonexp", "mlp", 0.35)]
    ] + [{"factor": "identity", "code": "nonexp", "probe": "linear", "accuracy": 0.4, "chance": 0.05}]
    labels = _assert_labelled(plots.plot_probes(rows, {"expression": 0.62}, tmp_path / "probes.png"))
    assert [p["title"] for p in labels["panels"]] == [
        "expression: probe accuracy on test",
        "identity: probe accuracy on test",
    ]


def test_probe_plot_legend_names_chance_and_ceiling(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [{"factor": "expression", "code": "nonexp", "probe": "linear", "accuracy": 0.3, "chance": 0.125}]
    captured = {}
    original = plots._save

    def keep(fig, path):
        captured["legend"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        captured["lines"] = [line.get_ydata()[0] for line in fig.axes[0].get_lines()]
        return original(fig, path)

    plots._save = keep
    try:
        plots.plot_probes(rows, {"expression": 0.62}, tmp_path / "probes.png")
    finally:
        plots._save = original
        plt.close("all")
    assert captured["legend"] == ["chance 12%", "head accuracy 62% (ceiling)"]
    assert captured["lines"] == [0.125, 0.62]


def test_preview_grid_names_its_rows_and_columns(tmp_path: Path) -> None:
    result = run_cli("data", "preview", "synthfaces", "identities=20", "--image-size", "32", "--out",
                     str(tmp_path / "grid.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    labels = _assert_labelled(tmp_path / "grid.png")
    assert labels["panels"][0]["x"] == "expression" and labels["panels"][0]["y"] == "identity"
    assert "8 identities (rows) x 8 expressions (columns)" in labels["title"]


# ---------------------------------------------------------------------------------------------
# the report


def test_report_opens_with_what_the_run_shows(plain_run) -> None:
    rundir, _ = plain_run
    report = (rundir / "report.md").read_text()
    first = report.split("\n## ")[1]
    assert first.startswith("What this run shows\n")
    result = json.loads((rundir / "eval.json").read_text())
    head = result["heads"]["expression/exp"]
    assert f"at {100 * head['accuracy']:.1f}% on `test` (chance {100 * head['chance']:.1f}%" in first
    assert "adversary that keeps expression out of code `nonexp`" in first and "fresh" in first


def test_headline_names_the_strongest_leak() -> None:
    result = {
        "split": "test",
        "heads": {"expression/exp": {"accuracy": 0.6, "chance": 0.125}},
        "adversaries": {"expression/nonexp": {"accuracy": 0.13, "chance": 0.125}},
        "probes": [
            {"factor": "expression", "code": "nonexp", "probe": "linear", "accuracy": 0.5, "chance": 0.125,
             "owner": "exp", "owner_accuracy": 0.625},
            {"factor": "identity", "code": "exp", "probe": "mlp", "accuracy": 0.9, "chance": 0.05,
             "owner": "nonexp", "owner_accuracy": 0.95},
        ],
    }  # fmt: skip
    text = what_this_run_shows(result)
    assert "at 60.0% on `test` (chance 12.5%, 4.8x chance)" in text
    assert "reaches 13.0% (chance 12.5%), while a fresh linear probe trained on the frozen code reads 50.0%" in text
    assert "0.75 of the way from chance to the same probe on code `exp`" in text
    assert "An adversary at chance does not prove the factor is gone." in text
    assert "The strongest leak: identity in code `exp`" in text  # 0.94 beats expression's 0.75
    quiet = {**result, "probes": [{**result["probes"][0], "accuracy": 0.13}]}
    assert "No fresh probe reads a factor from another code" in what_this_run_shows(quiet)


def test_headline_does_not_score_a_classifier_whose_classes_are_all_held_out() -> None:
    """An identity head or adversary on a split of unseen people reads 0%: the headline says it cannot be scored."""
    unseen = {"accuracy": 0.0, "chance": 0.067, "per_class_accuracy": {"id000": float("nan"), "id001": float("nan")}}
    result = {
        "split": "test",
        "heads": {"expression/exp": {"accuracy": 0.36, "chance": 0.133, "per_class_accuracy": {"happy": 0.5}},
                  "identity/nonexp": unseen},
        "adversaries": {"identity/exp": unseen},
        "probes": [{"factor": "identity", "code": "exp", "probe": "mlp", "accuracy": 0.44, "chance": 0.067,
                    "owner": "nonexp", "owner_accuracy": 0.96}],
    }  # fmt: skip
    text = what_this_run_shows(result)
    assert "The expression head reads expression from code `exp` at 36.0%" in text
    assert "identity head on code `nonexp` cannot be scored on `test`" in text and "at 0.0%" not in text
    assert "adversary that keeps identity out of code `exp` cannot be scored on `test`" in text
    assert "A fresh mlp probe reads 44.0% from that code, 0.42 of the way from chance" in text


CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const out = {images: images.length, loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    resources: performance.getEntriesByType("resource").map(e => e.name),
    height: document.body.scrollHeight, first: (document.querySelector("h2") || {}).textContent};
  const pre = document.createElement("pre"); pre.id = "factorlab-check"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.environ.get("FACTORLAB_REQUIRE_CHROMIUM"):
        pytest.fail("FACTORLAB_REQUIRE_CHROMIUM is set but no chromium binary is on PATH (.ci/run installs it)")
    pytest.skip("no chromium on PATH: `apt-get install chromium` (Debian) to check report.html in a real browser")


def _open_in_chromium(html: Path, tmp_path: Path) -> dict:
    """Load a copy of `html` (plus a checking script) in headless Chromium; what the page saw once loaded.

    All network goes to a closed local port (--proxy-server), so an external request fails and is listed.
    """
    page = tmp_path / "page.html"
    page.write_text(html.read_text(encoding="utf-8") + CHECK_SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--proxy-server=127.0.0.1:9", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    found = re.search(r'<pre id="factorlab-check">(.*?)</pre>', result.stdout)
    assert found, f"chromium rendered no page (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_report_html_renders_in_chromium_with_every_image_and_no_request(plain_run, tmp_path: Path) -> None:
    rundir, _ = plain_run
    seen = _open_in_chromium(rundir / "report.html", tmp_path)
    assert seen["first"] == "What this run shows"
    assert seen["images"] >= 4 and seen["loaded"] == seen["images"]  # curves, confusion, probes, PCA, ...
    assert seen["resources"] == []  # images are inlined: the page fetches nothing
    assert seen["height"] > 2000


def test_the_browser_check_catches_a_missing_image_and_an_external_request(plain_run, tmp_path: Path) -> None:
    rundir, _ = plain_run
    broken = tmp_path / "broken.html"
    broken.write_text((rundir / "report.html").read_text().replace(
        "<h1>", '<img src="https://example.com/x.png"><img src="data:image/png;base64,AAAA"><h1>', 1))  # fmt: skip
    seen = _open_in_chromium(broken, tmp_path)
    assert seen["loaded"] == seen["images"] - 2
    assert seen["resources"] == ["https://example.com/x.png"]


# ---------------------------------------------------------------------------------------------
# start-up


def test_thread_defaults_leave_the_users_choice() -> None:
    env: dict[str, str] = {}
    assert set_thread_defaults(env) == {"OMP_WAIT_POLICY": "PASSIVE"} and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert set_thread_defaults(chosen) == {} and chosen == {"OMP_WAIT_POLICY": "ACTIVE"}


MALLOC_STEPS = """
import resource, sys, numpy as np
from factorlab.cli import set_malloc_defaults
chosen = set_malloc_defaults({} if sys.argv[1] == "tuned" else {"MALLOC_ARENA_MAX": "2"})
counts = []
for step in range(4):  # as a training step: activations allocated, used, all freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [np.ones(2**21 + 4096 * k) for k in range(5)]  # 5 x 16 MiB
    del buffers
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(" ".join(chosen), *counts)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_defaults_keep_freed_step_buffers_for_reuse() -> None:
    """With the CLI's malloc thresholds a step's freed buffers are reused without page faults; glibc's default
    returns them to the kernel, so every step faults them in again. A MALLOC_* variable of the user wins."""

    def faults(mode: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", MALLOC_STEPS, mode], capture_output=True, text=True, check=True)
        return done.stdout.split()

    tuned = faults("tuned")
    assert tuned[:2] == ["M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD"]
    assert all(int(n) < 100 for n in tuned[3:]), tuned  # steps after the first reuse the heap
    untouched = faults("user")  # the user set MALLOC_ARENA_MAX: nothing is changed
    assert all(int(n) > 1000 for n in untouched), untouched  # 80 MiB faulted in again every step


def test_the_cli_sets_the_wait_policy_before_torch_loads(tmp_path: Path) -> None:
    code = (
        "import os, sys; from factorlab import cli; cli.main(['ls', 'adversaries']); "
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.splitlines()[-1] == "PASSIVE False", out.stdout + out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.splitlines()[-1] == "ACTIVE False", out.stdout + out.stderr


def test_building_the_parser_does_not_import_torch() -> None:
    code = "import sys; from factorlab.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_predict_command_constants_match_the_predictor() -> None:
    from factorlab import predict
    from factorlab.commands import predict as command

    assert command.ALIGN_MODES == predict.ALIGN_MODES and command.MAX_PIXELS == predict.MAX_PIXELS


# ---------------------------------------------------------------------------------------------
# the data path


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_fetches_whole_batches_equal_to_collated_samples(workers: int) -> None:
    import torch
    from torch.utils.data import DataLoader

    from factorlab.data.loading import build_dataset, make_loader
    from factorlab.model import resolve_factors
    from factorlab.recipe import load_recipe

    recipe = load_recipe(QUICKSTART, TINY[2:5])
    dataset = build_dataset(recipe, "train", resolve_factors(recipe))
    order = np.random.default_rng(0).permutation(len(dataset))[:48]
    fast = list(make_loader(dataset, order, 16, num_workers=workers))
    slow = list(DataLoader(dataset, batch_size=16, sampler=order.tolist(), drop_last=True))  # per-sample + collate
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow, strict=True):
        assert a.keys() == b.keys() and "expression" in a
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape and torch.equal(a[key], b[key]), key
        assert a["image"].is_contiguous()
