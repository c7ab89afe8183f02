"""The generate stage: one model x decoder setting x seed -> samples.

Each prompt draws from its own generator, seeded from (run seed, prompt position), so
a prompt's tokens do not depend on the batch it lands in: batch size, memory back-off and
torchrun sharding leave the tokens unchanged. Resume, memory back-off and sharding are
wrappers, not branches inside the stage: memory back-off around the per-batch decode
(:func:`with_memory_backoff`), resume from partial files around the stage (:func:`resumable`),
and sharding around the resumable stage (:func:`sharded`).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from tmbench.data.prompts import Prompt
from tmbench.distributed import barrier, dist_info
from tmbench.faults import fault_point
from tmbench.memory import PeakMemory
from tmbench.models.base import NonFiniteError
from tmbench.plan import RunPlan
from tmbench.results import append_partial, atomic_write_text, canonical, read_partial
from tmbench.stages.session import Session
from tmbench.types import (DecodeContext, DecodeOutput, Sample, first_token_clock,
                           prompt_generator)

# decode(batch_ids, start, max_new_tokens) -> (output, wall seconds, seconds to the first token
# where the decoder says when it is chosen (tmbench.types.first_token), else None)
Decode = Callable[[list[list[int]], int, int], tuple[DecodeOutput, float, float | None]]


@dataclass(frozen=True)
class Job:
    """One run to generate."""

    plan: RunPlan
    model: Any
    decoder: Callable  # the registered decoder function
    prompts: list[Prompt]
    folder: Path  # the run's folder: partial files now, record.json later

    @property
    def what(self) -> str:
        return f"{self.plan.model}/{self.plan.decoder.label} seed {self.plan.seed}"


@dataclass
class Generated:
    """What the generate stage hands to scoring and the record."""

    samples: list[Sample]
    batches: list[dict]  # per batch: start, size, new_tokens, steps, wall_s, ttft_s, batch_info
    memory_backoff: list[dict]  # the batches split after running out of memory
    peak_memory: dict[str, Any]
    judges: dict[str, dict] = field(default_factory=dict)  # models the decoder loaded by name


def decoder_call(session: Session, job: Job, judges: dict[str, dict] | None = None) -> Decode:
    """The decode of one batch, timed (with a CUDA sync either side), under inference mode and
    the session's autocast; a decoder's NonFiniteError names the run and the prompts. A decoder
    that takes ``ctx`` gets a :class:`DecodeContext` whose models land in ``judges``."""
    plan, cuda = job.plan, session.cuda
    extra = {}
    if "ctx" in inspect.signature(job.decoder).parameters:
        extra["ctx"] = DecodeContext(load_model=session.model_door({} if judges is None else judges))

    def decode(batch_ids: list[list[int]], start: int, max_new: int
               ) -> tuple[DecodeOutput, float, float | None]:
        gen = [prompt_generator(plan.seed, start + j) for j in range(len(batch_ids))]
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            with (torch.inference_mode(), autocast(session.device, session.dtype),
                  first_token_clock(torch.cuda.synchronize if cuda else None) as first):
                out = job.decoder(job.model, batch_ids, max_new_tokens=max_new, generator=gen,
                                  **plan.params, **extra)
        except NonFiniteError as e:
            raise NonFiniteError(f"{e}; run {job.what}, prompt indices "
                                 f"{start}..{start + len(batch_ids) - 1}") from None
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        if not isinstance(out, DecodeOutput):
            out = DecodeOutput([list(map(int, t)) for t in out])
        if len(out.tokens) != len(batch_ids):
            raise AssertionError(f"decoder {plan.decoder.name} returned {len(out.tokens)} "
                                 f"sequences for {len(batch_ids)} prompts")
        out.tokens = [list(map(int, t)) for t in out.tokens]
        return out, wall, (first[0] if first else None)

    return decode


def with_memory_backoff(decode: Decode, backoffs: list[dict], *, log: Callable = print,
                        cuda: bool = False) -> Decode:
    """``decode``, but a batch that runs out of memory is split in halves (each split appended
    to ``backoffs``) and retried, down to single prompts."""

    def run(batch_ids: list[list[int]], start: int, max_new: int
            ) -> tuple[DecodeOutput, float, float | None]:
        try:
            return decode(batch_ids, start, max_new)
        except (MemoryError, torch.cuda.OutOfMemoryError) as e:
            if len(batch_ids) == 1:
                raise
            if cuda:
                torch.cuda.empty_cache()
            half = (len(batch_ids) + 1) // 2
            backoffs.append({"start": start, "from": len(batch_ids), "to": half,
                             "error": type(e).__name__})
            log(f"warning: out of memory at batch size {len(batch_ids)}; retrying as {half}")
            a, wa, fa = run(batch_ids[:half], start, max_new)
            b, wb, _ = run(batch_ids[half:], start + half, max_new)
            info = {k: a.info[k] + b.info[k] for k in a.info
                    if isinstance(a.info[k], list) and k in b.info}
            return DecodeOutput(a.tokens + b.tokens, info), wa + wb, fa

    return run


def batch_layout(session: Session, job: Job) -> list[range]:
    """The sample indices of every batch of the run, in batches of the run's batch size."""
    n, bs = len(job.prompts) * session.suite.samples_per_prompt, job.plan.batch_size
    return [range(s, min(s + bs, n)) for s in range(0, n, bs)]


