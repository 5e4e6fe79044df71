"""Seed groups: one recipe trained once per seed into one folder, and statistics over the seeds.

`factorlab run RECIPE --seeds 0,1,2` writes

    runs/<name>-<stamp>/group.json      what was run: recipe, overrides, seeds, one run folder per seed
    runs/<name>-<stamp>/seed-0/...      an ordinary run folder (recipe.toml, metrics, checkpoints, summary.json)
    runs/<name>-<stamp>/seed-1/...

Only `run.seed` differs between the runs (model initialisation, data order, augmentation); the data
set, its splits and everything else are the recipe's. `factorlab compare GROUP...` reports every metric
of summary.json as mean +- sample standard deviation (ddof = 1) over the seeds, with n, and tests each
group against the first with Welch's unequal-variance t-test (`scipy.stats.ttest_ind(equal_var=False)`,
two-sided): a difference with p >= 0.05 is marked "within noise". With 3 seeds only large, consistent
differences come out significant; "within noise" means the seeds cannot tell, not that there is no effect.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from factorlab import report
from factorlab.errors import FactorlabError
from factorlab.files import atomic_write_text
from factorlab.leakage import adversary_code, main_head
from factorlab.runfolders import new_stamped_dir
from factorlab.stats import (
    ALPHA as ALPHA,  # re-exported: the statistics live in factorlab.stats
    Stat as Stat,
    describe,
    verdict,
    welch_p,
)

GROUP_FILE = "group.json"


# ---------------------------------------------------------------------------------------------
# Running a group


#: The most seeds one group runs: a range such as 0-5000000 is refused before it is built or trained.
MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) -> [0, 1, 2]; an error names the bad part."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError
                if high - low + 1 + len(seeds) > MAX_SEEDS:
                    raise FactorlabError(
                        f"--seeds {text!r}: {part!r} gives {high - low + 1} seeds; a group runs at most {MAX_SEEDS} "
                        "(each seed is a whole training run)"
                    )
                seeds.extend(range(low, high + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise FactorlabError(
                f"--seeds {text!r}: {part!r} is not a seed; give integers separated by commas (--seeds 0,1,2) "
                "or a range (--seeds 0-4)"
            ) from None
    if len(set(seeds)) != len(seeds):
        raise FactorlabError(f"--seeds {text!r} repeats a seed; each seed runs once")
    if len(seeds) > MAX_SEEDS:
        raise FactorlabError(f"--seeds {text!r} gives {len(seeds)} seeds; a group runs at most {MAX_SEEDS}")
    return seeds


def seed_dir(group: Path, seed: int) -> Path:
    return Path(group) / f"seed-{seed}"


def new_group_dir(output: Path, name: str) -> Path:
    """<output>/<name>-<timestamp>[-k]: created now, never reused."""
    return new_stamped_dir(output, name, "the seed-group folder")


def run_group(
    recipe_path: str | Path,
    overrides: Sequence[str],
    seeds: Sequence[int],
    *,
    train: Callable[[Any, Path], Path],
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Train `recipe_path` (with `overrides`) once per seed into one group folder and return the folder.

    `train(recipe, rundir)` trains one run into `rundir` (the CLI passes `factorlab.train.run_recipe`;
    passing it keeps this module free of the training loop, which imports it through the leakage tables).

    Every recipe is loaded and validated before the first run starts, so a bad override fails at once.
    """
    from factorlab.recipe import load_recipe

    if not seeds:
        raise FactorlabError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    recipes = {seed: load_recipe(recipe_path, [*overrides, f"run.seed={seed}"]) for seed in seeds}
    first = recipes[seeds[0]]
    group = new_group_dir(first.run.output, first.run.name)
    info = {
        "name": first.run.name,
        "recipe": str(recipe_path),
        "overrides": list(overrides),
        "seeds": list(seeds),
        "runs": {str(seed): seed_dir(group, seed).name for seed in seeds},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "finished": None,
    }
    atomic_write_text(group / GROUP_FILE, json.dumps(info, indent=2))
    for k, seed in enumerate(seeds):
        log(f"seed {seed} ({k + 1} of {len(seeds)}) -> {seed_dir(group, seed)}")
        rundir = seed_dir(group, seed)
        rundir.mkdir()
        train(recipes[seed], rundir)
    info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_text(group / GROUP_FILE, json.dumps(info, indent=2))
    return group


# ---------------------------------------------------------------------------------------------
# Reading groups


def is_group(path: Path) -> bool:
    return (Path(path) / GROUP_FILE).is_file()


@dataclass
class Group:
    """The finished runs of a seed group (or one plain run, a group of n = 1)."""

    path: Path
    label: str
    summaries: list[dict]
    overrides: list[str] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)  # the run folder of each summary

    @property
    def n(self) -> int:
        return len(self.summaries)


