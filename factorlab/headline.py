"""The opening paragraph of a report: what a run shows, in words built from its numbers.

It states, for the evaluated split: each head's accuracy against chance; for each adversary, its accuracy
against what a fresh probe still reads from the same code; and the strongest leak among all probed
(factor, code) pairs, measured from chance (0) to the accuracy on the code meant to hold the factor (1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from factorlab.leakage import normalised  # (probe - chance) / (ceiling - chance), None when undefined
from factorlab.report import pct

# a probe this close to chance (fraction of the way from chance to the ceiling) reads nothing worth a word
NEGLIGIBLE = 0.1


def _times(accuracy: float, chance: float) -> str:
    return f"{accuracy / chance:.1f}x chance" if chance > 0 else "above chance"


def _leak_words(value: float | None, owner: str | None) -> str:
    if value is None:
        return ""
    if value < NEGLIGIBLE:
        return f"less than {NEGLIGIBLE:.0%} of the way from chance to the same probe on code `{owner}`"
    where = f"{value:.2f} of the way from chance to the same probe on code `{owner}`"
    return f"{where}: {'some' if value < 0.5 else 'most'} of it is still in the code"


def _unscorable(scores: Mapping) -> bool:
    """True when none of the classifier's classes occurs in the split (all per-class accuracies undefined): e.g.
    an identity classifier on a split of unseen people, whose 0% says nothing."""
    per_class = scores.get("per_class_accuracy") or {}
    return bool(per_class) and all(value is None or math.isnan(value) for value in per_class.values())


def _unscored(kind: str, factor: str, split: str) -> str:
    return (
        f"The {kind} cannot be scored on `{split}`: none of the {factor} classes it learnt occurs there "
        f"(held-out {factor}s; the probes below and a verification metric measure such a factor)."
    )


def what_this_run_shows(result: Mapping) -> str:
    """A paragraph (Markdown, `code` spans only) from an `evaluate_run` result."""
    split = result["split"]
    sentences = []
    for name, scores in (result.get("heads") or {}).items():
        factor, code = name.split("/", 1)
        if _unscorable(scores):
            sentences.append(_unscored(f"{factor} head on code `{code}`", factor, split))
            continue
        sentences.append(
            f"The {factor} head reads {factor} from code `{code}` at {pct(scores['accuracy'], 1)} on `{split}` "
            f"(chance {pct(scores['chance'], 1)}, {_times(scores['accuracy'], scores['chance'])})."
        )
    probes = result.get("probes") or []
    for name, scores in (result.get("adversaries") or {}).items():
        factor, code = name.split("/", 1)
        found = [r for r in probes if r["factor"] == factor and r["code"] == code]
        best = max(found, key=lambda r: r["accuracy"]) if found else None
        words = ""
        if best is not None:
            words = _leak_words(
                normalised(best["accuracy"], best["chance"], best.get("owner_accuracy")), best.get("owner")
            )
        if _unscorable(scores):
            text = _unscored(f"adversary that keeps {factor} out of code `{code}`", factor, split)
            if best is not None:
                text += f" A fresh {best['probe']} probe reads {pct(best['accuracy'], 1)} from that code"
                text += f", {words}." if words else "."
            sentences.append(text)
            continue
        text = (
            f"The adversary that keeps {factor} out of code `{code}` reaches {pct(scores['accuracy'], 1)} "
            f"(chance {pct(scores['chance'], 1)})"
        )
        if best is not None:
            text += (
                f", while a fresh {best['probe']} probe trained on the frozen code reads {pct(best['accuracy'], 1)}"
                + (f", {words}" if words else "")
                + "."
            )
            if scores["accuracy"] <= scores["chance"] * 1.2 and best["accuracy"] > best["chance"] * 1.2:
                text += " An adversary at chance does not prove the factor is gone."
        else:
            text += "; no probe was run on it (`factorlab eval` without `--no-probes` runs them)."
        sentences.append(text)
    leaks = []
    for r in probes:
        if r["code"] == r.get("owner"):
            continue
        value = normalised(r["accuracy"], r["chance"], r.get("owner_accuracy"))
        if value is not None:
            leaks.append((value, r))
    adversaries = {tuple(name.split("/", 1)) for name in result.get("adversaries") or {}}
    if leaks:
        value, r = max(leaks, key=lambda item: item[0])
        if value >= NEGLIGIBLE and (r["factor"], r["code"]) in adversaries:
            sentences.append(f"That is the strongest leak of all probed (factor, code) pairs ({value:.2f}).")
        elif value >= NEGLIGIBLE:
            sentences.append(
                f"The strongest leak: {r['factor']} in code `{r['code']}`, read by the {r['probe']} probe at "
                f"{pct(r['accuracy'], 1)} against chance {pct(r['chance'], 1)} and {pct(r['owner_accuracy'], 1)} on "
                f"code `{r['owner']}` ({value:.2f} of the way from chance to there)."
            )
        else:
            sentences.append(
                f"No fresh probe reads a factor from another code beyond {NEGLIGIBLE:.0%} of the way from chance to "
                "the same probe on the factor's own code."
            )
    if not sentences:
        return "This run has no head or adversary to summarise."
    return " ".join(sentences)
