"""The one evaluation loop: suite x model x decoder x seed x batch size -> samples -> metrics.

Data flows one way: the suite gives prompts, a model and decoder turn them into samples, the
metrics score them, and one record per run is written atomically. Completed runs are skipped;
an interrupted run resumes from its last finished batch.
"""

from __future__ import annotations

import inspect
import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from tmbench import __version__
from tmbench.data.prompts import Prompt, load_documents, make_prompts, prompts_hash
from tmbench.env import environment
from tmbench.faults import fault_point
from tmbench.models.base import NonFiniteError
from tmbench.registry import DECODERS, METRICS, MODELS
from tmbench.results import (SCHEMA_VERSION, CorruptRecord, RunLock, append_partial,
                             atomic_write_text, canonical,
                             read_partial, read_record, run_dir, run_key, write_record)
from tmbench.suites import DecoderSpec, Suite
from tmbench.types import DecodeOutput, MetricContext, Sample, Score

HUMAN = "human"


# ---- data-parallel generation under torchrun ----------------------------------------------------

def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) unless launched by torchrun with several processes."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> str:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPU); return this rank's
    device (cuda:LOCAL_RANK on GPU)."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    gpu = device.startswith("cuda")
    dist.init_process_group("nccl" if gpu else "gloo")
    if gpu:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def _broadcast(obj: Any) -> Any:
    rank, world = dist_info()
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier() -> None:
    if dist_info()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


# ---- decoder parameter schema ----------------------------------------------------------------

def resolve_params(fn: Callable, params: dict[str, Any], label: str) -> dict[str, Any]:
    """Check ``params`` against the decoder's keyword parameters; return them with defaults."""
    sig = inspect.signature(fn)
    schema = {n: p for n, p in sig.parameters.items()
              if p.kind == p.KEYWORD_ONLY and n not in ("max_new_tokens", "generator")}
    unknown = sorted(set(params) - set(schema))
    if unknown:
        accepted = ", ".join(f"{n}={p.default!r}" for n, p in schema.items()) or "(none)"
        raise ValueError(f"decoder {label!r}: unknown parameter(s) {unknown}; accepted: {accepted}")
    out = {}
    for n, p in schema.items():
        v = params.get(n, p.default)
        if v is inspect.Parameter.empty:
            raise ValueError(f"decoder {label!r}: parameter {n!r} is required")
        out[n] = _check_type(label, n, v, p.default)
    return out


def _check_type(label: str, name: str, v: Any, default: Any) -> Any:
    if default is inspect.Parameter.empty or default is None:
        return v
    if v is None:
        raise ValueError(f"decoder {label!r}: parameter {name!r} must be "
                         f"{type(default).__name__}, got null")
    want = type(default)
    if want is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if want in (tuple, list) and isinstance(v, (tuple, list)):
        return tuple(v) if want is tuple else list(v)
    if not isinstance(v, want) or (want is int and isinstance(v, bool)):
        raise ValueError(f"decoder {label!r}: parameter {name!r} must be {want.__name__}, "
                         f"got {type(v).__name__} {v!r}")
    if want is float and not math.isfinite(v):
        raise ValueError(f"decoder {label!r}: parameter {name!r} must be finite, got {v!r}")
    return v


# ---- plan ----------------------------------------------------------------------------------------

@dataclass
class RunPlan:
    model: str
    decoder: DecoderSpec
    params: dict[str, Any]
    seed: int
    batch_size: int


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    incompatible: list[str] = field(default_factory=list)


def build_prompts(suite: Suite, limit: int | None, load_model: Callable) -> list[Prompt]:
    ds = suite.dataset
    n = ds["n_prompts"] if limit is None else min(limit, ds["n_prompts"])
    tok = load_model(ds["tokenizer"]).tokenizer if ds.get("prompt_unit") == "token" else None
    return make_prompts(load_documents(ds), n_prompts=n, prompt_len=ds["prompt_len"],
                        reference_len=ds["reference_len"], unit=ds.get("prompt_unit", "word"),
                        tokenizer=tok)