def load_group(path: Path) -> Group:
    """A group folder's finished runs, or a plain run folder as a group of one."""
    from factorlab.rundir import load_summary

    path = Path(path)
    if not is_group(path):
        return Group(path, path.name, [load_summary(path)], runs=[path])
    try:
        info = json.loads((path / GROUP_FILE).read_text(encoding="utf-8"))
        names = list(info["runs"].values())
        if not all(isinstance(name, str) and Path(name).name == name for name in names):
            raise ValueError("each run must be a folder name inside the group")
        runs = [path / name for name in names]
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError, ValueError) as exc:
        raise FactorlabError(
            f"{path / GROUP_FILE} is not a group file written by factorlab run --seeds ({exc})"
        ) from None
    unfinished = [r.name for r in runs if not (r / "summary.json").is_file()]
    if unfinished:
        raise FactorlabError(
            f"group {path}: run(s) {', '.join(unfinished)} have no summary.json (not finished); resume each with "
            f"factorlab run --resume {path}/SEED-DIR, or compare the finished run folders one by one"
        )
    overrides = [o for o in info.get("overrides") or [] if not o.startswith("run.output=")]
    return Group(path, str(info.get("name", path.name)), [load_summary(r) for r in runs], overrides, runs)


def metric_values(group: Group, split: str, key: str) -> list[float]:
    return [s.get("splits", {}).get(split, {}).get(key) for s in group.summaries]


def _is_fraction(key: str) -> bool:
    return key.endswith("/accuracy")


def metrics_table(groups: Sequence[Group], split: str = "test") -> report.Table:
    """Every metric of the groups' summaries: mean ± std (n) per group, and each group against the first."""
    keys: list[str] = []
    for group in groups:
        for summary in group.summaries:
            keys.extend(k for k in summary.get("splits", {}).get(split, {}) if k not in keys)
    headers = ["metric", *[g.label for g in groups]]
    headers += [f"{g.label} vs {groups[0].label}" for g in groups[1:]]
    rows = []
    for key in keys:
        stats = [describe(metric_values(g, split, key)) for g in groups]
        row: list[Any] = [key, *[s.format(_is_fraction(key)) for s in stats]]
        row.extend(_versus(stats[0], s) for s in stats[1:])
        rows.append(row)
    caption = f"Every metric over seeds ({split} split): mean ± sample std (n); Welch t-test against the first group"
    return report.Table(headers, rows, caption)


def _adversary_key(summary: Mapping, factor: str) -> str | None:
    code = adversary_code(summary, factor)
    return f"adversary/{factor}/{code}/accuracy" if code else None


def _versus(reference: Stat, stat: Stat) -> str:
    """'p=0.123 within noise' for `stat` against `reference`; '–' when either has no values."""
    if not reference.n or not stat.n:
        return "–"
    p = welch_p(reference.values, stat.values)
    return verdict(p) if math.isnan(p) else f"p={p:.3f} {verdict(p)}"


def paper_table(groups: Sequence[Group], split: str = "test") -> report.Table:
    """Tables 1 and 2 of the paper over seeds: C_exp and C_adv_exp accuracy, mean ± std (n), and p vs the first."""
    factor, code = main_head(groups[0].summaries[0])
    head_key = f"head/{factor}/{code}/accuracy"
    first_head = describe(metric_values(groups[0], split, head_key))
    adv0 = _adversary_key(groups[0].summaries[0], factor)
    first_adv = describe(metric_values(groups[0], split, adv0)) if adv0 else describe([])
    rows = []
    for group in groups:
        summary = group.summaries[0]
        beta = report.lookup(summary, "recipe.loss.beta_rec")
        head = describe(metric_values(group, split, head_key))
        adv_key = _adversary_key(summary, factor)
        adv = describe(metric_values(group, split, adv_key)) if adv_key else describe([])
        first = group is groups[0]
        rows.append(
            [
                group.label,
                beta,
                head.format(percent=True),
                "–" if first else _versus(first_head, head),
                adv.format(percent=True),
                "–" if first else _versus(first_adv, adv),
            ]
        )
    headers = ["run", "beta_rec", f"C_{code}", f"C_{code} vs first", f"C_adv_{code}", f"C_adv_{code} vs first"]
    caption = f"Tables 1-2 over seeds ({split} split): accuracy mean ± sample std (n); Welch t-test against the first"
    return report.Table(headers, rows, caption)


def label_groups(groups: Sequence[Group]) -> list[Group]:
    """Copies of the groups, each labelled by its name and the overrides that tell it apart from the others.

    Groups still alike after that are named by their folder. The groups given are left as they were, so
    every table built from them (the paper table, the leakage table) names the same group alike.
    """
    common = set.intersection(*(set(g.overrides) for g in groups)) if groups else set()
    named = [replace(g, label=" ".join([g.label, *(o for o in g.overrides if o not in common)])) for g in groups]
    labels = [g.label for g in named]
    return [replace(g, label=g.path.name) if labels.count(g.label) > 1 else g for g in named]


def group_tables(paths: Sequence[Path | Group], split: str = "test") -> list[report.Table]:
    """The paper table and the every-metric table of seed groups (plain run folders count as n = 1).

    Takes folders or groups already loaded (`load_group`); the tables name each group as `label_groups` does.
    """
    groups = [p if isinstance(p, Group) else load_group(Path(p)) for p in paths]
    missing = [str(g.path) for g in groups if any(split not in s.get("splits", {}) for s in g.summaries)]
    if missing:
        raise FactorlabError(f"{', '.join(missing)}: no {split!r} split in summary.json; use --split val")
    groups = label_groups(groups)
    return [paper_table(groups, split), metrics_table(groups, split)]