def missing(batches: list[range], have: set[int]) -> list[range]:
    """``batches`` cut down to the sample indices not in ``have``: each batch's missing samples,
    split where they are not consecutive (a decode takes consecutive samples)."""
    out = []
    for r in batches:
        todo = [i for i in r if i not in have]
        while todo:
            k = next((j for j in range(1, len(todo)) if todo[j] != todo[j - 1] + 1), len(todo))
            out.append(range(todo[0], todo[k - 1] + 1))
            todo = todo[k:]
    return out


def generate(session: Session, job: Job, *, todo: list[range] | None = None,
             done: list[dict] = (), on_batch: Callable[[dict], None] | None = None) -> Generated:
    """Decode the batches ``todo`` (ranges of consecutive sample indices; default: the whole
    run in batches of its batch size), hand each new batch to ``on_batch``, and return the
    samples of ``done`` (batches finished earlier) and of the new batches, each sample index
    once, in order."""
    from tqdm.auto import tqdm

    suite, plan, model = session.suite, job.plan, job.model
    items = [p for p in job.prompts for _ in range(suite.samples_per_prompt)]
    ids = [model.tokenizer.encode(p.text) for p in items]
    bs = plan.batch_size
    todo = batch_layout(session, job) if todo is None else todo
    batches = list(done)
    judges: dict[str, dict] = {}
    decode = decoder_call(session, job, judges)
    backoffs: list[dict] = []
    decode_full = with_memory_backoff(decode, backoffs, log=session.log, cuda=session.cuda)
    bar = tqdm(todo, desc=f"{plan.model} {plan.decoder.label} s{plan.seed} b{bs}",
               disable=not session.progress, unit="batch", leave=False)
    with PeakMemory(session.device) as peak:
        warm = (plan.model, plan.decoder.name, bs)
        if session.timed and todo and warm not in session.warmed:
            # warm-up (allocator, kernels), once per model, decoder and batch size in a session
            decode(ids[:bs], 0, min(4, suite.max_new_tokens))
            session.warmed.add(warm)
        for r in bar:
            start, batch_ids = r.start, ids[r.start:r.stop]
            out, wall, t_first = decode_full(batch_ids, start, suite.max_new_tokens)
            if session.timed and t_first is None:  # the decoder does not say: one more decode
                t_first = decode(batch_ids, start, 1)[1]
            per_sample = {k: v for k, v in out.info.items()
                          if isinstance(v, list) and len(v) == len(batch_ids)}
            batch = {"start": start, "tokens": out.tokens, "wall_s": wall, "ttft_s": t_first,
                     "info": per_sample,
                     "batch_info": {k: v for k, v in out.info.items() if k not in per_sample}}
            if on_batch is not None:
                on_batch(batch)
            batches.append(batch)
    gen = _collect(job, items, ids, batches, backoffs, peak.result())
    gen.judges.update(judges)
    return gen


