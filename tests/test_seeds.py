"""Seed groups: factorlab run --seeds, and factorlab compare over groups (mean ± std, n, Welch t-test)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from factorlab.errors import FactorlabError
from factorlab.seeds import describe, group_tables, parse_seeds, verdict, welch_p
from factorlab.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"
TINY = [
    "data.identities=12",
    "data.samples_per_identity=24",
    "data.image_size=32",
    "run.batch_size=16",
    "run.epochs=1",
    "run.max_steps_per_epoch=3",
]


def test_parse_seeds() -> None:
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3-5") == [3, 4, 5]
    assert parse_seeds(" 7 , 0-1") == [7, 0, 1]
    for bad in ("0,x", "", "0,0", "5-3"):
        with pytest.raises(FactorlabError, match="--seeds"):
            parse_seeds(bad)
    assert len(parse_seeds("0-999")) == 1000
    for huge in ("0-1000", "5,0-999", "0-1000000000000000000000"):  # refused before the list is built
        with pytest.raises(FactorlabError, match="a group runs at most 1000"):
            parse_seeds(huge)


def test_describe_is_the_mean_and_sample_std() -> None:
    stat = describe([0.70, 0.72, 0.74])
    assert stat.n == 3 and stat.mean == pytest.approx(0.72) and stat.std == pytest.approx(0.02)
    assert stat.format(percent=True) == "72.00% ± 2.00 (n=3)"
    one = describe([0.5, None, float("nan")])
    assert one.n == 1 and math.isnan(one.std) and one.format(percent=True) == "50.00% (n=1)"


def test_welch_marks_noise_and_real_differences() -> None:
    noisy_a, noisy_b = [0.712, 0.729, 0.698], [0.726, 0.705, 0.731]
    assert verdict(welch_p(noisy_a, noisy_b)) == "within noise"
    assert verdict(welch_p([0.60, 0.61, 0.605], [0.70, 0.71, 0.705])) == "differs"
    assert verdict(welch_p([0.5], [0.6, 0.7])) == "n too small"
    assert welch_p([0.125] * 3, [0.125] * 3) == 1.0


def test_a_seed_group_trains_and_compare_prints_mean_std_and_n(tmp_path: Path) -> None:
    groups = []
    for extra in ([], ["loss.beta_adv=0"]):
        result = run_cli("run", str(QUICKSTART), *TINY, *extra, "--seeds", "0,1,2", "--out", str(tmp_path))
        assert result.returncode == 0, result.stderr[-2000:]
        groups.append(Path(result.stdout.strip().splitlines()[-1].split("group folder: ")[1]))
    group = groups[0]
    info = json.loads((group / "group.json").read_text())
    assert info["seeds"] == [0, 1, 2] and info["finished"]
    seeds = []
    for seed in (0, 1, 2):
        summary = json.loads((group / f"seed-{seed}" / "summary.json").read_text())
        seeds.append(summary["recipe"]["run"]["seed"])
    assert seeds == [0, 1, 2]

    compared = run_cli("compare", *map(str, groups), "--out", str(tmp_path / "table.md"))
    assert compared.returncode == 0, compared.stderr[-2000:]
    text = (tmp_path / "table.md").read_text()
    # Tables 1-2 and every metric of summary.json, each as mean ± std (n=3)
    assert re.search(r"\d+\.\d\d% ± \d+\.\d\d \(n=3\)", text)
    summary_keys = json.loads((group / "seed-0" / "summary.json").read_text())["splits"]["test"]
    for key in summary_keys:
        assert f"| {key} |" in text
    assert "quickstart loss.beta_adv=0" in text  # the group is named by what tells it apart
    assert re.search(r"p=\d\.\d{3} (within noise|differs)", text)
    assert "n=3" in compared.stdout
    from factorlab.seeds import load_group

    read_once = [load_group(g) for g in groups]  # what compare builds its tables from
    labels = [g.label for g in read_once]
    for _ in range(2):  # building the tables twice names the groups alike and leaves the groups as they were
        loaded = group_tables(read_once)
        assert [(t.headers, t.rows) for t in loaded] == [(t.headers, t.rows) for t in group_tables(groups)]
        assert [g.label for g in read_once] == labels


def test_compare_of_an_unfinished_group_says_which_run(tmp_path: Path) -> None:
    group = tmp_path / "g"
    (group / "seed-0").mkdir(parents=True)
    (group / "seed-0" / "recipe.toml").write_text("")
    (group / "group.json").write_text(json.dumps({"name": "g", "runs": {"0": "seed-0"}, "overrides": []}))
    with pytest.raises(FactorlabError, match="seed-0 have no summary.json"):
        group_tables([group])
    result = run_cli("compare", str(group))
    assert result.returncode == 2 and "seed-0" in result.stderr


def test_resume_and_seeds_do_not_mix(tmp_path: Path) -> None:
    result = run_cli("run", "--resume", str(tmp_path), "--seeds", "0,1")
    assert result.returncode == 2 and "--seeds" in result.stderr


def test_bad_seeds_exit_2_before_training(tmp_path: Path) -> None:
    result = run_cli("run", str(QUICKSTART), *TINY, "--seeds", "0,a", "--out", str(tmp_path))
    assert result.returncode == 2 and "'a' is not a seed" in result.stderr
    assert not any(tmp_path.iterdir())


def _summary(head: float, adversary: float | None) -> dict:
    recipe = {"heads": [{"factor": "expression", "code": "exp"}], "loss": {"beta_rec": 0.0}, "adversaries": []}
    test = {"head/expression/exp/accuracy": head}
    if adversary is not None:
        recipe["adversaries"] = [{"factor": "expression", "code": "nonexp"}]
        test["adversary/expression/nonexp/accuracy"] = adversary
    return {"recipe": recipe, "splits": {"test": test}}


def test_paper_table_compares_only_what_both_groups_have() -> None:
    from factorlab.seeds import Group, paper_table

    baseline = Group(Path("b"), "baseline", [_summary(h, None) for h in (0.70, 0.72, 0.71)])
    proposed = Group(Path("p"), "proposed", [_summary(h, a) for h, a in ((0.60, 0.12), (0.61, 0.13), (0.62, 0.12))])
    rows = paper_table([baseline, proposed]).rows
    assert rows[0][2] == "71.00% ± 1.00 (n=3)" and rows[0][3] == "–" and rows[0][4] == "–"
    assert rows[1][3].endswith("differs") and rows[1][4] == "12.33% ± 0.58 (n=3)"
    assert rows[1][5] == "–"  # the baseline has no adversary to compare with


def test_overrides_may_follow_the_seeds_option() -> None:
    from factorlab.cli import build_parser

    args = build_parser().parse_args(["run", "recipes/quickstart.toml", "--seeds", "0,1,2", "run.epochs=1", "a.b=2"])
    assert args.recipe == "recipes/quickstart.toml" and args.overrides == ["run.epochs=1", "a.b=2"]
    assert args.seeds is not None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate", "r.toml", "--print", "run.epochs=2"], {"recipe": "r.toml", "overrides": ["run.epochs=2"]}),
        (["data", "preview", "synthfaces", "--out", "g.png", "difficulty=0.5"], {"options": ["difficulty=0.5"]}),
        (["prepare", "csvfaces", "--root", "r", "align=none"], {"overrides": ["align=none"]}),
        (["swap", "--run", "R", "test:1", "--out", "s.png", "test:2"], {"images": ["test:1", "test:2"]}),
        (["runs", "a", "--limit", "3", "b"], {"folders": [Path("a"), Path("b")]}),
    ],
)
def test_every_command_takes_options_between_its_positionals(argv: list[str], expected: dict) -> None:
    from factorlab.cli import build_parser

    args = build_parser().parse_args(argv)
    for key, value in expected.items():
        assert getattr(args, key) == value


def test_label_groups_names_groups_by_what_tells_them_apart(tmp_path: Path) -> None:
    from factorlab.seeds import Group, label_groups

    base = Group(tmp_path / "a", "quickstart", [], ["run.epochs=2"])
    varied = Group(tmp_path / "b", "quickstart", [], ["run.epochs=2", "loss.beta_adv=0"])
    twin = Group(tmp_path / "c", "quickstart", [], ["run.epochs=2", "loss.beta_adv=0"])
    assert [g.label for g in label_groups([base, varied])] == ["quickstart", "quickstart loss.beta_adv=0"]
    assert [g.label for g in label_groups([base, varied, twin])] == ["quickstart", "b", "c"]  # still alike: folders
    assert [g.label for g in (base, varied, twin)] == ["quickstart"] * 3  # the groups given are untouched
