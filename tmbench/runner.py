"""The one evaluation loop, as stages: plan -> generate -> score -> record.

- **plan** (:mod:`tmbench.plan`): every model, decoder setting, metric parameter and context
  length is resolved and checked before the first token; nothing is written on a bad suite.
- **generate**: one model x decoder x seed -> samples, batch by batch into a partial file (an
  interrupted run resumes from its last finished batch). Memory back-off and torchrun sharding
  wrap this stage.
- **score**: the suite's metrics over the samples, each keyed by its resolved parameters. A
  metric that raises is an error naming the metric and the run; only a missing optional
  dependency skips it, and a later run that has the dependency completes the record.
- **record**: one JSON record per run, written atomically, keyed by the hash of the run's own
  resolved spec (what determines its tokens), not of the suite file. A completed run is skipped;
  a metric added to the suite later scores the stored samples without generating again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from tmbench import __version__
from tmbench.data.prompts import Prompt, load_documents, make_prompts, prompts_hash
from tmbench.distributed import barrier, broadcast, dist_info, init_distributed
from tmbench.env import environment
from tmbench.faults import fault_point
from tmbench.memory import PeakMemory
from tmbench.models.base import NonFiniteError
from tmbench.models.specs import load_model_spec
from tmbench.plan import (MetricPlan, RunPlan, check_context, plan_runs, resolve_metrics,
                          resolve_params)
from tmbench.registry import DECODERS, METRICS
from tmbench.results import (SCHEMA_VERSION, CorruptRecord, RunLock, append_partial,
                             atomic_write_text, canonical, read_partial, read_record, run_dir,
                             run_key, write_record)
from tmbench.suites import Suite
from tmbench.types import DecodeOutput, MetricContext, Sample, Score, prompt_generator

__all__ = ["Runner", "Summary", "MetricError", "resolve_params", "plan_runs"]

HUMAN = "human"


class MetricError(RuntimeError):
    """A metric raised while scoring a run (not a missing optional dependency)."""


# ---- stage outputs -------------------------------------------------------------------------------

@dataclass
class Generated:
    """What the generate stage hands to scoring."""

    samples: list[Sample]
    batches: list[dict]
    memory_backoff: list[dict]
    peak_memory: dict[str, Any]


@dataclass
class Scored:
    metrics: dict[str, dict]  # metric key -> {value, per_sample, meta, metric, metric_id, ...}
    metric_runs: dict[str, dict]  # metric id -> {name, params, status, reason?, scoring_s}
    notes: list[str]
    judges: dict[str, dict]


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    rescored: list[Path] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # one per run, for the closing table

    def table(self) -> str:
        """A readable table of what each run did (status, tokens, generation and scoring time)."""
        head = ("model", "decoder", "seed", "status", "tokens", "gen s", "score s", "tok/s")
        lines = [head] + [(r["model"], r["decoder"], str(r["seed"]), r["status"], str(r["tokens"]),
                           f"{r['gen_s']:.1f}", f"{r['score_s']:.1f}",
                           f"{r['tokens'] / r['gen_s']:.1f}" if r["gen_s"] else "-")
                          for r in self.rows]
        w = [max(len(x[i]) for x in lines) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(x)) for x in lines)


# ---- the spec and its key ------------------------------------------------------------------------

def key_part(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a run spec that determines its tokens (what the run key hashes): prompts,
    model identity, decoder name and resolved params, seed, max_new_tokens, dtype, device type,
    and the batch size only where it is measured (throughput). Not the suite file, the label,
    or the tmbench version."""
    dec = spec["decoder"]
    out = {k: spec[k] for k in ("prompts", "model", "seed", "max_new_tokens", "dtype",
                                "device_type")}
    out["decoder"] = {"name": dec["name"], "params": dec["params"]}
    if spec.get("timed"):
        out["batch_size"] = spec["batch_size"]
    return out


