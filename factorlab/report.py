"""Run reports (report.md + self-contained report.html) and the cross-run comparison table.

A report is a list of `Section`s, each with text, `Table`s and `Image`s (PNG files in the run folder).
report.md links the images by relative path; report.html inlines them as base64 data URIs, so the
one file can be mailed or archived and still shows everything (it references no URL at all).
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factorlab.errors import FactorlabError
from factorlab.files import atomic_write_text


@dataclass
class Table:
    """A table: header names and rows of cells (numbers are formatted, None and nan show as '–')."""

    headers: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Image:
    """A PNG file (absolute, or relative to the run folder) with a caption."""

    path: Path
    caption: str = ""


@dataclass
class Section:
    """A titled part of a report: paragraphs of text (blank-line separated), then tables, then images."""

    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# formatting


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage ('60.53%'); None and nan as '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.{digits}f}%"


def format_cell(value: Any) -> str:
    """How a table shows a value: floats with 4 significant digits, None and nan as '–'."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def cell(value: Any) -> str:
        return format_cell(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# report.md and report.html


def _image_path(rundir: Path, image: Image) -> Path:
    path = Path(image.path)
    path = path if path.is_absolute() else rundir / path
    if not path.is_file():
        raise FactorlabError(f"report image {path} does not exist: write the plot before the report")
    return path


def _markdown(rundir: Path, title: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        if section.text.strip():
            parts.append(section.text.strip())
        for table in section.tables:
            if table.caption:
                parts.append(f"**{table.caption}**")
            parts.append(markdown_table(table.headers, table.rows))
        for image in section.images:
            relative = Path(os.path.relpath(_image_path(rundir, image), rundir)).as_posix()
            parts.append(f"![{image.caption}]({relative})" + (f"\n\n*{image.caption}*" if image.caption else ""))
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    # `code` spans are the only inline markup our reports use
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1em 0; } figcaption { font-style: italic; color: #555; }
img { max-width: 100%; } code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _html(rundir: Path, title: str, sections: Sequence[Section]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for paragraph in re.split(r"\n\s*\n", section.text.strip()):
            if paragraph.strip():
                out.append(f"<p>{_inline_html(paragraph)}</p>")
        for table in section.tables:
            out.append("<table>")
            if table.caption:
                out.append(f"<caption>{_inline_html(table.caption)}</caption>")
            out.append("<tr>" + "".join(f"<th>{html.escape(format_cell(h))}</th>" for h in table.headers) + "</tr>")
            for row in table.rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row) + "</tr>")
            out.append("</table>")
        for image in section.images:
            data = base64.b64encode(_image_path(rundir, image).read_bytes()).decode("ascii")
            caption = f"<figcaption>{_inline_html(image.caption)}</figcaption>" if image.caption else ""
            alt = html.escape(image.caption, quote=True)
            out.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{caption}</figure>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(rundir: Path, sections: Sequence[Section], *, title: str = "factorlab report") -> tuple[Path, Path]:
    """Write report.md (relative image links) and self-contained report.html (inlined images) into `rundir`."""
    rundir = Path(rundir)
    rundir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = rundir / "report.md", rundir / "report.html"
    atomic_write_text(md_path, _markdown(rundir, title, sections))
    atomic_write_text(html_path, _html(rundir, title, sections))
    return md_path, html_path


# ---------------------------------------------------------------------------------------------
# tables from metric results (metrics.py)


def probe_table(results: Sequence[Mapping]) -> Table:
    """Leakage probes: one row per (factor, code, probe) with accuracy, chance and the owner code's accuracy."""
    rows = [
        [
            r["factor"],
            r["code"] + (" (owner)" if r["code"] == r.get("owner") else ""),
            r["probe"],
            pct(r["accuracy"]),
            pct(r["chance"]),
            pct(r["owner_accuracy"]),
            r["protocol"],
        ]
        for r in results
    ]
    headers = ["factor", "code", "probe", "accuracy", "chance", "on owner code", "protocol"]
    return Table(headers, rows, "Post-hoc leakage probes (fresh classifiers on frozen codes)")


def similarity_tables(result: Mapping) -> list[Table]:
    """The generalised paper Table 3: mean cosine of same-factor vs reverse pairs, and example pairs."""
    factor, others = result["factor"], ", ".join(result["others"]) or "(none)"
    summary = Table(
        ["pairs", "mean cosine", "std", "n pairs"],
        [
            [f"same {factor}, different {others}", result["same_mean"], result["same_std"], result["same_pairs"]],
            [
                f"different {factor}, same {others}",
                result["reverse_mean"],
                result["reverse_std"],
                result["reverse_pairs"],
            ],
        ],
        f"Cosine similarity of code '{result['code']}'",
    )
    rows = []
    for kind in ("same", "reverse"):
        for ex in result[f"{kind}_examples"]:
            labels_i = ", ".join(f"{k}={v}" for k, v in ex["labels_i"].items())
            labels_j = ", ".join(f"{k}={v}" for k, v in ex["labels_j"].items())
            rows.append([kind, ex["i"], labels_i, ex["j"], labels_j, ex["cosine"]])
    examples = Table(["pair", "i", "labels of i", "j", "labels of j", "cosine"], rows, "Example pairs")
    return [summary, examples]


def disentanglement_table(mig_result: Mapping | None, dci_result: Mapping | None) -> Table:
    """MIG and DCI scores over latent dims and over codes (either may be None: a metric that did not run)."""
    rows = [["MIG (latent dims)", mig_result["mig"]]] if mig_result else []
    if dci_result:
        rows += [
            ["DCI disentanglement (latent dims)", dci_result["disentanglement"]],
            ["DCI completeness (latent dims)", dci_result["completeness"]],
            ["DCI informativeness (test accuracy)", dci_result["informativeness"]],
            ["DCI disentanglement (codes)", dci_result["code_disentanglement"]],
            ["DCI completeness (codes)", dci_result["code_completeness"]],
        ]
    return Table(["metric", "value"], rows, "Disentanglement metrics (1 is best)")


def code_factor_table(matrix: Mapping[str, Mapping[str, float]], caption: str) -> Table:
    """A codes x factors table from {code: {factor: value}}."""
    factors = list(next(iter(matrix.values()), {}))
    rows = [[code, *(values.get(f) for f in factors)] for code, values in matrix.items()]
    return Table(["code", *factors], rows, caption)


# ---------------------------------------------------------------------------------------------
# comparing runs (paper Tables 1 and 2)

Column = tuple[str, str | Callable[[Mapping], Any]]


def lookup(summary: Mapping, key: str) -> Any:
    """The value at a dotted path ('splits.test.head/expression/exp/accuracy'); keys may contain dots too."""
    node: Any = summary
    parts = key.split(".")
    while parts:
        if not isinstance(node, Mapping):
            return None
        # the longest prefix that is a key wins, so a key with a dot in its name still resolves
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in node:
                node, parts = node[".".join(parts[:n])], parts[n:]
                break
        else:
            return None
    return node


def compare_table(summaries: Sequence[Mapping], columns: Sequence[Column]) -> str:
    """One Markdown table across runs: a row per summary.json, a column per (header, dotted key or function).

    Values of keys ending in 'accuracy' show as percentages, as in the paper's tables.
    """
    rows = []
    for summary in summaries:
        row = []
        for _, key in columns:
            value = key(summary) if callable(key) else lookup(summary, key)
            is_accuracy = isinstance(key, str) and key.endswith("accuracy") and isinstance(value, int | float)
            row.append(pct(value) if is_accuracy else value)
        rows.append(row)
    return markdown_table([header for header, _ in columns], rows)