def resumable(stage: Callable[..., Generated]) -> Callable[..., Generated]:
    """``stage`` resumed from the run folder's partial files: samples finished by an earlier,
    interrupted process (any shard's) are not decoded again, and each new batch is appended to
    this process's partial file as soon as it is done (a torn last line, from a kill mid-write,
    is dropped). ``shard=(rank, world)``: this rank's batches only, into its own file.

    What is kept is per sample index, not per batch: the run key leaves out the batch size
    where it cannot change tokens, so the earlier process may have used another batch size (or
    another world size); each batch of this one is cut down to the samples still missing."""

    def run(session: Session, job: Job, shard: tuple[int, int] | None = None) -> Generated:
        job.folder.mkdir(parents=True, exist_ok=True)
        partial = job.folder / (f"partial.rank{shard[0]}.jsonl" if shard else "partial.jsonl")
        done: list[dict] = []
        for f in sorted(job.folder.glob("partial*.jsonl")):
            good = read_partial(f, warn=session.log)
            if f == partial or not shard:  # rewrite without a torn last line
                atomic_write_text(f, "".join(canonical(b) + "\n" for b in good.values()))
            done.extend(good.values())
        have = {b["start"] + j for b in done for j in range(len(b["tokens"]))}
        layout = batch_layout(session, job)
        n = layout[-1].stop if layout else 0
        if shard:  # dealt by position in the layout, so ranks agree whatever each has read
            layout = [r for i, r in enumerate(layout) if i % shard[1] == shard[0]]
        todo = missing(layout, have)
        if have and todo:
            session.log(f"resuming {job.what}: {len(have)} of {n} samples were generated "
                        f"earlier ({job.folder}); generating the rest")

        def keep(batch: dict) -> None:
            append_partial(partial, batch)
            fault_point("batch")

        try:
            out = stage(session, job, todo=todo, done=done, on_batch=keep)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the CLI's last line names the run
            e.run = getattr(e, "run", job.what)
            raise
        assert shard or [s.prompt_index for s in out.samples] == [
            p.index for p in job.prompts for _ in range(session.suite.samples_per_prompt)], \
            f"run {job.what}: resume did not give every sample exactly once"
        return out

    return run


def _collect(job: Job, items: list[Prompt], ids: list[list[int]], batches: list[dict],
             backoffs: list[dict], peak: dict) -> Generated:
    """Samples by index (each once, in order; a batch covers ``start ..``), batch timings by
    start."""
    tok, eos = job.model.tokenizer, job.model.eos_token_id
    batches = sorted(batches, key=lambda b: b["start"])
    timing = [{k: b[k] for k in ("start", "wall_s", "ttft_s", "batch_info")}
              | {"size": len(b["tokens"]), "new_tokens": sum(map(len, b["tokens"])),
                 "steps": max(map(len, b["tokens"]), default=0)} for b in batches]
    by_index = {}
    for b in batches:
        for j in range(len(b["tokens"])):
            by_index.setdefault(b["start"] + j, (b, j))
    samples = []
    for i, (b, j) in sorted(by_index.items()):
        toks, p = b["tokens"][j], items[i]
        samples.append(Sample(
            prompt_index=p.index, seed=job.plan.seed, prompt_text=p.text, prompt_ids=ids[i],
            text=tok.decode(strip_eos(toks, eos)), token_ids=toks, reference_text=p.reference,
            info={k: v[j] for k, v in b["info"].items()},
        ))
    return Generated(samples, timing, backoffs, peak)


def sharded(stage: Callable[..., Generated]) -> Callable[[Session, Job], Generated | None]:
    """A resumable stage under torchrun: batches are dealt round-robin to ranks, each rank
    appends to its own partial file (so resume works per shard); after a barrier rank 0
    gathers every shard's batches and returns the samples, the other ranks return None.
    Per-prompt generators make the tokens identical to a single-process run."""

    def run(session: Session, job: Job) -> Generated | None:
        rank, world = dist_info()
        stage(session, job, shard=(rank, world))
        barrier()
        return stage(session, job) if rank == 0 else None

    return run


def strip_eos(toks: list[int], eos: int | None) -> list[int]:
    return toks[:-1] if toks and eos is not None and toks[-1] == eos else toks


def autocast(device: str, dtype: str):
    """bfloat16 autocast on CUDA; on CPU the model's own dtype is used (no autocast)."""
    if dtype == "bfloat16" and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
