"""factorlab eval RUNDIR and factorlab compare RUNDIR...: evaluate a run, compare runs (paper Tables 1 and 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from factorlab import report
from factorlab.commands import args as types
from factorlab.commands.core import output_args
from factorlab.errors import FactorlabError
from factorlab.files import atomic_write_text, check_writable_dir
from factorlab.leakage import adversary_code, main_head, read_eval
from factorlab.progress import make_console

console = make_console()
Handler = Callable[[argparse.Namespace], int]

EVAL_EPILOG = """\
examples:
  factorlab eval runs/synth-expression-20261128-101500             test split, report.md + report.html
  factorlab eval RUNDIR --max-samples 2000 --no-probes             faster: fewer samples, no leakage probes
  factorlab eval RUNDIR --split val --tsne                          val split, with t-SNE projections too
  factorlab eval RUNDIR --similarity-images faces/                  paper Table 3 on faces/<expression>/<image>
  factorlab eval RUNDIR --erase --metrics probes                   LEACE-erase the adversaries' factors, then probe
  factorlab eval RUNDIR --metrics dci mig --metric-option dci.max_train=1000
                                    only DCI and MIG, DCI fitted on 1000 train samples (factorlab ls metrics)
"""

COMPARE_EPILOG = """\
examples:
  factorlab compare runs/synth-expression-* runs/synth-baseline-*  --table 1      paper Table 1 layout
  factorlab compare runs/synth-ablation-* --table 2 --out table2.md               paper Table 2 layout
  factorlab compare runs/synth-baseline-GROUP runs/synth-expression-GROUP          seed groups (run --seeds):
                                    mean ± std (n) of every metric, Welch t-test against the first group
