"""`factorlab eval` and `factorlab compare` end to end on tiny real runs trained through the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from factorlab import cli
from factorlab.commands.evaluate import leakage_table, table1, table2
from factorlab.evaluate import sample_indices
from factorlab.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "run.epochs=1",
    "run.max_steps_per_epoch=3",
    "data.identities=12",
    "data.samples_per_identity=24",
    "data.image_size=32",
    "run.batch_size=16",
]


def _train(recipe: str, out: Path, *overrides: str) -> Path:
    result = run_cli("run", str(ROOT / "recipes" / "synth" / recipe), *SMALL, *overrides, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1].split("run folder: ")[1])


@pytest.fixture(scope="module")
def paper_eval(tmp_path_factory) -> tuple[Path, str]:
    """The paper's model (exp + nonexp codes, adversary on nonexp) and the output of its `factorlab eval`."""
    rundir = _train("expression.toml", tmp_path_factory.mktemp("paper"))
    result = run_cli("eval", str(rundir), "--max-samples", "96", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return rundir, result.stdout


@pytest.fixture(scope="module")
def paper(paper_eval) -> Path:
    return paper_eval[0]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory) -> Path:
    """The paper's model with a decoder (beta_rec = 1), evaluated without probes."""
    rundir = _train("ablation.toml", tmp_path_factory.mktemp("ablation"), "loss.beta_rec=1.0")
    result = run_cli("eval", str(rundir), "--no-probes", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return rundir


def test_eval_writes_results_plots_and_report(paper_eval: tuple[Path, str]) -> None:
    paper, stdout = paper_eval
    result = json.loads((paper / "eval.json").read_text())
    summary = json.loads((paper / "summary.json").read_text())
    assert result["n"] == {"train": 96, "test": 48}  # train capped by --max-samples, test (2 ids x 24) whole
    assert result["owners"] == {"expression": "exp"}  # derived from the recipe's heads
    head, adversary = result["heads"]["expression/exp"], result["adversaries"]["expression/nonexp"]
    # the whole test split is encoded, so the accuracies are those the trainer wrote into summary.json
    assert head["accuracy"] == pytest.approx(summary["splits"]["test"]["head/expression/exp/accuracy"])
    assert adversary["accuracy"] == pytest.approx(summary["splits"]["test"]["adversary/expression/nonexp/accuracy"])
    assert np.array(head["confusion"]).sum() == 48 and len(head["per_class_accuracy"]) == 8
    # a probe for every (factor, code, kind); identity is probed on test halves (identity-disjoint splits)
    pairs = {(r["factor"], r["code"], r["probe"]) for r in result["probes"]}
    assert pairs == {
        (f, c, k) for f in ("expression", "identity") for c in ("exp", "nonexp") for k in ("linear", "mlp")
    }
    assert {r["protocol"] for r in result["probes"] if r["factor"] == "identity"} == {
        "test halves (test classes not in train)"
    }
    assert all(0 <= r["accuracy"] <= 1 for r in result["probes"])
    assert {(s["code"], s["factor"]) for s in result["similarity"]} == {("exp", "expression"), ("nonexp", "expression")}
    assert 0 <= result["mig"]["mig"] <= 1 and 0 <= result["dci"]["disentanglement"] <= 1
    assert set(result["ground_truth_factors"]) <= set(result["dci"]["protocol"])  # SynthFaces' discrete truth is used
    assert result["ground_truth_factors"], "SynthFaces offers discrete ground-truth factors (glasses, ...)"
    assert result["swap_grid"] is None  # no decoder
    # metrics registered by plugins run too: the identity plugin's verification AUC, one per code
    verification = result["plugin_metrics"]["identity_verification"]
    assert verification["plugin"] == "identity"
    assert all(0 <= verification[f"identity_verification/{c}/auc"] <= 1 for c in ("exp", "nonexp"))
    for name in ("confusion-expression-exp.png", "probes.png", "pca.png", "dci-importance.png", "curves.png"):
        assert (paper / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    stdout = " ".join(stdout.split())
    assert "Post-hoc leakage probes" in stdout and "DCI disentanglement" in stdout and "wrote" in stdout


def test_report_html_is_self_contained(paper: Path) -> None:
    page = (paper / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    md = (paper / "report.md").read_text()
    for title in ("## Leakage probes", "## Code similarity", "## Disentanglement metrics", "## Projections"):
        assert title in md
    assert all((paper / link).is_file() for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md))


def test_eval_of_a_decoder_run_draws_a_swap_grid(ablation: Path) -> None:
    result = json.loads((ablation / "eval.json").read_text())
    assert "probes" not in result  # --no-probes
    assert result["swap_grid"] == "plots/swap.png" and (ablation / "plots" / "swap.png").is_file()
    assert "## Code swaps" in (ablation / "report.md").read_text()


def test_compare_reproduces_the_paper_tables(paper: Path, ablation: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "compare.md"
    assert cli.main(["compare", str(paper), str(ablation), "--out", str(out)]) == 0  # in-process: no second startup
    text = out.read_text()
    summaries = [json.loads((r / "summary.json").read_text()) for r in (paper, ablation)]
    accs = [s["splits"]["test"]["head/expression/exp/accuracy"] for s in summaries]
    advs = [s["splits"]["test"]["adversary/expression/nonexp/accuracy"] for s in summaries]
    assert "| method | C_exp accuracy |" in text
    assert (
        f"| synth-expression | {100 * accs[0]:.2f}% |" in text and f"| synth-ablation | {100 * accs[1]:.2f}% |" in text
    )
    # Table 2 lists runs by decreasing beta_rec, as the paper does
    assert "| beta_rec | C_exp | C_adv_exp | run |" in text
    rows = [line for line in text.splitlines() if line.startswith(("| 1 ", "| 0 "))]
    assert rows == [
        f"| 1 | {100 * accs[1]:.2f}% | {100 * advs[1]:.2f}% | synth-ablation |",
        f"| 0 | {100 * accs[0]:.2f}% | {100 * advs[0]:.2f}% | synth-expression |",
    ]
    assert "Leakage" in text and "nonexp" in text  # paper has eval.json with probes
    assert "C_adv_exp" in capsys.readouterr().out  # shown in the terminal too


def test_compare_tables_of_a_run_without_adversary() -> None:
    paper = {"name": "paper", "rundir": "runs/p", "recipe": {"loss": {"beta_rec": 0.0},
             "heads": [{"factor": "expression", "code": "exp"}], "adversaries": [{"factor": "expression", "code": "nonexp"}]},
             "splits": {"test": {"head/expression/exp/accuracy": 0.6, "adversary/expression/nonexp/accuracy": 0.16}}}  # fmt: skip
    baseline = {"name": "base", "rundir": "runs/b", "recipe": {"loss": {"beta_rec": 0.0},
                "heads": [{"factor": "expression", "code": "exp"}]},
                "splits": {"test": {"head/expression/exp/accuracy": 0.56}}}  # fmt: skip
    assert table1([paper, baseline]).rows == [["paper", "60.00%"], ["base", "56.00%"]]
    assert table2([paper, baseline]).rows == [[0.0, "60.00%", "16.00%", "paper"], [0.0, "56.00%", "–", "base"]]
    probes = [{"factor": "expression", "code": "exp", "probe": "linear", "accuracy": 0.9, "chance": 0.125}]
    leak = leakage_table([paper, baseline], [None, {"split": "test", "probes": probes}])
    assert leak.rows == [
        ["paper", "–", "–", "–", "–", "–"],
        ["base", "linear", "90.00%", "– (no other code)", "12.50%", "test"],
    ]


def _error(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return " ".join(captured.err.split())


def test_bad_run_folders_exit_2_with_a_message(paper: Path, tmp_path: Path, capsys) -> None:
    assert "run folder not found" in _error(["eval", str(tmp_path / "missing")], capsys)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(paper / "recipe.toml", unfinished / "recipe.toml")
    assert "has no summary.json" in _error(["eval", str(unfinished)], capsys)
    assert "has no summary.json" in _error(["compare", str(paper), str(unfinished)], capsys)
    assert "--max-samples 3" in _error(["eval", str(paper), "--max-samples", "3"], capsys)


def test_sample_indices_are_a_seeded_sorted_subset() -> None:
    assert sample_indices(5, 10, seed=0).tolist() == [0, 1, 2, 3, 4]
    a, b = sample_indices(1000, 50, seed=1), sample_indices(1000, 50, seed=1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, sample_indices(1000, 50, seed=2))


def test_load_summary_reports_bad_json_with_its_line(tmp_path: Path) -> None:
    from factorlab.errors import FactorlabError
    from factorlab.rundir import load_summary

    (tmp_path / "recipe.toml").write_text("")
    (tmp_path / "summary.json").write_text('{"name": "x",\n')
    with pytest.raises(FactorlabError, match="summary.json, line 2: not valid JSON"):
        load_summary(tmp_path)


# ---------------------------------------------------------------------------------------------
# metric options: the recipe's [eval] section and the command line

EVAL_SECTION = """
[eval]
metrics = ["probes", "dci", "identity_verification"]

[eval.options.probes]
kinds = ["linear"]
max_train = 40

[eval.options.dci]
max_train = 30
n_estimators = 5
"""
EVAL_SECTION_METRICS = ("probes", "dci", "identity_verification")


@pytest.fixture
def run_with_eval_section(paper: Path, tmp_path: Path) -> Path:
    """A copy of the paper run whose recipe.toml has an [eval] section."""
    rundir = tmp_path / "run"
    shutil.copytree(paper, rundir)
    recipe = rundir / "recipe.toml"
    recipe.write_text(recipe.read_text() + EVAL_SECTION)
    return rundir


def test_metric_options_from_the_recipe_reach_the_metrics(run_with_eval_section: Path) -> None:
    rundir = run_with_eval_section
    result = run_cli("eval", str(rundir), "--max-samples", "96", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    ev = json.loads((rundir / "eval.json").read_text())
    # only the listed metrics ran
    assert "mig" not in ev and "similarity" not in ev and set(ev["metric_options"]) == set(EVAL_SECTION_METRICS)
    assert {r["probe"] for r in ev["probes"]} == {"linear"}
    # expression is probed train->test on max_train = 40 of the 96 encoded train samples
    assert {r["n_fit"] for r in ev["probes"] if r["factor"] == "expression"} == {40}
    assert ev["dci"]["n_train"] == 30 and ev["metric_options"]["dci"]["n_estimators"] == 5
    assert ev["metric_options"]["probes"]["steps"] == 300  # defaults fill the rest
    assert "identity_verification" in ev["plugin_metrics"]
    md = (rundir / "report.md").read_text()
    assert "## Leakage probes" in md and "## Disentanglement metrics" in md and "## Code similarity" not in md
    assert "DCI disentanglement" in result.stdout and "Plugin metrics" in result.stdout


def test_command_line_metric_options_override_the_recipe(run_with_eval_section: Path) -> None:
    rundir = run_with_eval_section
    result = run_cli(
        "eval", str(rundir), "--max-samples", "96", "--device", "cpu", "--metrics", "dci", "mig",
        "--metric-option", "dci.max_train=20", "--metric-option", "mig.bins=5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ev = json.loads((rundir / "eval.json").read_text())
    assert set(ev["metric_options"]) == {"dci", "mig"} and "probes" not in ev and not ev["plugin_metrics"]
    assert ev["dci"]["n_train"] == 20  # the command line wins over the recipe's 30 ...
    assert ev["metric_options"]["dci"]["n_estimators"] == 5  # ... and keeps the recipe's other options
    assert ev["metric_options"]["mig"]["bins"] == 5


def test_unknown_metrics_and_options_exit_2_with_a_message(paper: Path, tmp_path: Path, capsys) -> None:
    message = _error(["eval", str(paper), "--metrics", "probs"], capsys)
    assert "unknown metric 'probs'. Did you mean 'probes'?" in message and "'dci'" in message
    assert "--metrics probs" in message
    message = _error(["eval", str(paper), "--metric-option", "dci.max_trian=5"], capsys)
    assert "eval.options.dci.max_trian: unknown option of metric 'dci'; its options: max_train, max_test" in message
    assert "--metric-option dci.max_trian=5" in message
    message = _error(["eval", str(paper), "--metric-option", "dci.max_train=many"], capsys)
    assert "eval.options.dci.max_train: Input should be a valid integer" in message
    assert "name the metric and the key" in _error(["eval", str(paper), "--metric-option", "dci=5"], capsys)
    # in a recipe: file and line, before anything trains
    recipe = tmp_path / "recipe.toml"
    text = (ROOT / "recipes" / "synth" / "expression.toml").read_text()
    recipe.write_text(text + '\n[eval]\nmetrics = ["dci", "migg"]\n\n[eval.options.probes]\nkinds = ["svm"]\n')
    lines = len(text.splitlines())
    message = _error(["validate", str(recipe)], capsys)
    assert f"{recipe}:{lines + 3}: eval.metrics.1: unknown metric 'migg'. Did you mean 'mig'?" in message
    assert f"{recipe}:{lines + 6}: eval.options.probes.kinds.0: Input should be 'linear' or 'mlp'" in message


def test_an_eval_section_survives_the_run_folder_recipe() -> None:
    from factorlab.recipe import parse_recipe

    text = (ROOT / "recipes" / "synth" / "expression.toml").read_text() + EVAL_SECTION
    recipe = parse_recipe(text)
    again = parse_recipe(recipe.to_toml())  # what a run folder's recipe.toml holds
    assert again.eval.metrics == list(EVAL_SECTION_METRICS)
    assert again.eval.options == {
        "probes": {"kinds": ["linear"], "max_train": 40},
        "dci": {"max_train": 30, "n_estimators": 5},
    }
    assert "[eval" not in parse_recipe((ROOT / "recipes" / "synth" / "expression.toml").read_text()).to_toml()
