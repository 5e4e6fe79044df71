"""The plugin tutorial's package (examples/factorlab-pose, shown in docs/plugins.md) installed and used for real.

It is installed as a distribution with entry points into a temporary site folder, and every kind it adds
is used through the real CLI: its factor derives labels from SynthFaces' ground truth, its classifier-free
and ensemble adversaries train, its data set is cached by `factorlab prepare`, and its metric's options
from the recipe reach the metric.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factorlab.testing import internal_imports, run_cli, write_plugin_distribution

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "factorlab-pose"
TINY = ["run.epochs=1", "run.batch_size=16", "data.identities=9", "data.samples_per_identity=8", "data.image_size=32"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, str]:
    folder = write_plugin_distribution(
        tmp_path_factory.mktemp("site"), "factorlab-pose", "factorlab_pose", EXAMPLE / "factorlab_pose", entry="pose"
    )
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def test_the_docs_show_the_example_package_as_it_is() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for path in [EXAMPLE / "pyproject.toml", EXAMPLE / "pose.toml", *sorted(EXAMPLE.glob("*/*.py"))]:
        assert path.read_text(encoding="utf-8").strip() in docs, f"docs/plugins.md does not show {path.name} as it is"


def test_the_example_imports_only_the_plugin_api() -> None:
    assert internal_imports(EXAMPLE / "factorlab_pose") == []


def test_the_example_registers_every_kind_without_importing_torch(site) -> None:
    code = (
        "import sys\nfrom factorlab.plugins import get_host\nhost = get_host()\n"
        "info = {p.name: p for p in host.plugins}['pose']\n"
        "print(info.status, sorted(info.registered), sorted(m for m in ('torch',) if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **site}, check=True
    )
    assert result.stdout.split() == ["loaded", "['adversaries',", "'datasets',", "'factors',", "'metrics']", "[]"]


def test_the_example_package_own_tests_pass(site) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env={**os.environ, **site},
        cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pose_recipe_trains_with_derived_labels_and_classifier_free_adversaries(site, tmp_path) -> None:
    result = run_cli("run", str(EXAMPLE / "pose.toml"), *TINY, f"run.output={tmp_path}", env=site)
    assert result.returncode == 0, result.stderr
    (rundir,) = tmp_path.iterdir()
    summary = json.loads((rundir / "summary.json").read_text())
    test = summary["splits"]["test"]
    assert summary["classes"]["pose"] == [f"yaw{i}" for i in range(5)]
    assert 0.0 <= test["head/pose/pose/accuracy"] <= 1.0
    assert "adversary/pose/exp/accuracy" in test  # the ensemble has logits
    assert "adversary/expression/rest/accuracy" not in test  # HSIC has no classifier...
    assert np.isfinite(test["encoder_adv/expression/rest/loss"])  # ...but its penalty was trained against
    records = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    assert "adversary/pose/exp/loss" in records[0] and "adversary/expression/rest/loss" not in records[0]


def test_validate_says_when_a_data_set_cannot_label_a_derived_factor(site, tmp_path) -> None:
    text = (EXAMPLE / "pose.toml").read_text(encoding="utf-8")
    data = text[text.index("[data]") : text.index("[encoder]")]
    recipe = tmp_path / "pose-on-csvfaces.toml"
    recipe.write_text(text.replace(data, f'[data]\ndataset = "csvfaces"\nroot = "{tmp_path}"\n\n'), encoding="utf-8")
    result = run_cli("validate", str(recipe), env=site)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot label factor 'pose'" in result.stderr and "['yaw']" in result.stderr
    assert f"{recipe.name}:" in result.stderr  # names the file (and the line of data.dataset)


def csvfaces(root: Path, per_part: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(2 * per_part):
        name = f"face{i}.png"
        Image.fromarray(np.full((40, 40, 3), 20 * i, dtype=np.uint8)).save(root / name)
        rows.append({"path": name, "expression": ["happy", "sad"][i % 2], "part": "train" if i < per_part else "test"})
    with open(root / "faces.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["path", "expression", "part"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_prepare_caches_a_data_set_a_plugin_registered(site, tmp_path) -> None:
    root, out = csvfaces(tmp_path / "faces"), tmp_path / "cache"
    result = run_cli("prepare", "csvfaces", "--root", str(root), "--out", str(out), "--image-size", "32", env=site)
    assert result.returncode == 0, result.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["dataset"] == "csvfaces" and index["count"] == 12


def test_metric_options_from_the_recipe_reach_the_plugin_metric(site, tmp_path) -> None:
    trained = run_cli("run", str(EXAMPLE / "pose.toml"), *TINY, f"run.output={tmp_path}", env=site)
    assert trained.returncode == 0, trained.stderr
    (rundir,) = tmp_path.iterdir()
    result = run_cli("eval", str(rundir), "--metrics", "code_norm", env=site)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((rundir / "eval.json").read_text())
    assert "code_norm/exp/q0.9" in json.dumps(evaluation)  # quantile = 0.9 from the recipe's [eval.options]


def test_a_bad_faces_csv_is_a_user_error_naming_the_line(site, tmp_path) -> None:
    root = csvfaces(tmp_path / "faces")
    (root / "faces.csv").write_text("path,expression,part\nface0.png,grumpy,train\n", encoding="utf-8")
    result = run_cli("prepare", "csvfaces", "--root", str(root), "--out", str(tmp_path / "cache"), env=site)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "faces.csv:2: need path, expression" in " ".join(result.stderr.split())