"""


def _rich_table(table: report.Table) -> Table:
    out = Table(title=table.caption or None, title_justify="left")
    for header in table.headers:
        out.add_column(str(header))
    for row in table.rows:
        out.add_row(*(report.format_cell(v) for v in row))
    return out


# ---------------------------------------------------------------------------------------------
# factorlab eval


def eval_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab eval RUNDIR [--split test] [--max-samples N] [--no-probes]"""
    parser.add_argument("rundir", type=Path, help="a finished run folder (the one `factorlab run` printed)")
    parser.add_argument("--split", default="test", choices=["val", "test"], help="split to evaluate (default test)")
    parser.add_argument(
        "--max-samples",
        type=types.count,
        default=5000,
        metavar="N",
        help="at most N samples of each split (default 5000)",
    )
    parser.add_argument("--no-probes", action="store_true", help="skip the post-hoc leakage probes (the slowest part)")
    parser.add_argument(
        "--full", action="store_true",
        help="no samples: every image of both splits, probes and DCI fitted on all of them (slower; default: "
        "--max-samples per split, DCI on 2000)",
    )  # fmt: skip
    output_args(parser)
    parser.add_argument("--tsne", action="store_true", help="also draw t-SNE projections (slower than PCA)")
    parser.add_argument(
        "--checkpoint", choices=["best", "last"],
        help="which checkpoint to load (default: the recipe's run.checkpoint, the one summary.json scores)",
    )  # fmt: skip
    parser.add_argument(
        "--device", type=types.device, default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)"
    )
    parser.add_argument("--seed", type=types.seed, default=0, help="seed of the samples, probes and pairs")
    parser.add_argument(
        "--swap", type=types.count, nargs="?", const=500, default=0, metavar="PAIRS",
        help="also score code swaps against the renderer's true images (SynthFaces runs with a decoder; default 500 pairs)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics", nargs="+", metavar="NAME",
        help="run only these registered metrics (default: the recipe's [eval] metrics, else all; factorlab ls metrics)",
    )  # fmt: skip
    parser.add_argument(
        "--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE",
        help="set one metric option over the recipe's [eval.options.METRIC], e.g. dci.max_train=1000 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--similarity-images", type=Path, metavar="DIR",
        help="only the paper's Table 3 on a folder of face images, DIR/<expression>/[<person>/]<image>: the cosine "
        "of each code between the images; writes similarity.json and similarity.md in the run folder",
    )  # fmt: skip
    parser.add_argument("--align", action="store_true", help="with --similarity-images: crop faces with MTCNN")
    parser.add_argument(
        "--erase", action="store_true",
        help="erase each adversary's factor from its code with LEACE (fitted on the train split) before measuring; "
        "writes into RUNDIR/leace/ (docs/erasure.md)",
    )  # fmt: skip
    parser.epilog = EVAL_EPILOG

    def handle(args: argparse.Namespace) -> int:
        from factorlab.commands.core import set_output_mode
        from factorlab.evaluate import evaluate_run, head_table, similarity_summary_table
        from factorlab.progress import emit, mode

        set_output_mode(args)

        if args.similarity_images is not None:
            from factorlab.similarity import similarity_on_images, similarity_tables, write_similarity

            found = similarity_on_images(
                args.rundir, args.similarity_images, checkpoint=args.checkpoint, align=args.align
            )
            tables = similarity_tables(found)
            for table in tables:
                console.print(_rich_table(table))
            written = write_similarity(args.rundir, found, tables)
            console.print(f"wrote {written[0]} and {written[1]}")
            return 0

        if args.swap:  # a run that cannot be swap-scored fails now, not after the evaluation
            from factorlab.recipe import load_recipe
            from factorlab.resources import check_memory
            from factorlab.rundir import check_run_dir
            from factorlab.swap import check_decoder, score_bytes

            recipe = load_recipe(check_run_dir(args.rundir) / "recipe.toml")
            check_decoder(recipe, args.rundir)
            check_memory(
                score_bytes(args.swap, recipe.data.image_size), f"--swap {args.swap}", "ask for fewer pairs (500)"
            )

        result = evaluate_run(
            args.rundir,
            split=args.split,
            max_samples=args.max_samples,
            probes=not args.no_probes,
            checkpoint=args.checkpoint,
            device=args.device,
            tsne=args.tsne,
            seed=args.seed,
            metric_names=args.metrics,
            metric_options=args.metric_option,
            erase=args.erase,
            full=args.full,
        )
        from factorlab.headline import what_this_run_shows
        from factorlab.modelcard import write_model_card

        write_model_card(args.rundir)  # refresh MODEL_CARD.md with the evaluation's numbers
        out = args.rundir / "leace" if args.erase else args.rundir
        scores = _score_swaps(args) if args.swap else None
        if mode() in ("quiet", "json"):  # scripts: where the report is (and, as JSON, the headline)
            if mode() == "quiet":
                print(out / "report.html", flush=True)
            emit("result", None, report=str(out / "report.html"), eval_json=str(out / "eval.json"),
                 shows=what_this_run_shows(result), wall_time_s=result["wall_time_s"])  # fmt: skip
            if scores is not None:
                emit("swap_scores", None, scores=scores)
            return 0
        info = result["checkpoint_info"]
        console.print(
            f"checkpoint {info['name']}: {info['file']}, epoch {info['epoch']}, {info['selected_on']} "
            "(the one summary.json scores unless --checkpoint says otherwise)"
        )
        if result.get("leakage"):  # the headline: what a fresh probe reads where an adversary says nothing is
            from factorlab.leakage import eval_table

            console.print(_rich_table(eval_table(result["leakage"], result["split"], list(result.get("erased") or {}))))
        console.print(_rich_table(head_table(result)))
        if "probes" in result:
            probes = report.probe_table(result["probes"])
            # the terminal is narrow: "test halves (test classes not in train)" -> "test halves"
            probes.rows = [[*row[:-1], row[-1].split(" (")[0]] for row in probes.rows]
            console.print(_rich_table(probes))
        if "similarity" in result:
            console.print(_rich_table(similarity_summary_table(result)))
        if "mig" in result or "dci" in result:
            console.print(_rich_table(report.disentanglement_table(result.get("mig"), result.get("dci"))))
        if "dci" in result:
            importance = result["dci"]["code_importance"]
            console.print(_rich_table(report.code_factor_table(importance, "DCI importance (codes x factors)")))
        plugin_rows = [
            [name, key, value]
            for name, values in result.get("plugin_metrics", {}).items()
            for key, value in values.items()
            if key != "plugin"
        ]
        if plugin_rows:
            console.print(_rich_table(report.Table(["metric", "value of", "value"], plugin_rows, "Plugin metrics")))
        if scores is not None:
            from factorlab.swap import format_scores

            console.print(format_scores(scores))
        console.print(f"what this run shows: {what_this_run_shows(result)}", soft_wrap=True, markup=False)
        console.print(
            f"wrote {out / 'eval.json'}, {out / 'report.md'}, {out / 'report.html'} "
            f"and plots/ ({result['wall_time_s']:.1f} s)",
            soft_wrap=True,
        )
        return 0

    return handle