def plan_runs(suite: Suite, models: list[str] | None, decoders: list[str] | None,
              seeds: list[int] | None) -> list[RunPlan]:
    """Validate names and parameters up front, before anything is loaded or written."""
    model_names = models or list(suite.models)
    for m in model_names:
        MODELS.get(m)  # raises with known names and the closest match
    specs = list(suite.decoders)
    if decoders:
        by = {d.label: d for d in specs} | {d.name: d for d in specs}
        chosen = []
        for name in decoders:
            if name in by:
                chosen.append(by[name])
            else:  # a registered decoder not in the suite: run it with its defaults
                DECODERS.get(name)
                chosen.append(DecoderSpec(name, name, {}))
        specs = chosen
    for m in suite.metrics:
        METRICS.get(m.name)
    plans = []
    for m in model_names:
        for d in specs:
            params = resolve_params(DECODERS.get(d.name), d.params, d.label)
            for s in (seeds or d.seeds or suite.seeds):
                for bs in suite.batch_sizes:
                    plans.append(RunPlan(m, d, params, s, bs))
    return plans


# ---- the loop ----------------------------------------------------------------------------------

class Runner:
    def __init__(self, suite: Suite, out_dir: Path, *, device: str = "cpu", dtype: str = "float32",
                 limit: int | None = None, progress: bool = True, log: Callable = print):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; accepted: cpu")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        self.suite, self.out, self.device, self.dtype = suite, Path(out_dir), device, dtype
        self.limit, self.progress, self.log = limit, progress, log
        self._models: dict[str, Any] = {}
        self._per_model: dict[tuple, dict] = {}
        self._env = environment(device)

    def load_model(self, name: str) -> Any:
        if name not in self._models:
            self.log(f"loading model {name} ...")
            self._models[name] = MODELS.get(name)(device=self.device, dtype=self.dtype)
        return self._models[name]

    def run(self, models=None, decoders=None, seeds=None) -> Summary:
        plans = plan_runs(self.suite, models, decoders, seeds)
        prompts = build_prompts(self.suite, self.limit, self.load_model)
        summary = Summary()
        if self.suite.human_row and not decoders and not models and dist_info()[0] == 0:
            self._run_human(prompts, summary)
        for plan in plans:
            self._run_one(plan, prompts, summary)
        return summary

    # -- spec and key --
    def _spec(self, model_id: dict, decoder: dict, seed: int, batch_size: int, prompts) -> dict:
        s = self.suite
        return {
            "suite": {"name": s.name, "version": s.version, "content_hash": s.content_hash},
            "prompts": {"hash": prompts_hash(prompts), "n": len(prompts),
                        "samples_per_prompt": s.samples_per_prompt},
            "model": model_id, "decoder": decoder, "seed": seed,
            "max_new_tokens": s.max_new_tokens, "batch_size": batch_size,
            "dtype": self.dtype, "device_type": self.device.split(":")[0],
            "tmbench": __version__,
        }

    def _existing(self, folder: Path) -> bool:
        path = folder / "record.json"
        if not path.exists():
            return False
        try:
            read_record(path)
            return True
        except CorruptRecord as e:
            self.log(f"warning: {e}; regenerating it")
            return False

    # -- one model x decoder x seed x batch size --
    def _run_one(self, plan: RunPlan, prompts: list[Prompt], summary: Summary) -> None:
        fn = DECODERS.get(plan.decoder.name)
        model = self.load_model(plan.model)
        kind = getattr(fn, "model_kind", "ar")
        if kind != getattr(model, "kind", "ar"):
            summary.incompatible.append(f"{plan.model}/{plan.decoder.label}")
            return
        decoder = {"name": plan.decoder.name, "label": plan.decoder.label, "params": plan.params,
                   "source": DECODERS.source(plan.decoder.name)}
        spec = self._spec(model.identity(), decoder, plan.seed, plan.batch_size, prompts)
        key = run_key(spec)
        folder = run_dir(self.out, self.suite.name, self.suite.version, key)
        rank, world = dist_info()
        if world > 1:
            self._run_sharded(plan, fn, model, spec, key, folder, prompts, summary, rank, world)
            return
        if self._existing(folder):
            summary.skipped.append(folder)
            return
        lock = RunLock(folder)
        if not lock.acquire():
            self.log(f"run {plan.model}/{plan.decoder.label} seed {plan.seed} is being generated "
                     f"by another process ({lock.path}); skipping it")
            summary.busy.append(str(folder))
            return
        try:
            if self._existing(folder):  # finished by another process while we waited
                summary.skipped.append(folder)
                return
            samples, gen_info = self._generate(model, fn, plan, prompts, folder)
            record = self._score_and_record(spec, key, model, samples, gen_info, plan)
            write_record(folder / "record.json", record)
            for f in folder.glob("partial*.jsonl"):
                f.unlink()
            summary.done.append(folder)
            self.log(f"wrote {folder / 'record.json'}")
        finally:
            lock.release()

    def _run_sharded(self, plan, fn, model, spec, key, folder, prompts, summary, rank, world):
        """Batches are dealt round-robin to ranks; each rank appends to its own partial file
        (so resume works per shard); rank 0 gathers, scores and writes the record. Per-batch
        generators make the tokens identical to a single-process run."""
        exists = _broadcast(self._existing(folder) if rank == 0 else None)
        if exists:
            summary.skipped.append(folder)
            return
        samples, gen_info = self._generate(model, fn, plan, prompts, folder, shard=(rank, world))
        _barrier()
        if rank == 0:
            samples, gen_info = self._generate(model, fn, plan, prompts, folder, shard=None)
            record = self._score_and_record(spec, key, model, samples, gen_info, plan)
            record["timings"]["world_size"] = world
            write_record(folder / "record.json", record)
            for f in folder.glob("partial*.jsonl"):
                f.unlink()
            summary.done.append(folder)
            self.log(f"wrote {folder / 'record.json'}")
        _barrier()

    def _items(self, prompts: list[Prompt]) -> list[Prompt]:
        return [p for p in prompts for _ in range(self.suite.samples_per_prompt)]

    def _generate(self, model, fn, plan: RunPlan, prompts, folder: Path, shard=None):
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
        timing = "throughput" in {m.name for m in self.suite.metrics}
        starts = list(range(0, len(items), bs))
        if shard:
            starts = [s for i, s in enumerate(starts) if i % shard[1] == shard[0]]
        bar = tqdm(starts, desc=f"{plan.model} {plan.decoder.label} s{plan.seed} b{bs}",
                   disable=not self.progress, unit="batch", leave=False)
        if timing and len(done) < len(starts):  # warm-up: allocator, kernels, caches
            self._decode(model, fn, plan, ids[:bs], 0, min(4, self.suite.max_new_tokens))
        backoffs: list[dict] = []
        for start in bar:
            if start in done:
                continue
            batch_ids = ids[start:start + bs]
            t_first = None
            if timing:
                t_first = self._decode(model, fn, plan, batch_ids, start, 1)[1]
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
            return None, None
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
        return samples, {"batches": batches, "memory_backoff": backoffs}

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
        gen = [torch.Generator().manual_seed(plan.seed * 1_000_003 + start + j)
               for j in range(len(batch_ids))]
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

    # -- scoring --
    def _score(self, samples, model, decode_info) -> tuple[dict, dict, list, dict]:
        metrics, skipped, notes, judges = {}, {}, [], {}

        def load(name):
            m = self.load_model(name)
            judges[name] = m.identity() if hasattr(m, "identity") else {"name": name}
            return m

        for m in self.suite.metrics:
            fn = METRICS.get(m.name)
            # Metrics of the model alone (held-out perplexity) are computed once per model.
            cache_key = None
            if getattr(fn, "per_model", False) and model is not None:
                cache_key = (m.name, canonical(m.params), canonical(model.identity()))
            if cache_key in self._per_model:
                metrics.update(self._per_model[cache_key])
                continue
            if getattr(fn, "per_model", False) and model is None:
                continue
            ctx = MetricContext(model=model, tokenizer=getattr(model, "tokenizer", None),
                                load_model=load, device=self.device,
                                cache_dir=str(self.out / ".cache"), decode_info=decode_info)
            try:
                scores: dict[str, Score] = fn(samples, ctx=ctx, **m.params)
            except (ImportError, ValueError) as e:
                skipped[m.name] = f"{type(e).__name__}: {e}"
                self.log(f"warning: metric {m.name} skipped: {e}")
                continue
            notes.extend(f"{m.name}: {n}" for n in ctx.notes)
            got = {k: {"value": s.value, "per_sample": s.per_sample,
                       "higher_is_better": s.higher_is_better, "meta": s.meta, "metric": m.name}
                   for k, s in scores.items()}
            metrics.update(got)
            if cache_key is not None:
                self._per_model[cache_key] = got
        return metrics, skipped, notes, judges

    def _score_and_record(self, spec, key, model, samples, gen_info, plan: RunPlan) -> dict:
        decode_info = {"params": plan.params, "decoder": plan.decoder.name,
                       "timing": gen_info | {"fingerprint": self._env["fingerprint"],
                                             "peak_memory": _peak_memory(self.device)},
                       "max_new_tokens": self.suite.max_new_tokens}
        fault_point("scoring")
        t0 = time.perf_counter()
        metrics, skipped, notes, judges = self._score(samples, model, decode_info)
        return self._record(spec, key, samples, metrics, skipped, notes, judges,
                            {"generation_s": sum(b["wall_s"] for b in gen_info["batches"]),
                             "scoring_s": time.perf_counter() - t0, **gen_info})

    def _record(self, spec, key, samples, metrics, skipped, notes, judges, timings) -> dict:
        return {
            "schema_version": SCHEMA_VERSION, "key": key, "spec": spec,
            "row": {"model": spec["model"]["name"], "decoder": spec["decoder"]["label"]},
            "protocol": self._protocol(), "environment": self._env,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "timings": timings, "metrics": metrics, "skipped_metrics": skipped,
            "notes": notes, "judges": judges, "samples": [asdict(s) for s in samples],
        }

    def _protocol(self) -> dict:
        """DESIGN section 8: the choices a record must name to be comparable."""
        ds = self.suite.dataset
        return {
            "prompts": {"source": ds.get("source", "bbc"), "split": ds.get("split"),
                        "length": ds["prompt_len"], "unit": ds.get("prompt_unit", "word"),
                        "selection": "first n_prompts documents in content-hash order long enough "
                                     "for prompt + half the reference; article body after the headline"},
            "continuation": {"max_new_tokens": self.suite.max_new_tokens,
                             "eos": "generation stops at EOS; EOS is kept in token_ids, not in text"},
            "rng": "one torch.Generator per prompt, seeded with seed * 1000003 + prompt position",
            "metrics": [{"name": m.name, "params": m.params} for m in self.suite.metrics],
        }

    # -- human reference row --
    def _run_human(self, prompts: list[Prompt], summary: Summary) -> None:
        decoder = {"name": "reference", "label": "reference", "params": {}}
        spec = self._spec({"name": HUMAN, "kind": HUMAN}, decoder, 0, 0, prompts)
        key = run_key(spec)
        folder = run_dir(self.out, self.suite.name, self.suite.version, key)
        if self._existing(folder):
            summary.skipped.append(folder)
            return
        tok = None
        if self.suite.dataset.get("tokenizer"):
            tok = self.load_model(self.suite.dataset["tokenizer"]).tokenizer
        samples = [Sample(p.index, 0, p.text, tok.encode(p.text) if tok else [], p.reference,
                          tok.encode(p.reference) if tok else [], p.reference) for p in prompts]
        with RunLock(folder) as lock:
            if not lock.acquire():
                summary.busy.append(str(folder))
                return
            t0 = time.perf_counter()
            metrics, skipped, notes, judges = self._score(samples, None, {"human": True})
            rec = self._record(spec, key, samples, metrics, skipped, notes, judges,
                               {"scoring_s": time.perf_counter() - t0})
            write_record(folder / "record.json", rec)
        summary.done.append(folder)


def _strip_eos(toks: list[int], eos: int | None) -> list[int]:
    return toks[:-1] if toks and eos is not None and toks[-1] == eos else toks


def _autocast(device: str, dtype: str):
    if device.startswith("cuda") and dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()


def _peak_memory(device: str) -> dict[str, Any]:
    if device.startswith("cuda"):
        return {"kind": "cuda_max_allocated_bytes", "bytes": torch.cuda.max_memory_allocated()}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": "process_peak_rss_bytes", "bytes": rss_kb * 1024}
