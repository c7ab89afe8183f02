"""``tmbench run``: the stages strung together, with resume and locks.

    plan      tmbench.plan.plan_suite           every check before the first token
    generate  tmbench.stages.generate.generate  (wrapped by ``resumable``; and by ``sharded``
                                                 under torchrun)
    score     tmbench.stages.score.score
    record    tmbench.stages.record.build_record, written atomically

A run whose record exists is skipped, or completed on its stored samples when the suite has
metrics the record lacks or whose implementation changed (:func:`tmbench.stages.score.complete`);
``rerun`` (``tmbench run --rerun``) generates and scores every planned run again, from its
first batch, and replaces its record; a run another process holds
(its lock) is skipped and reported; a run interrupted mid-way resumes from its partial file.
The human row (the reference continuations, scored like a model's) runs with the whole suite
or when asked for as ``--model human``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tmbench.distributed import barrier, broadcast, dist_info
from tmbench.faults import fault_point
from tmbench.plan import MetricPlan, RunPlan, SuitePlan, plan_suite
from tmbench.registry import DECODERS
from tmbench.results import CorruptRecord, RunLock, read_record, run_dir, run_key, write_record
from tmbench.stages.generate import Generated, Job, generate, resumable, sharded
from tmbench.stages.record import build_record, decode_info, key_part, run_spec
from tmbench.stages.score import complete, score
from tmbench.stages.session import Session
from tmbench.suites import Suite
from tmbench.types import HUMAN, RunRecord, Sample


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    rescored: list[Path] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # one per run, for the closing table

    def add(self, model: str, decoder: str, seed: int, status: str,
            rec: RunRecord | None, key: str | None = None) -> None:
        t = (rec or {}).get("timings", {})
        written = status == "written"
        self.rows.append({
            "model": model, "decoder": decoder, "seed": seed, "status": status,
            "key": key or (rec or {}).get("key"),  # for `tmbench show KEY`
            "tokens": sum(len(s["token_ids"]) for s in rec["samples"]) if written else 0,
            "gen_s": t.get("generation_s", 0.0) if written else 0.0,
            "score_s": t.get("scoring_s", 0.0) if status in ("written", "rescored") else 0.0})

    def table(self) -> str:
        """A readable table of what each run did (status, tokens, generation and scoring time)."""
        head = ("model", "decoder", "seed", "status", "tokens", "gen s", "score s", "tok/s")
        lines = [head] + [(r["model"], r["decoder"], str(r["seed"]), r["status"], str(r["tokens"]),
                           f"{r['gen_s']:.1f}", f"{r['score_s']:.1f}",
                           f"{r['tokens'] / r['gen_s']:.1f}" if r["gen_s"] else "-")
                          for r in self.rows]
        w = [max(len(x[i]) for x in lines) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(x)) for x in lines)


def run_suite(session: Session, models: list[str] | None = None,
              decoders: list[str] | None = None, seeds: list[int] | None = None) -> Summary:
    """Plan the whole selection, then run each planned run (and the human row)."""
    from tqdm.auto import tqdm

    plan, human = plan_selection(session, models, decoders, seeds)
    human = human and dist_info()[0] == 0
    summary = Summary()
    # one bar for the whole suite (runs done / total, generated tokens/s, ETA) besides the
    # per-run bar of batches
    suite = session.suite
    bar = tqdm(total=len(plan.runs) + human, desc=f"suite {suite.name} v{suite.version}",
               unit="run", disable=not session.progress, position=1)
    t0, tokens = time.perf_counter(), 0
    if human:
        run_human(session, plan, summary)
        bar.update(1)
    for run in plan.runs:
        n = len(summary.rows)  # a run adds one row (none on ranks > 0 under torchrun)
        run_one(session, run, plan, summary)
        tokens += sum(r["tokens"] for r in summary.rows[n:])
        rate = tokens / max(1e-9, time.perf_counter() - t0)
        # drawn by the update, so the count and the rate on screen are of the same moment
        bar.set_postfix(tok_s=f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}", refresh=False)
        bar.update(1)
    bar.close()
    return summary


def plan_selection(session: Session, models: list[str] | None = None,
                   decoders: list[str] | None = None,
                   seeds: list[int] | None = None) -> tuple[SuitePlan, bool]:
    """The checked plan of a ``tmbench run`` selection, and whether it includes the human row
    (``tmbench run --dry-run`` stops here: nothing is generated or written)."""
    asked_human = HUMAN in (models or [])
    human = session.suite.human_row and (asked_human or not decoders and not models)
    models = [m for m in models or [] if m != HUMAN] or None
    plan = plan_suite(session.suite, session.load_model, models=models, decoders=decoders,
                      seeds=seeds, limit=session.limit, runs=not (asked_human and models is None),
                      log=session.log)
    return plan, human


def run_one(session: Session, run: RunPlan, plan: SuitePlan, summary: Summary) -> None:
    """One model x decoder setting x seed (x batch size): skip, complete or generate it."""
    t0 = time.perf_counter()  # the record's wall_s: from here (model load included) to record
    model = session.load_model(run.model)
    spec = run_spec(session, model.identity(), run, plan.prompts)
    key = run_key(key_part(spec))
    folder = run_dir(session.out, session.suite.name, session.suite.version, key)
    job = Job(run, model, DECODERS.get(run.decoder.name), plan.prompts, folder)
    row = (run.model, run.decoder.label, run.seed)
    rank, world = dist_info()
    if world > 1:  # every rank generates its shard; rank 0 scores and writes
        if broadcast(existing(session, folder) is not None if rank == 0 else None):
            summary.skipped.append(folder)
            if rank == 0:
                summary.add(*row, "complete", None, key)
            return
        gen = sharded(resumable(generate))(session, job)
        if gen is not None:
            rec = finish(session, job, spec, key, gen, plan.metrics, summary, world=world,
                         started=t0)
            summary.add(*row, "written", rec)
        barrier()
        return
    with RunLock(folder) as lock:
        if not lock.acquire():
            pid = lock.owner()
            session.log(f"run {job.what} is being generated by another process"
                        f"{f' (pid {pid})' if pid else ''} ({lock.path}); skipping it")
            summary.busy.append(str(folder))
            summary.add(*row, "busy", None, key)
            return
        rec = existing(session, folder)
        if rec is not None:
            rec, status = bring_up_to_date(session, rec, folder, model, plan.metrics, summary,
                                           job.what)
            summary.add(*row, status, rec)
            return
        gen = resumable(generate)(session, job)
        rec = finish(session, job, spec, key, gen, plan.metrics, summary, started=t0)
        summary.add(*row, "written", rec)


def finish(session: Session, job: Job, spec, key: str, gen: Generated,
           metrics: list[MetricPlan], summary: Summary, world: int = 1,
           started: float | None = None) -> RunRecord:
    """Score the generated samples and write the record (then drop the partial files)."""
    fault_point("scoring")
    info = decode_info(session, job.plan, gen)
    scored = score(session, gen.samples, job.model, info, metrics, job.what)
    record = build_record(session, spec, key, gen, scored, info, started=started)
    if world > 1:
        record["timings"]["world_size"] = world
    write_record(job.folder / "record.json", record)
    for f in job.folder.glob("partial*.jsonl"):
        f.unlink()
    summary.done.append(job.folder)
    session.log(f"wrote {job.folder / 'record.json'}")
    return record


def existing(session: Session, folder: Path) -> RunRecord | None:
    """The folder's record, or None (also when it is corrupt: the run is then regenerated).
    With ``session.rerun`` always None, and the run's partial batches are dropped: the record
    is replaced once the run is generated and scored again."""
    path = folder / "record.json"
    if session.rerun:
        for f in folder.glob("partial*.jsonl"):
            f.unlink()
        return None
    if not path.exists():
        return None
    try:
        return read_record(path, key=folder.name)
    except CorruptRecord as e:
        session.log(f"warning: {e}; regenerating it")
        return None


def _valid(folder: Path) -> bool:
    """The folder holds a record that passes its checks (a broken one is regenerated)."""
    try:
        read_record(folder / "record.json")
    except CorruptRecord:
        return False
    return True


def bring_up_to_date(session: Session, rec: RunRecord, folder: Path, model: Any,
                     metrics: list[MetricPlan], summary: Summary,
                     what: str) -> tuple[RunRecord, str]:
    new, todo, gone = complete(session, rec, model, metrics, what)
    if new is None:
        summary.skipped.append(folder)
        return rec, "complete"
    write_record(folder / "record.json", new)
    summary.rescored.append(folder)
    if gone:
        session.log(f"dropped the scores of {', '.join(gone)} from {what} (not in the suite)")
    if todo:
        session.log(f"scored {', '.join(m.id for m in todo)} on the stored samples of {what}")
    return new, "rescored"


def run_human(session: Session, plan: SuitePlan, summary: Summary) -> None:
    """The human row: each prompt's reference continuation, scored like a model's samples."""
    t0 = time.perf_counter()
    spec = run_spec(session, {"name": HUMAN, "kind": HUMAN}, None, plan.prompts)
    key = run_key(key_part(spec))
    folder = run_dir(session.out, session.suite.name, session.suite.version, key)
    row = (HUMAN, "reference", 0)
    with RunLock(folder) as lock:
        if not lock.acquire():
            summary.busy.append(str(folder))
            summary.add(*row, "busy", None, key)
            return
        rec = existing(session, folder)
        if rec is not None:
            rec, status = bring_up_to_date(session, rec, folder, None, plan.metrics, summary, HUMAN)
            summary.add(*row, status, rec)
            return
        tok = None
        if session.suite.dataset.get("tokenizer"):
            tok = session.load_model(session.suite.dataset["tokenizer"]).tokenizer
        samples = [Sample(p.index, 0, p.text, tok.encode(p.text) if tok else [], p.reference,
                          tok.encode(p.reference) if tok else [], p.reference)
                   for p in plan.prompts]
        gen = Generated(samples, [], [], {})
        scored = score(session, samples, None, {"human": True}, plan.metrics, HUMAN)
        rec = build_record(session, spec, key, gen, scored, {"human": True}, started=t0)
        write_record(folder / "record.json", rec)
    summary.done.append(folder)
    summary.add(*row, "written", rec)


class Runner:
    """``Runner(suite, out, device=..., dtype=..., limit=..., progress=..., log=...,
    rerun=...).run(models=..., decoders=..., seeds=...)``: a :class:`Session` and
    :func:`run_suite` in one object, for the CLI and for scripts."""

    def __init__(self, suite: Suite, out_dir: Path, *, device: str = "cpu", dtype: str = "float32",
                 limit: int | None = None, progress: bool = True, log: Callable = print,
                 rerun: bool = False):
        self.session = Session(suite, Path(out_dir), device=device, dtype=dtype, limit=limit,
                               progress=progress, log=log, rerun=rerun)

    def run(self, models=None, decoders=None, seeds=None) -> Summary:
        return run_suite(self.session, models, decoders, seeds)

    def plan(self, models=None, decoders=None, seeds=None) -> list[dict[str, Any]]:
        """What ``run`` would do, every check made, nothing generated or written: one row per
        run (model, decoder label, seed, batch size, run key, stored or to generate)."""
        s = self.session
        plan, human = plan_selection(s, models, decoders, seeds)
        rows = [{"model": HUMAN, "decoder": "reference", "seed": 0, "batch_size": None,
                 "key": None, "status": "human row"}] if human else []
        for run in plan.runs:
            model = s.load_model(run.model)
            key = run_key(key_part(run_spec(s, model.identity(), run, plan.prompts)))
            stored = not s.rerun and _valid(run_dir(s.out, s.suite.name, s.suite.version, key))
            rows.append({"model": run.model, "decoder": run.decoder.label, "seed": run.seed,
                         "batch_size": run.batch_size, "key": key,
                         "status": "stored" if stored else "to generate"})
        return rows