def build_prompts(suite: Suite, limit: int | None, load_model: Callable) -> list[Prompt]:
    ds = suite.dataset
    n = ds["n_prompts"] if limit is None else min(limit, ds["n_prompts"])
    tok = load_model(ds["tokenizer"]).tokenizer if ds.get("prompt_unit") == "token" else None
    return make_prompts(load_documents(ds), n_prompts=n, prompt_len=ds["prompt_len"],
                        reference_len=ds["reference_len"], unit=ds.get("prompt_unit", "word"),
                        tokenizer=tok, per_article=ds.get("per_article", 1),
                        boundary=ds.get("boundary", "paragraph"))


# ---- the loop ----------------------------------------------------------------------------------

class Runner:
    """Holds what lives across runs of one suite: loaded models and per-model scores."""

    def __init__(self, suite: Suite, out_dir: Path, *, device: str = "cpu", dtype: str = "float32",
                 limit: int | None = None, progress: bool = True, log: Callable = print):
        import re

        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {device!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; accepted: cpu")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        self.suite, self.out, self.device, self.dtype = suite, Path(out_dir), device, dtype
        self.limit, self.progress, self.log = limit, progress, log
        self._models: dict[str, Any] = {}
        self._per_model: dict[tuple, dict] = {}
        self._env = environment(device)
        self.timed = "throughput" in {m.name for m in suite.metrics}

    def load_model(self, name: str) -> Any:
        if name not in self._models:
            self.log(f"loading model {name} ...")
            self._models[name] = load_model_spec(name, device=self.device, dtype=self.dtype)
        return self._models[name]

    # -- plan --
    def plan(self, models=None, decoders=None, seeds=None, runs: bool = True):
        """Every check before any work: names, decoder and metric parameters, models load,
        the context of every model fits prompt + max_new_tokens. Returns (runs, metrics,
        prompts); raises ValueError on the first problem. `runs=False` plans the metrics and
        prompts only (the human row alone)."""
        plans = plan_runs(self.suite, models, decoders, seeds, log=self.log) if runs else []
        metrics = resolve_metrics(self.suite.metrics)
        prompts = build_prompts(self.suite, self.limit, self.load_model)
        for plan in plans:
            fn = DECODERS.get(plan.decoder.name)
            model = self._load_checked(plan.model)
            kind = getattr(fn, "model_kind", "ar")
            if kind != getattr(model, "kind", "ar"):
                continue  # e.g. maturation on an AR model: not a combination a suite runs
            longest = max(len(model.tokenizer.encode(p.text)) for p in prompts)
            check_context(model, plan.model, plan.decoder.label, longest,
                          self.suite.max_new_tokens, plan.params)
        plans = [p for p in plans if getattr(DECODERS.get(p.decoder.name), "model_kind", "ar")
                 == getattr(self.load_model(p.model), "kind", "ar")]
        return plans, metrics, prompts

    def _load_checked(self, name: str):
        try:
            return self.load_model(name)
        except ValueError as e:
            raise ValueError(f"model {name!r} does not load: {e}") from None

    def run(self, models=None, decoders=None, seeds=None) -> Summary:
        from tqdm.auto import tqdm

        # the human row runs with the whole suite, or when asked for as `--model human`
        asked_human = HUMAN in (models or [])
        human = self.suite.human_row and (asked_human or not decoders and not models)
        human = human and dist_info()[0] == 0
        models = [m for m in models or [] if m != HUMAN] or None
        only_human = asked_human and models is None
        plans, metrics, prompts = self.plan(models, decoders, seeds, runs=not only_human)
        summary = Summary()
        # one bar for the whole suite (runs done / total, generated tokens/s, ETA) besides
        # the per-run bar of batches
        bar = tqdm(total=len(plans) + human, desc=f"suite {self.suite.name} v{self.suite.version}",
                   unit="run", disable=not self.progress, position=1)
        t0, tokens = time.perf_counter(), 0
        if human:
            self._run_human(prompts, metrics, summary)
            bar.update(1)
        for plan in plans:
            self._run_one(plan, prompts, metrics, summary)
            tokens += summary.rows[-1]["tokens"] if summary.rows else 0
            bar.set_postfix(tok_s=f"{tokens / max(1e-9, time.perf_counter() - t0):.0f}")
            bar.update(1)
        bar.close()
        return summary

    def _row(self, summary: Summary, plan: RunPlan | None, status: str, rec: dict | None) -> None:
        t = (rec or {}).get("timings", {})
        new = sum(len(s["token_ids"]) for s in (rec or {}).get("samples", [])) if plan else 0
        summary.rows.append({
            "model": plan.model if plan else HUMAN, "decoder": plan.decoder.label if plan else "reference",
            "seed": plan.seed if plan else 0, "status": status,
            "tokens": new if status == "written" else 0,
            "gen_s": t.get("generation_s", 0.0) if status == "written" else 0.0,
            "score_s": t.get("scoring_s", 0.0) if status in ("written", "rescored") else 0.0})

    # -- spec --
    def _spec(self, model_id: dict, plan: RunPlan | None, prompts) -> dict:
        s = self.suite
        if plan is None:
            decoder = {"name": "reference", "label": "reference", "params": {}, "defaults": {},
                       "source": "builtin"}
        else:
            decoder = {"name": plan.decoder.name, "label": plan.decoder.label,
                       "params": plan.params, "defaults": plan.defaults,
                       "source": DECODERS.source(plan.decoder.name)}
        return {
            "suite": {"name": s.name, "version": s.version},
            "prompts": {"hash": prompts_hash(prompts), "n": len(prompts),
                        "samples_per_prompt": s.samples_per_prompt},
            "model": model_id, "decoder": decoder, "seed": 0 if plan is None else plan.seed,
            "max_new_tokens": s.max_new_tokens, "batch_size": 0 if plan is None else plan.batch_size,
            "timed": self.timed and plan is not None,
            "dtype": self.dtype, "device_type": self.device.split(":")[0], "tmbench": __version__,
        }

    def _existing(self, folder: Path) -> dict | None:
        path = folder / "record.json"
        if not path.exists():
            return None
        try:
            return read_record(path)
        except CorruptRecord as e:
            self.log(f"warning: {e}; regenerating it")
            return None

    # -- one model x decoder x seed x batch size --
    def _run_one(self, plan: RunPlan, prompts, metrics: list[MetricPlan], summary: Summary) -> None:
        fn = DECODERS.get(plan.decoder.name)
        model = self.load_model(plan.model)
        spec = self._spec(model.identity(), plan, prompts)
        key = run_key(key_part(spec))
        folder = run_dir(self.out, self.suite.name, self.suite.version, key)
        what = f"{plan.model}/{plan.decoder.label} seed {plan.seed}"
        rank, world = dist_info()
        if world > 1:
            self._run_sharded(plan, fn, model, spec, key, folder, prompts, metrics, summary)
            return
        with RunLock(folder) as lock:
            if not lock.acquire():
                self.log(f"run {what} is being generated by another process ({lock.path}); "
                         "skipping it")
                summary.busy.append(str(folder))
                self._row(summary, plan, "busy", None)
                return
            rec = self._existing(folder)
            if rec is not None:
                rec, status = self._complete(rec, folder, model, metrics, summary, what)
                self._row(summary, plan, status, rec)
                return
            gen = self.generate(model, fn, plan, prompts, folder)
            rec = self._finish(spec, key, folder, model, gen, metrics, plan, summary, what)
            self._row(summary, plan, "written", rec)

    def _finish(self, spec, key, folder, model, gen: Generated, metrics, plan, summary, what,
                world: int = 1) -> None:
        fault_point("scoring")
        scored = self.score(gen.samples, model, self._decode_info(plan, gen, spec), metrics, what)
        record = self.record(spec, key, gen, scored)
        if world > 1:
            record["timings"]["world_size"] = world
        write_record(folder / "record.json", record)
        for f in folder.glob("partial*.jsonl"):
            f.unlink()
        summary.done.append(folder)
        self.log(f"wrote {folder / 'record.json'}")
        return record

    def _complete(self, rec: dict, folder: Path, model, metrics: list[MetricPlan],
                  summary: Summary, what: str) -> None:
        """A finished run: score metrics it lacks (or skipped for a missing dependency) on its
        stored samples, without generating again."""
        done = rec.get("metric_runs", {})
        todo = [m for m in metrics if done.get(m.id, {}).get("status") != "ok"]
        # a record holds the scores of its suite's metrics: those of a metric the suite no
        # longer has (or has with other parameters) go when the record is next completed
        gone = sorted(set(done) - {m.id for m in metrics})
        if not todo and not gone:
            summary.skipped.append(folder)
            return rec, "complete"
        if gone:
            rec = {**rec, "metrics": {k: v for k, v in rec["metrics"].items()
                                      if v.get("metric_id") not in gone},
                   "metric_runs": {k: v for k, v in done.items() if k not in gone}}
            done = rec["metric_runs"]
            self.log(f"dropped the scores of {', '.join(gone)} from {what} (not in the suite)")
        samples = [Sample(**s) for s in rec["samples"]]
        info = rec.get("decode_info", {})
        scored = self.score(samples, model, info, todo, what) if todo else Scored({}, {}, [], {})
        rec = {k: v for k, v in rec.items() if k != "record_hash"}
        for k in [k for k, v in rec["metrics"].items() if v.get("metric_id") in scored.metric_runs]:
            del rec["metrics"][k]  # a metric rescored replaces its old values
        rec["metrics"].update(scored.metrics)
        rec["metric_runs"] = {**done, **scored.metric_runs}
        rec["notes"] = rec.get("notes", []) + scored.notes
        rec["judges"] = {**rec.get("judges", {}), **scored.judges}
        rec["timings"]["scoring_s"] = rec["timings"].get("scoring_s", 0.0) + sum(
            m.get("scoring_s", 0.0) for m in scored.metric_runs.values())
        write_record(folder / "record.json", rec)
        summary.rescored.append(folder)
        if todo:
            self.log(f"scored {', '.join(m.id for m in todo)} on the stored samples of {what}")
        return rec, "rescored"

    def _run_sharded(self, plan, fn, model, spec, key, folder, prompts, metrics, summary):
        """Batches are dealt round-robin to ranks; each rank appends to its own partial file
        (so resume works per shard); rank 0 gathers, scores and writes the record. Per-prompt
        generators make the tokens identical to a single-process run."""
        rank, world = dist_info()
        exists = broadcast(self._existing(folder) is not None if rank == 0 else None)
        if exists:
            summary.skipped.append(folder)
            return
        self.generate(model, fn, plan, prompts, folder, shard=(rank, world))
        barrier()
        if rank == 0:
            gen = self.generate(model, fn, plan, prompts, folder)
            what = f"{plan.model}/{plan.decoder.label} seed {plan.seed}"
            self._finish(spec, key, folder, model, gen, metrics, plan, summary, what, world)
        barrier()

    # -- generate --
    def _items(self, prompts: list[Prompt]) -> list[Prompt]:
        return [p for p in prompts for _ in range(self.suite.samples_per_prompt)]

    def generate(self, model, fn, plan: RunPlan, prompts, folder: Path,
                 shard: tuple[int, int] | None = None) -> Generated | None:
        """Generate every batch not already in a partial file. ``shard=(rank, world)``: only
        this rank's batches, then return None (rank 0 collects afterwards with shard=None)."""
        from tqdm.auto import tqdm

        items = self._items(prompts)
        ids = [model.tokenizer.encode(p.text) for p in items]
        bs = plan.batch_size
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (f"partial.rank{shard[0]}.jsonl" if shard else "partial.jsonl")
        done: dict[int, dict] = {}
        for f in sorted(folder.glob("partial*.jsonl")):  # every shard's finished batches
            good = read_partial(f, warn=self.log)
            if f == partial or not shard:
                atomic_write_text(f, "".join(canonical(b) + "\n" for b in good.values()))
            done.update(good)
        starts = list(range(0, len(items), bs))
        if shard:
            starts = [s for i, s in enumerate(starts) if i % shard[1] == shard[0]]
        bar = tqdm(starts, desc=f"{plan.model} {plan.decoder.label} s{plan.seed} b{bs}",
                   disable=not self.progress, unit="batch", leave=False)
        backoffs: list[dict] = []
        with PeakMemory(self.device) as peak:
            if self.timed and len(done) < len(starts):  # warm-up: allocator, kernels, caches
                self._decode(model, fn, plan, ids[:bs], 0, min(4, self.suite.max_new_tokens))
            for start in bar:
                if start in done:
                    continue
                batch_ids = ids[start:start + bs]
                t_first = self._decode(model, fn, plan, batch_ids, start, 1)[1] if self.timed else None
                out, wall = self._decode_backoff(model, fn, plan, batch_ids, start, backoffs)
                per_sample = {k: v for k, v in out.info.items()
                              if isinstance(v, list) and len(v) == len(batch_ids)}
                batch_info = {k: v for k, v in out.info.items() if k not in per_sample}
                batch = {"start": start, "tokens": out.tokens, "wall_s": wall, "ttft_s": t_first,
                         "info": per_sample, "batch_info": batch_info}
                append_partial(partial, batch)
                fault_point("batch")
                done[start] = batch
        if shard:
            return None
        samples, batches = [], []
        for start in starts:
            b = done[start]
            batches.append({k: b[k] for k in ("start", "wall_s", "ttft_s", "batch_info")}
                           | {"size": len(b["tokens"]), "new_tokens": sum(map(len, b["tokens"])),
                              "steps": max(map(len, b["tokens"]), default=0)})
            for j, toks in enumerate(b["tokens"]):
                i = start + j
                p = items[i]
                samples.append(Sample(
                    prompt_index=p.index, seed=plan.seed, prompt_text=p.text, prompt_ids=ids[i],
                    text=model.tokenizer.decode(_strip_eos(toks, model.eos_token_id)),
                    token_ids=toks, reference_text=p.reference,
                    info={k: v[j] for k, v in b["info"].items()},
                ))
        return Generated(samples, batches, backoffs, peak.result())

    def _decode_backoff(self, model, fn, plan, batch_ids, start, backoffs):
        """Decode a batch; when it runs out of memory, split it in halves (recorded) and retry."""
        try:
            return self._decode(model, fn, plan, batch_ids, start, self.suite.max_new_tokens)
        except (MemoryError, torch.cuda.OutOfMemoryError) as e:
            if len(batch_ids) == 1:
                raise
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            half = (len(batch_ids) + 1) // 2
            backoffs.append({"start": start, "from": len(batch_ids), "to": half,
                             "error": type(e).__name__})
            self.log(f"warning: out of memory at batch size {len(batch_ids)}; retrying as {half}")
            a, wa = self._decode_backoff(model, fn, plan, batch_ids[:half], start, backoffs)
            b, wb = self._decode_backoff(model, fn, plan, batch_ids[half:], start + half, backoffs)
            info = {k: a.info[k] + b.info[k] for k in a.info
                    if isinstance(a.info[k], list) and k in b.info}
            return DecodeOutput(a.tokens + b.tokens, info), wa + wb

    def _decode(self, model, fn, plan: RunPlan, batch_ids, start: int, max_new: int):
        # One generator per prompt, seeded from (run seed, prompt position): a prompt's tokens
        # do not depend on the batch it lands in (batch size, sharding, memory back-off).
        gen = [prompt_generator(plan.seed, start + j) for j in range(len(batch_ids))]
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(), _autocast(self.device, self.dtype):
                out = fn(model, batch_ids, max_new_tokens=max_new, generator=gen, **plan.params)
        except NonFiniteError as e:
            raise NonFiniteError(f"{e}; run {plan.model}/{plan.decoder.label} seed {plan.seed}, "
                                 f"prompt indices {start}..{start + len(batch_ids) - 1}") from None
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        if not isinstance(out, DecodeOutput):
            out = DecodeOutput([list(map(int, t)) for t in out])
        if len(out.tokens) != len(batch_ids):
            raise AssertionError(f"decoder {plan.decoder.name} returned {len(out.tokens)} "
                                 f"sequences for {len(batch_ids)} prompts")
        out.tokens = [list(map(int, t)) for t in out.tokens]
        return out, wall

    # -- score --
    def _decode_info(self, plan: RunPlan, gen: Generated, spec: dict) -> dict:
        return {"params": plan.params, "decoder": plan.decoder.name, "seed": plan.seed,
                "timing": {"batches": gen.batches, "memory_backoff": gen.memory_backoff,
                           "fingerprint": self._env["fingerprint"],
                           "peak_memory": gen.peak_memory},
                "max_new_tokens": self.suite.max_new_tokens}

    def score(self, samples: list[Sample], model, decode_info: dict, metrics: list[MetricPlan],
              what: str) -> Scored:
        out = Scored({}, {}, [], {})

        def load(name):
            m = self.load_model(name)
            out.judges[name] = m.identity() if hasattr(m, "identity") else {"name": name}
            return m

        for m in metrics:
            fn = METRICS.get(m.name)
            t0 = time.perf_counter()
            # metrics of the model alone (held-out perplexity) are computed once per model
            cache_key = None
            if getattr(fn, "per_model", False):
                if model is None:
                    out.metric_runs[m.id] = {"name": m.name, "params": m.params, "status": "ok",
                                             "scoring_s": 0.0, "note": "not defined without a model"}
                    continue
                cache_key = (m.id, canonical(model.identity()))
            if cache_key in self._per_model:
                got, judges = self._per_model[cache_key]
                out.judges.update(judges)
            else:
                ctx = MetricContext(model=model, tokenizer=getattr(model, "tokenizer", None),
                                    load_model=load, device=self.device,
                                    cache_dir=str(self.out / ".cache"), decode_info=decode_info)
                before = dict(out.judges)
                try:
                    scores: dict[str, Score] = fn(samples, ctx=ctx, **m.params)
                except ImportError as e:  # an optional dependency: skip, complete later
                    out.metric_runs[m.id] = {"name": m.name, "params": m.params,
                                             "status": "skipped", "reason": f"{type(e).__name__}: {e}"}
                    self.log(f"warning: metric {m.name} skipped on {what} (missing optional "
                             f"dependency: {e}); a later run with it installed completes the record")
                    continue
                except Exception as e:  # noqa: BLE001 - re-raised with the metric and run named
                    raise MetricError(f"metric {m.id} failed on run {what}: "
                                      f"{type(e).__name__}: {e}") from e
                out.notes.extend(f"{m.name}: {n}" for n in ctx.notes)
                got = {k: {"value": s.value, "per_sample": s.per_sample,
                           "higher_is_better": s.higher_is_better, "meta": s.meta,
                           "metric": m.name, "metric_id": m.id} for k, s in scores.items()}
                if cache_key is not None:
                    judges = {k: v for k, v in out.judges.items() if k not in before}
                    self._per_model[cache_key] = (got, judges)
            out.metrics.update(got)
            out.metric_runs[m.id] = {"name": m.name, "params": m.params, "status": "ok",
                                     "scoring_s": round(time.perf_counter() - t0, 4)}
        return out

    # -- record --
    def record(self, spec: dict, key: str, gen: Generated, scored: Scored,
               decode_info: dict | None = None) -> dict:
        timings = {"generation_s": sum(b["wall_s"] for b in gen.batches),
                   "scoring_s": sum(m.get("scoring_s", 0.0) for m in scored.metric_runs.values()),
                   "batches": gen.batches, "memory_backoff": gen.memory_backoff,
                   "peak_memory": gen.peak_memory}
        info = decode_info or {"params": spec["decoder"]["params"], "decoder": spec["decoder"]["name"],
                               "seed": spec["seed"], "max_new_tokens": spec["max_new_tokens"],
                               "timing": {"batches": gen.batches,
                                          "memory_backoff": gen.memory_backoff,
                                          "fingerprint": self._env["fingerprint"],
                                          "peak_memory": gen.peak_memory}}
        return {
            "schema_version": SCHEMA_VERSION, "key": key, "spec": spec,
            "row": {"model": spec["model"]["name"], "decoder": spec["decoder"]["label"]},
            "protocol": self._protocol(), "environment": self._env,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "timings": timings, "metrics": scored.metrics, "metric_runs": scored.metric_runs,
            "skipped_metrics": {v["name"]: v["reason"] for v in scored.metric_runs.values()
                                if v["status"] == "skipped"},
            "notes": scored.notes, "judges": scored.judges, "decode_info": info,
            "samples": [asdict(s) for s in gen.samples],
        }

    def _protocol(self) -> dict:
        """DESIGN section 8: the choices a record must name to be comparable."""
        ds = self.suite.dataset
        return {
            "prompts": {"source": ds.get("source", "bbc"), "split": ds.get("split"),
                        "length": ds["prompt_len"], "unit": ds.get("prompt_unit", "word"),
                        "per_article": ds.get("per_article", 1),
                        "selection": "first n_prompts documents in content-hash order long enough "
                                     "for prompt + half the reference; article body after the "
                                     "headline (several paragraph starts per article when "
                                     "per_article > 1)"},
            "continuation": {"max_new_tokens": self.suite.max_new_tokens,
                             "eos": "generation stops at EOS; EOS is kept in token_ids, not in text"},
            "rng": "one torch.Generator per prompt, seeded with seed * 1000003 + prompt position; "
                   "sampling decoders share these streams (common random numbers)",
            "context": "prompt + max_new_tokens (+ the maturation tail) must fit every model's "
                       "context; checked at plan time, no sliding window",
        }

    # -- human reference row --
    def _run_human(self, prompts: list[Prompt], metrics: list[MetricPlan], summary: Summary) -> None:
        spec = self._spec({"name": HUMAN, "kind": HUMAN}, None, prompts)
        key = run_key(key_part(spec))
        folder = run_dir(self.out, self.suite.name, self.suite.version, key)
        with RunLock(folder) as lock:
            if not lock.acquire():
                summary.busy.append(str(folder))
                return
            rec = self._existing(folder)
            if rec is not None:
                self._complete(rec, folder, None, metrics, summary, "human")
                return
            tok = None
            if self.suite.dataset.get("tokenizer"):
                tok = self.load_model(self.suite.dataset["tokenizer"]).tokenizer
            samples = [Sample(p.index, 0, p.text, tok.encode(p.text) if tok else [], p.reference,
                              tok.encode(p.reference) if tok else [], p.reference) for p in prompts]
            gen = Generated(samples, [], [], {})
            scored = self.score(samples, None, {"human": True}, metrics, "human")
            rec = self.record(spec, key, gen, scored, decode_info={"human": True})
            write_record(folder / "record.json", rec)
        summary.done.append(folder)


def _strip_eos(toks: list[int], eos: int | None) -> list[int]:
    return toks[:-1] if toks and eos is not None and toks[-1] == eos else toks


def _autocast(device: str, dtype: str):
    """bfloat16 autocast on CUDA, and on CPUs with native bfloat16 (AVX512-BF16 / AMX)."""
    import contextlib

    if dtype != "bfloat16":
        return contextlib.nullcontext()
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
