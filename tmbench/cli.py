"""`tmbench run | list | show | leaderboard | train | report | frontier`.

User errors (bad suite files, unknown names, wrong parameter types or values) print one line
naming the problem and what is accepted, and exit with code 2 before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tmbench.argtypes import non_negative as _seed
from tmbench.argtypes import positive as _positive

DEFAULT_OUT = "runs"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """One-line errors; a flag the command lacks is answered with the flag meant, when it is
    lm-eval's name for one (``--output_path``) or close to one of the command's own."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)  # for error()'s hint
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # say it as the subcommand, whose flags the hint is about
            sub = next((a.choices[getattr(ns, a.dest)] for a in self._actions
                        if isinstance(a, argparse._SubParsersAction) and getattr(ns, a.dest, None)),
                       self)
            sub._argv = extras
            sub.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns

    def error(self, message):  # one line, exit 2 (argparse prints usage on two lines otherwise)
        from tmbench.argtypes import flag_hint

        hint = None
        if message.startswith(("unrecognized arguments", "the following arguments are required")):
            hint = flag_hint(self, getattr(self, "_argv", []))
        raise UsageError(f"{self.prog}: {hint or message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tmbench", description="Benchmark text-generation decoders, Token Maturation first.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run an evaluation suite (completed runs are skipped)")
    r.add_argument("--suite", default="default", help="suite name in tasks/ or a path to a .yaml")
    r.add_argument("--model", action="append",
                   help="only this model (repeatable; `human` is the human reference row)")
    r.add_argument("--decoder", action="append",
                   help="only this decoder label or name (repeatable); settings in brackets, "
                        "as in model specs: nucleus[p=0.8,temperature=0.7]")
    r.add_argument("--seed", action="append", type=_seed,
                   help="run this seed (repeatable) in place of the suite's and every entry's "
                        "own: each selected entry, argmax decoders included, is planned with "
                        "exactly these seeds, so a seed the suite does not list makes new runs")
    r.add_argument("--limit", type=_positive, help="use only the first N prompts")
    r.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    r.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    r.add_argument("--dry-run", action="store_true",
                   help="plan and check every run (models load, parameters, context), list "
                        "them, and stop: nothing is generated or written")
    r.add_argument("--rerun", action="store_true",
                   help="generate and score the planned runs again even when their records "
                        "exist (each record is replaced when its run is done)")
    r.add_argument("--out", default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT}/)")
    r.add_argument("--threads", type=_positive, help="torch CPU threads")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--json", action="store_true", help="machine-readable summary")

    ls = sub.add_parser("list", help="models, decoders, metrics and suites, and where each came from")
    ls.add_argument("--json", action="store_true")

    sh = sub.add_parser("show", help="show one run record (key prefix or path)")
    sh.add_argument("run")
    sh.add_argument("--out", default=DEFAULT_OUT)
    sh.add_argument("--samples", type=int, default=3, help="how many samples to print")
    sh.add_argument("--json", action="store_true")

    lb = sub.add_parser("leaderboard", help="Markdown and CSV tables from run records")
    lb.add_argument("--out", default=DEFAULT_OUT, help="results directory with records")
    lb.add_argument("--dest", help="where to write the tables (default: <out>/leaderboards)")
    lb.add_argument("--suite", help="only this suite")
    lb.add_argument("--all-columns", action="store_true", help="print every metric, not the headline ones")
    lb.add_argument("--reference", help="decoder label rows are compared with (default greedy; "
                                        "must be the label of a row)")
    lb.add_argument("--readme", help="also put the tables between the leaderboard markers of this file")
    lb.add_argument("--paper-suite", help="the suite whose rows fill the README's paper table "
                                          "(default: --suite)")
    lb.add_argument("--json", action="store_true")

    try:
        from tmbench.train import add_train_cli
    except ImportError:
        pass
    else:
        add_train_cli(sub)
    try:
        from tmbench.report import add_report_cli
    except ImportError:
        pass
    else:
        add_report_cli(sub)
    from tmbench.export import add_export_cli
    from tmbench.frontier_report import add_frontier_cli
    from tmbench.lm_eval_cli import add_lm_eval_cli

    add_lm_eval_cli(sub)
    add_export_cli(sub)
    add_frontier_cli(sub)
    return p