def _score_swaps(args: argparse.Namespace) -> dict:
    """`eval --swap`: swaps scored against the true images; with --erase, of the LEACE-erased codes (into leace/)."""
    from factorlab.swap import evaluate_swaps

    erased_model, swap_dir = None, None
    if args.erase:  # with the erasers this evaluation fitted; nothing of the plain evaluation is overwritten
        from factorlab.erasure import erase_model, load_erasers
        from factorlab.evaluate import ERASED
        from factorlab.swap import load_decoder_run

        swap_dir = args.rundir / ERASED
        erased_model = erase_model(
            load_decoder_run(args.rundir, args.checkpoint)[1], load_erasers(swap_dir / "erasers.pt")
        )
    return evaluate_swaps(
        args.rundir, split=args.split, pairs=args.swap, seed=args.seed, checkpoint=args.checkpoint,
        model=erased_model, out_dir=swap_dir,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# factorlab compare


def _split_value(summary: Mapping, split: str, key: str | None) -> Any:
    return summary.get("splits", {}).get(split, {}).get(key) if key else None


def _head_accuracy(split: str) -> Callable[[Mapping], Any]:
    def value(summary: Mapping) -> Any:
        head = main_head(summary)
        return report.pct(_split_value(summary, split, head and f"head/{head[0]}/{head[1]}/accuracy"))

    return value


def _adversary_accuracy(split: str) -> Callable[[Mapping], Any]:
    def value(summary: Mapping) -> Any:
        head = main_head(summary)
        code = head and adversary_code(summary, head[0])
        return report.pct(_split_value(summary, split, code and f"adversary/{head[0]}/{code}/accuracy"))

    return value


def run_labels(summaries: Sequence[Mapping]) -> list[str]:
    """A label per run: its name, or its folder name where names repeat (e.g. an ablation's runs)."""
    names = [str(s.get("name", "")) for s in summaries]
    return [
        n if names.count(n) == 1 and n else Path(str(s.get("rundir", n))).name
        for n, s in zip(names, summaries, strict=True)
    ]


def table1(summaries: Sequence[Mapping], split: str = "test") -> report.Table:
    """Paper Table 1: method | C_exp accuracy (the first head of each run)."""
    head = main_head(summaries[0])
    rows = [[label, _head_accuracy(split)(s)] for label, s in zip(run_labels(summaries), summaries, strict=True)]
    return report.Table(["method", f"C_{head[1]} accuracy"], rows, f"Table 1: accuracy of C_{head[1]} ({split} split)")


def table2(summaries: Sequence[Mapping], split: str = "test") -> report.Table:
    """Paper Table 2: beta_rec | C_exp | C_adv_exp, rows by decreasing beta_rec as in the paper."""
    head = main_head(summaries[0])
    labelled = list(zip(run_labels(summaries), summaries, strict=True))

    def beta(item: tuple[str, Mapping]) -> float:
        value = report.lookup(item[1], "recipe.loss.beta_rec")
        return float(value) if isinstance(value, int | float) else -math.inf

    rows = [
        [report.lookup(s, "recipe.loss.beta_rec"), _head_accuracy(split)(s), _adversary_accuracy(split)(s), label]
        for label, s in sorted(labelled, key=beta, reverse=True)
    ]
    code = head[1]
    return report.Table(["beta_rec", f"C_{code}", f"C_adv_{code}", "run"], rows,
                        f"Table 2: effect of beta_rec ({split} split)")  # fmt: skip


def leakage_table(summaries: Sequence[Mapping], evaluations: Sequence[Mapping | None]) -> report.Table | None:
    """From each run's eval.json: the head's factor probed on its own code, on the other codes, and chance."""
    if not any(evaluations):
        return None
    rows = []
    for label, summary, ev in zip(run_labels(summaries), summaries, evaluations, strict=True):
        head = main_head(summary)
        if not ev or "probes" not in ev:
            rows.append([label, "–", "–", "–", "–", "–"])
            continue
        factor, code = head
        for kind in dict.fromkeys(r["probe"] for r in ev["probes"]):
            probes = [r for r in ev["probes"] if r["factor"] == factor and r["probe"] == kind]
            own = [r["accuracy"] for r in probes if r["code"] == code]
            others = [f"{r['code']} {report.pct(r['accuracy'])}" for r in probes if r["code"] != code]
            chance = probes[0]["chance"] if probes else None
            rows.append([label, kind, report.pct(own[0] if own else None), ", ".join(others) or "– (no other code)",
                         report.pct(chance), ev.get("split")])  # fmt: skip
    factor, code = main_head(summaries[0])
    headers = ["run", "probe", f"{factor} from {code}", f"{factor} from the other codes", "chance", "split"]
    return report.Table(headers, rows, f"Leakage: fresh probes reading {factor} from frozen codes (eval.json)")


def compare_tables(rundirs: Sequence[Path], which: str = "all", split: str = "test") -> list[report.Table]:
    """The comparison tables of runs: Table 1, Table 2 and (when runs have eval.json) the leakage table."""
    from factorlab.rundir import load_summary

    summaries = [load_summary(Path(r)) for r in rundirs]
    missing = [str(r) for r, s in zip(rundirs, summaries, strict=True) if split not in s.get("splits", {})]
    if missing:
        raise FactorlabError(f"run(s) {', '.join(missing)} have no {split!r} split in summary.json; use --split val")
    tables = []
    if which in ("1", "all"):
        tables.append(table1(summaries, split))
    if which in ("2", "all"):
        tables.append(table2(summaries, split))
    if which == "all":
        from factorlab.leakage import leakage_table as headline_table

        evaluations = [read_eval(Path(r)) for r in rundirs]
        headline = headline_table(run_labels(summaries), summaries, evaluations)
        if headline is not None:
            tables.append(headline)
        leakage = leakage_table(summaries, evaluations)
        if leakage is not None:
            tables.append(leakage)
    return tables


def compare_command(parser: argparse.ArgumentParser) -> Handler:
    """factorlab compare RUNDIR... [--table 1|2|all] [--out compare.md]"""
    parser.add_argument(
        "rundirs",
        type=Path,
        nargs="+",
        metavar="RUNDIR",
        help="finished run folders or seed-group folders (run --seeds)",
    )
    parser.add_argument(
        "--table", default="all", choices=["1", "2", "all"], help="paper Table 1, Table 2, or all (default)"
    )
    parser.add_argument("--split", default="test", choices=["val", "test"], help="split of summary.json (default test)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the tables as Markdown to FILE")
    parser.epilog = COMPARE_EPILOG

    def handle(args: argparse.Namespace) -> int:
        from factorlab.seeds import group_tables, is_group, label_groups, load_group

        if args.out:  # now, not after the tables are computed
            check_writable_dir(args.out.parent, "--out")
        if any(is_group(path) for path in args.rundirs):  # seed groups: mean ± std over seeds, Welch t-tests
            groups = [load_group(path) for path in args.rundirs]  # read once for every table
            tables = group_tables(groups, args.split)
            if args.split == "test":
                from factorlab.leakage import group_leakage_table

                headline = group_leakage_table(label_groups(groups))
                if headline is not None:
                    tables.append(headline)
        else:
            tables = compare_tables(args.rundirs, args.table, args.split)
        for table in tables:
            console.print(_rich_table(table))
        if args.out:
            text = "\n\n".join(f"**{t.caption}**\n\n{report.markdown_table(t.headers, t.rows)}" for t in tables)
            atomic_write_text(args.out, text + "\n")
            console.print(f"wrote {args.out}")
        return 0

    return handle
