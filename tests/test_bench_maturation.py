"""Cost of maturation decoding per committed token relative to AR greedy on the same backbone.

Tiny-config shapes (d 256, 4 layers, 4 heads, vocab 8192), random weights, both KV-cached,
prompt 32 tokens, 64 new tokens, K = 16 (the 15 warm-up steps are included, amortised over the
64 tokens). Run with:

    pytest -m slow tests/test_bench_maturation.py --benchmark-only -s

Each maturation case times AR greedy (same batch) right before each of its rounds, records
``ratio_to_greedy`` (min time / min greedy time) in extra_info and prints it; the machine's
load drifts, so only the interleaved ratio is meaningful. ``ratio_steady_state`` leaves out the
K - 1 warm-up steps (their share shrinks with longer continuations). Target: <= 3x at batch 32
without guidance.
"""

import time

import pytest
import torch

from tmbench.backbones.gpt import GPT, GPTConfig
from tmbench.decoders.maturation import maturation
from tmbench.models.maturation import MaturationModel, TMConfig
from tmbench.models.native_ar import NativeARModel

pytestmark = pytest.mark.slow
V, NEW, PROMPT = 8192, 64, 32
CFG = GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=128)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    ar = NativeARModel(GPT(CFG), V).eval()
    tm = MaturationModel(GPT(CFG), TMConfig(vocab_size=V, k_max=16)).eval()
    tm.backbone.load_state_dict(ar.backbone.state_dict())  # the same backbone weights
    return ar, tm


def prompts(B):
    g = torch.Generator().manual_seed(B)
    return torch.randint(0, V, (B, PROMPT), generator=g).tolist()


def greedy_fn(ar):
    try:
        from tmbench.decoders.greedy import greedy
    except ImportError:  # a minimal argmax loop via prefill/step
        def greedy(model, ps, *, max_new_tokens, generator):
            out = model.prefill(ps)
            toks = []
            for _ in range(max_new_tokens):
                nxt = out.logits.argmax(-1)
                toks.append(nxt)
                out = model.step(out.state, nxt)
            return torch.stack(toks, 1).tolist()
    return lambda ps: greedy(ar, ps, max_new_tokens=NEW, generator=torch.Generator())


@pytest.mark.parametrize("B", [1, 32])
def test_bench_greedy(benchmark, models, B):
    ar, _ = models
    benchmark.group = f"batch {B}"
    fn, ps = greedy_fn(ar), prompts(B)
    benchmark.pedantic(fn, args=(ps,), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ms_per_token"] = 1e3 * benchmark.stats["min"] / NEW


@pytest.mark.parametrize("guidance", [1.0, 2.0])
@pytest.mark.parametrize("B", [1, 32])
def test_bench_maturation(benchmark, models, B, guidance):
    ar, tm = models
    benchmark.group = f"batch {B}"
    ps = prompts(B)
    greedy, greedy_times = greedy_fn(ar), []

    def setup():  # time AR greedy right before every maturation round (the load drifts)
        t = time.perf_counter()
        greedy(ps)
        greedy_times.append(time.perf_counter() - t)

    def run():
        return maturation(tm, ps, max_new_tokens=NEW, generator=torch.Generator().manual_seed(0),
                          tail_len=16, guidance=guidance)

    out = benchmark.pedantic(run, setup=setup, rounds=5, iterations=1, warmup_rounds=1)
    assert all(len(t) == NEW for t in out.tokens)
    g = min(greedy_times)
    ratio = benchmark.stats["min"] / g
    steady = ratio * NEW / (NEW + 15)  # every step costs about the same; 15 are warm-up
    benchmark.extra_info.update(ms_per_token=1e3 * benchmark.stats["min"] / NEW,
                                greedy_ms_per_token=1e3 * g / NEW, ratio_to_greedy=ratio,
                                ratio_steady_state=steady)
    print(f"\nmaturation B={B} guidance={guidance}: {ratio:.2f}x greedy per committed token "
          f"({1e3 * benchmark.stats['min'] / NEW:.2f} ms vs {1e3 * g / NEW:.2f} ms per token); "
          f"{steady:.2f}x without the warm-up steps")