def cmd_list(args) -> int:
    from tmbench.registry import DECODERS, METRICS, MODELS
    from tmbench.suites import find_suite, list_suites

    data = {reg.kind + "s": [{"name": e.name, "source": e.source, "about": _about(e.obj)}
                             for e in _safe_entries(reg)]
            for reg in (MODELS, DECODERS, METRICS)}
    data["suites"] = [{"name": s, "source": str(find_suite(s))} for s in list_suites()]
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    for kind, entries in data.items():
        print(f"{kind}:")
        for e in entries:
            about = f"  {e['about']}" if e.get("about") else ""
            print(f"  {e['name']:<22} {e['source']:<10}{about}")
    return 0


def _about(obj) -> str:
    """First line of an entry's docstring (for models: what it is and where its weights are)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0][:100] if doc else ""


def _safe_entries(reg):
    """Entries whose module imports; a broken plugin is listed with its error, not fatal."""
    out = []
    for name in reg.names():
        try:
            out.append(reg._entry(name))
        except Exception as e:  # noqa: BLE001 - show why a plugin is unusable
            from tmbench.registry import Entry

            out.append(Entry(name, None, f"unavailable ({type(e).__name__}: {e})"))
    return out


def cmd_run(args) -> int:
    import torch

    from tmbench.distributed import dist_info, init_distributed
    from tmbench.runner import Runner
    from tmbench.suites import load_suite

    if args.threads:
        torch.set_num_threads(args.threads)
    suite = load_suite(args.suite)
    device = init_distributed(args.device)  # no-op unless launched by torchrun
    rank, world = dist_info()
    log = (lambda *a: print(*a, file=sys.stderr)) if rank == 0 else (lambda *a: None)
    runner = Runner(suite, Path(args.out), device=device, dtype=args.dtype, limit=args.limit,
                    progress=not args.no_progress and rank == 0, log=log, rerun=args.rerun)
    if args.dry_run:
        rows = runner.plan(models=args.model, decoders=args.decoder, seeds=args.seed)
        if args.json:
            print(json.dumps({"suite": suite.name, "version": suite.version, "runs": rows}, indent=1))
        else:
            print(f"{'model':<28} {'decoder':<28} {'seed':>4} {'batch':>5}  status")
            for r in rows:
                print(f"{r['model'][:28]:<28} {r['decoder'][:28]:<28} {r['seed']:>4} "
                      f"{r['batch_size'] or '':>5}  {r['status']}")
            todo = sum(r["status"] == "to generate" for r in rows)
            print(f"suite {suite.name} v{suite.version}: {len(rows)} run(s) planned and checked, "
                  f"{todo} to generate; dry run: nothing generated or written")
        return 0
    summary = runner.run(models=args.model, decoders=args.decoder, seeds=args.seed)
    if rank != 0:
        return 0
    # the closing table's rows, each with its run key (`tmbench show KEY`), then the folders
    result = {"suite": suite.name, "version": suite.version, "runs": summary.rows,
              "written": [str(p) for p in summary.done],
              "rescored": [str(p) for p in summary.rescored],
              "skipped_complete": len(summary.skipped), "busy": summary.busy}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        if summary.rows:
            print(summary.table())
        print(f"suite {suite.name} v{suite.version}: {len(summary.done)} run(s) written, "
              f"{len(summary.rescored)} completed with new metrics on stored samples, "
              f"{len(summary.skipped)} already complete, {len(summary.busy)} held by another process")
        print(f"records under {Path(args.out) / suite.name / f'v{suite.version}'}; "
              f"tables: tmbench leaderboard --out {args.out}")
    return 0


def _find_run(out: Path, ref: str) -> Path:
    p = Path(ref)
    if p.is_file():
        return p
    if (p / "record.json").is_file():
        return p / "record.json"
    hits = [r for r in out.glob("*/v*/*/record.json") if r.parent.name.startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ValueError(f"no run record matches {ref!r} under {out}; pass a key prefix or a path")
    raise ValueError(f"{len(hits)} runs match {ref!r}; give a longer key prefix")


def cmd_show(args) -> int:
    from tmbench.leaderboard import fmt
    from tmbench.results import CorruptRecord, read_record

    path = _find_run(Path(args.out), args.run)
    try:
        rec = read_record(path)
    except CorruptRecord as e:
        raise ValueError(str(e)) from None
    if args.json:
        print(json.dumps(rec, indent=1, ensure_ascii=False))
        return 0
    sp = rec["spec"]
    print(f"run {rec['key']}  ({path})")
    print(f"  suite    {sp['suite']['name']} v{sp['suite']['version']}")
    print(f"  model    {json.dumps(sp['model'])}")
    print(f"  decoder  {sp['decoder']['label']} ({sp['decoder']['name']}) {json.dumps(sp['decoder']['params'])}")
    print(f"  seed {sp['seed']}  batch {sp['batch_size']}  max_new_tokens {sp['max_new_tokens']}  "
          f"prompts {sp['prompts']['n']}  created {rec['created']}")
    print("  metrics:")
    for k, m in rec["metrics"].items():
        print(f"    {k:<48} {fmt(m['value'])}")
    for k, why in rec.get("skipped_metrics", {}).items():
        print(f"    {k:<48} skipped: {why}")
    for n in rec.get("notes", []):
        print(f"  note: {n}")
    for s in rec["samples"][: args.samples]:
        print(f"\n  [{s['prompt_index']}] {s['prompt_text']}\n   -> {s['text']}")
    return 0


def cmd_leaderboard(args) -> int:
    from tmbench.leaderboard import build_tables, to_markdown, write_leaderboards

    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"results directory {out} does not exist; run `tmbench run` first or pass --out")
    warn = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.reference is not None:  # a label no row has would silently mark nothing
        from tmbench.leaderboard import check_reference

        check_reference(out, args.suite, args.reference)
    reference = args.reference or "greedy"
    dest = Path(args.dest) if args.dest else out / "leaderboards"
    written = write_leaderboards(out, dest, args.suite, warn=warn, reference=reference)
    if args.readme:
        from tmbench.leaderboard import update_readme

        update_readme(Path(args.readme), out, args.suite, reference, args.paper_suite)
        written.append(Path(args.readme))
    tables = build_tables(out, args.suite, warn=lambda m: None, reference=reference)
    if args.json:  # the rows the tables show, each with its run keys, then the files written
        from tmbench.render import to_rows

        print(json.dumps({"tables": [to_rows(t, args.all_columns) for t in tables],
                          "written": [str(p) for p in written]}, indent=1, ensure_ascii=False))
        return 0
    for t in tables:
        print(to_markdown(t, all_columns=args.all_columns))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "show": cmd_show, "leaderboard": cmd_leaderboard}


def main(argv: list[str] | None = None) -> int:
    """The CLI; SIGTERM stops it as Ctrl-C does (:mod:`tmbench.interrupt`)."""
    from tmbench.interrupt import sigterm_as_interrupt

    with sigterm_as_interrupt():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        handler = COMMANDS.get(args.cmd) or getattr(args, "handler", None)
        return handler(args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"tmbench: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from tmbench.stages.score import MetricError

        if not isinstance(e, MetricError):
            raise
        print(f"tmbench: error: {e}", file=sys.stderr)
        return 3
    except FloatingPointError as e:  # NonFiniteError: a model produced NaN/inf
        print(f"tmbench: numeric error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (tmbench.interrupt.Terminated)
        from tmbench.interrupt import exit_status, message

        print(message(e, getattr(args, "cmd", None)), file=sys.stderr)
        return exit_status(e)


if __name__ == "__main__":
    sys.exit(main())
