"""Plots, run reports (report.md + self-contained report.html) and the cross-run comparison table."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from factorlab import metrics, plots, report
from factorlab.errors import FactorlabError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def rundir(tmp_path_factory):
    """A run folder with every kind of plot written by plots.py."""
    root = tmp_path_factory.mktemp("run")
    records = [
        {"epoch": e, "split": split, "loss/cls": 1.0 / (e + 1), "head/expression/exp/accuracy": e / 10}
        for e in range(5)
        for split in ("train", "val")
    ]
    plots.plot_training_curves(records, root / "plots" / "curves.png")
    confusion = metrics.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    plots.plot_confusion(confusion, ["happy", "sad", "neutral"], root / "plots" / "confusion.png", title="expression")
    rng = np.random.default_rng(0)
    labels = {"expression": rng.integers(0, 3, 100), "identity": rng.integers(0, 30, 100)}  # 30 ids: no legend
    codes = {"exp": rng.normal(size=(100, 8)), "non_exp": rng.normal(size=(100, 8))}
    points = {name: metrics.project_2d(code) for name, code in codes.items()}
    classes = {"expression": ["happy", "sad", "neutral"], "identity": [f"id{i}" for i in range(30)]}
    plots.plot_projections(points, labels, classes, root / "plots" / "pca.png")
    plots.plot_matrix(np.array([[0.9, np.nan], [0.1, 0.8]]), ["exp", "non_exp"], ["expression", "identity"],
                      root / "plots" / "probes.png", title="probe accuracy")  # fmt: skip
    return root


def test_plots_are_png_files(rundir):
    names = {"curves.png", "confusion.png", "pca.png", "probes.png"}
    assert {p.name for p in (rundir / "plots").iterdir()} == names  # no temporary files left behind
    for name in names:
        assert (rundir / "plots" / name).read_bytes()[:8] == PNG_MAGIC


def sections(rundir):
    probe_results = [
        {"factor": "expression", "code": "non_exp", "probe": "linear", "accuracy": 0.21, "chance": 0.2,
         "owner": "exp", "owner_accuracy": 0.9, "protocol": "train->test"},
    ]  # fmt: skip
    return [
        report.Section("Training", "Curves of `metrics.jsonl`.", images=[report.Image("plots/curves.png", "curves")]),
        report.Section(
            "Leakage",
            "A fresh probe on the frozen codes.\n\nChance is the majority-class rate.",
            tables=[report.probe_table(probe_results)],
            images=[report.Image(rundir / "plots" / "probes.png", "probe accuracy")],
        ),
        report.Section("Confusion", images=[report.Image("plots/confusion.png"), report.Image("plots/pca.png")]),
    ]


def test_report_markdown_links_images_relatively(rundir):
    md_path, _ = report.write_report(rundir, sections(rundir), title="synth paper")
    md = md_path.read_text()
    assert md.startswith("# synth paper\n")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["plots/curves.png", "plots/probes.png", "plots/confusion.png", "plots/pca.png"]
    assert all((rundir / link).is_file() for link in links)
    assert "| expression | non_exp | linear | 21.00% | 20.00% | 90.00% | train->test |" in md


def test_report_html_is_self_contained(rundir):
    _, html_path = report.write_report(rundir, sections(rundir))
    page = html_path.read_text()
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    # the inlined bytes are the plot files themselves
    first = base64.b64decode(sources[0].split(",", 1)[1])
    assert first == (rundir / "plots" / "curves.png").read_bytes()
    assert "<code>metrics.jsonl</code>" in page
    assert page.count("<p>") == 3  # two paragraphs in "Leakage", one in "Training"
    assert not list(rundir.glob("*.tmp"))


def test_report_refuses_missing_images(tmp_path):
    section = report.Section("x", images=[report.Image("plots/none.png")])
    with pytest.raises(FactorlabError, match="none.png"):
        report.write_report(tmp_path, [section])


def test_html_escapes_text(tmp_path):
    _, html_path = report.write_report(tmp_path, [report.Section("<b>", "a < b & c")])
    page = html_path.read_text()
    assert "<h2>&lt;b&gt;</h2>" in page and "a &lt; b &amp; c" in page


def test_compare_table_accepts_functions_and_dotted_keys():
    summaries = [{"name": "a", "recipe": {"optim.lr": 0.01}, "images_per_s": 123.456}]
    columns = [("run", lambda s: s["name"].upper()), ("lr", "recipe.optim.lr"), ("img/s", "images_per_s")]
    assert report.compare_table(summaries, columns).splitlines()[-1] == "| A | 0.01 | 123.5 |"
    assert report.lookup(summaries[0], "recipe.missing") is None
