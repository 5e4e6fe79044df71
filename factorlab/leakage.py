"""Leakage as the headline: what a fresh probe reads from a code that an adversary says is clean.

For every adversary of a recipe, (factor, code) is a pair that must NOT hold the factor. Its leakage is
the accuracy of a fresh probe trained on the frozen train-split codes and scored on held-out codes,
next to the in-training adversary's accuracy, chance (the majority-class rate) and the head that reads
the factor from its own code. The normalised leakage

    (probe - chance) / (head - chance)

is 0 when the probe is at chance and 1 when the code tells the factor as well as the head does (undefined
when the head itself is less than 2 points above chance).

- `quick_leakage`: a cheap linear probe per adversary (seconds) for the end-of-run summary of `factorlab run`;
- `leakage_rows`: the headline table of `factorlab eval` (linear and MLP probes of the `probes` metric);
- `leakage_table` / `group_leakage_table`: the same for `factorlab compare`, one run or mean ± std over seeds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from factorlab import report
from factorlab.errors import FactorlabError

#: summary.json key of the cheap linear probe of `factorlab run`, per adversary (factor, code)
QUICK_KEY = "probe/{factor}/{code}/linear/accuracy"
QUICK_SAMPLES = 2000
QUICK_STEPS = 200


#: the normalised leakage needs a head this far above chance; closer, the ratio divides by noise
MIN_HEAD_GAP = 0.02


def normalised(probe: float | None, chance: float | None, head: float | None) -> float | None:
    """(probe - chance) / (head - chance); None when a value is missing or the head is less than 2 points
    (MIN_HEAD_GAP) above chance, where the ratio is meaningless."""
    if probe is None or chance is None or head is None or head - chance < MIN_HEAD_GAP:
        return None
    return (probe - chance) / (head - chance)


def adversary_pairs(recipe_dict: Mapping) -> list[tuple[str, str]]:
    """(factor, code) of every adversary of a recipe (as `Recipe.to_dict()` or summary.json's `recipe` holds it)."""
    return list(dict.fromkeys((a["factor"], a["code"]) for a in recipe_dict.get("adversaries") or []))


def _probe(probes: Sequence[Mapping], factor: str, code: str, kind: str) -> Mapping | None:
    for row in probes:
        if (row["factor"], row["code"], row["probe"]) == (factor, code, kind):
            return row
    return None


def leakage_rows(result: Mapping, pairs: Sequence[tuple[str, str]]) -> list[dict]:
    """One row per adversary (factor, code) of an evaluation: adversary, probes, chance, head, normalised leakage."""
    rows = []
    probes = result.get("probes") or []
    for factor, code in pairs:
        adversary = (result.get("adversaries") or {}).get(f"{factor}/{code}")
        owner = (result.get("owners") or {}).get(factor)
        head = (result.get("heads") or {}).get(f"{factor}/{owner}") if owner else None
        row: dict[str, Any] = {
            "factor": factor,
            "code": code,
            "adversary": adversary["accuracy"] if adversary else None,
            "head_code": owner,
            "head": head["accuracy"] if head else None,
            "chance": None,
        }
        for kind in ("linear", "mlp"):
            found = _probe(probes, factor, code, kind)
            row[f"{kind}_probe"] = found["accuracy"] if found else None
            if found:
                row["chance"] = found["chance"]
        if row["chance"] is None and adversary:
            row["chance"] = adversary["chance"]
        for kind in ("linear", "mlp"):
            row[f"{kind}_normalised"] = normalised(row[f"{kind}_probe"], row["chance"], row["head"])
        rows.append(row)
    return rows


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


HEADERS = ["factor", "code", "adversary", "linear probe", "MLP probe", "chance", "head", "normalised (lin / MLP)"]


def eval_table(rows: Sequence[Mapping], split: str, erased: Sequence[str] = ()) -> report.Table:
    """The headline table of `factorlab eval`: leakage of every adversary's (factor, code)."""
    table_rows = [
        [r["factor"], r["code"], report.pct(r["adversary"]), report.pct(r["linear_probe"]), report.pct(r["mlp_probe"]),
         report.pct(r["chance"]), f"{report.pct(r['head'])} ({r['head_code'] or '–'})",
         f"{_ratio(r['linear_normalised'])} / {_ratio(r['mlp_normalised'])}"]
        for r in rows
    ]  # fmt: skip
    note = f"; codes erased with LEACE: {', '.join(erased)}" if erased else ""
    caption = (
        f"Leakage ({split} split): what fresh probes read from codes the adversaries must keep clean{note}. "
        "normalised = (probe - chance) / (head - chance): 0 = nothing leaks, 1 = as readable as the head's code"
    )
    return report.Table(HEADERS, table_rows, caption)


def read_eval(rundir: Path, name: str = "eval.json") -> dict | None:
    """A run's eval.json (None when the run was not evaluated); a damaged file is a clear error."""
    path = Path(rundir) / name
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FactorlabError(f"{path} is not UTF-8 text: it is damaged; rerun factorlab eval {rundir}") from None
    except json.JSONDecodeError as err:
        raise FactorlabError(f"{path}, line {err.lineno}: not valid JSON ({err.msg}); rerun factorlab eval") from None
    if not (isinstance(result, dict) and all(isinstance(result.get(key, []), list) for key in ("probes", "leakage"))):
        raise FactorlabError(f"{path} is not an evaluation written by factorlab eval; rerun factorlab eval {rundir}")
    return result


def main_head(summary: Mapping) -> tuple[str, str]:
    """(factor, code) of a run's first head (every recipe has one), from the recipe saved in its summary."""
    heads = summary.get("recipe", {}).get("heads") or []
    if not heads:
        raise FactorlabError(f"{summary.get('rundir', 'a run')}: its summary.json holds no recipe with a head")
    return heads[0]["factor"], heads[0]["code"]


def adversary_code(summary: Mapping, factor: str) -> str | None:
    """The code of the run's (first) adversary on `factor`, if it has one."""
    for adversary in summary.get("recipe", {}).get("adversaries") or []:
        if adversary["factor"] == factor:
            return adversary["code"]
    return None


def run_rows(summary: Mapping, evaluation: Mapping | None) -> list[dict]:
    """Leakage rows of one run: from its eval.json when evaluated, else the quick linear probe of summary.json."""
    pairs = adversary_pairs(summary.get("recipe", {}))
    if evaluation and evaluation.get("leakage"):
        return list(evaluation["leakage"])
    split = summary.get("splits", {}).get("test", {})
    rows = []
    for factor, code in pairs:
        head_code = next((h["code"] for h in summary.get("recipe", {}).get("heads", []) if h["factor"] == factor), None)
        rows.append(
            {
                "factor": factor,
                "code": code,
                "adversary": split.get(f"adversary/{factor}/{code}/accuracy"),
                "linear_probe": split.get(QUICK_KEY.format(factor=factor, code=code)),
                "mlp_probe": None,
                "chance": None,
                "head": split.get(f"head/{factor}/{head_code}/accuracy") if head_code else None,
                "head_code": head_code,
                "linear_normalised": None,
                "mlp_normalised": None,
            }
        )
    return rows


def leakage_table(labels: Sequence[str], summaries: Sequence[Mapping], evaluations: Sequence[Mapping | None]):
    """`factorlab compare` of plain runs: each run's leakage rows (eval.json, else the quick probe of the run)."""
    rows = []
    for label, summary, ev in zip(labels, summaries, evaluations, strict=True):
        for r in run_rows(summary, ev):
            rows.append([label, r["factor"], r["code"], report.pct(r["adversary"]), report.pct(r["linear_probe"]),
                         report.pct(r["mlp_probe"]), report.pct(r["chance"]), report.pct(r["head"]),
                         f"{_ratio(r['linear_normalised'])} / {_ratio(r['mlp_normalised'])}",
                         "eval.json" if ev and ev.get("leakage") else "run (linear probe only)"])  # fmt: skip
    if not rows:
        return None
    headers = ["run", *HEADERS[:6], "head", "normalised (lin / MLP)", "from"]
    caption = (
        "Leakage: fresh probes on the codes the adversaries must keep clean, next to the adversary "
        "(test split; normalised = (probe - chance) / (head - chance); `factorlab eval RUN` adds the MLP probe)"
    )
    return report.Table(headers, rows, caption)


def group_leakage_table(groups: Sequence) -> report.Table | None:
    """`factorlab compare` of seed groups (`seeds.Group`s): mean ± std (n) over seeds of every leakage figure."""
    from factorlab.stats import describe

    fields = ["adversary", "linear_probe", "mlp_probe", "chance", "head", "linear_normalised", "mlp_normalised"]
    rows = []
    for group in groups:
        per_pair: dict[tuple[str, str], dict[str, list[float]]] = {}
        for summary, rundir in zip(group.summaries, group.runs, strict=True):
            for r in run_rows(summary, read_eval(rundir)):
                values = per_pair.setdefault((r["factor"], r["code"]), {f: [] for f in fields})
                for f in fields:
                    values[f].append(r.get(f))  # describe() keeps the finite values
        for (factor, code), values in per_pair.items():
            stats = {f: describe(values[f]) for f in fields}
            rows.append(
                [group.label, factor, code]
                + [stats[f].format(percent=True) for f in fields[:5]]
                + [stats[f].format() for f in fields[5:]]
            )
    if not rows:
        return None
    headers = ["run", "factor", "code", "adversary", "linear probe", "MLP probe", "chance", "head",
               "normalised linear", "normalised MLP"]  # fmt: skip
    caption = (
        "Leakage over seeds (test split): mean ± sample std (n) from each run's eval.json (`factorlab eval`), "
        "else the linear probe of `factorlab run`; normalised = (probe - chance) / (head - chance)"
    )
    return report.Table(headers, rows, caption)
