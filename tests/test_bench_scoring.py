"""Cost of judge scoring (Gemma 3 270M, vocabulary 262,144): tmbench's ``target_logprobs`` (the
LM head only on the scored positions, over vocabulary blocks with a running logsumexp, one
weight pass per batch) against the plain way (full-vocabulary logits of every position in
chunks of 256 positions, ``logsumexp``), on one left-padded batch shaped like the standard
suite's: 12 rows of 165 judge tokens (a 32-word prompt and a 128-token continuation), the last
110 of each scored. Both are timed in alternation in one process (the plain way as the
``setup`` of every round); the plain way is also the correctness reference. Skipped by default
(``slow`` and ``--benchmark-skip``); run with:

    pytest -m slow tests/test_bench_scoring.py --benchmark-only -s -p no:cacheprovider
"""

import time

import pytest
import torch

pytestmark = pytest.mark.slow
B, S, SCORED, ROUNDS = 12, 165, 110, 3


def plain(jm, ids, mask, pos):
    """(B, S-1) log-probabilities from full-vocabulary logits, 256 positions at a time."""
    h = jm.model.base_model(input_ids=ids, attention_mask=mask, position_ids=pos,
                            use_cache=False).last_hidden_state[:, :-1]
    h = h.reshape(-1, h.shape[-1])
    tgt = ids[:, 1:].reshape(-1)
    out = torch.empty(len(tgt), dtype=torch.float64)
    head = jm.model.get_output_embeddings()
    for s in range(0, len(tgt), 256):
        z = head(h[s:s + 256]).float()
        out[s:s + 256] = (z.gather(-1, tgt[s:s + 256, None])[:, 0] - torch.logsumexp(z, -1)).double()
    return out.reshape(ids.shape[0], -1)


def test_judge_scoring_against_full_logits(benchmark):
    from tmbench.registry import MODELS

    torch.set_num_threads(1)
    try:
        jm = MODELS.get("gemma3-270m")()
    except ValueError as e:
        pytest.skip(str(e))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 20000, (B, S), generator=g)
    mask, pos = torch.ones_like(ids), torch.arange(S)[None].expand(B, -1)
    need = torch.full((B,), SCORED)
    times, out = {"plain": [], "tmbench": []}, {}

    def timed(name, fn):
        def run():
            t0 = time.perf_counter()
            with torch.no_grad():
                out[name] = fn()
            times[name].append(time.perf_counter() - t0)
        return run

    ours = timed("tmbench", lambda: jm.target_logprobs(ids, mask, pos, need))
    theirs = timed("plain", lambda: plain(jm, ids, mask, pos))  # right before every round
    benchmark.group = f"judge scoring {B} x {S}, {SCORED} scored"
    benchmark.pedantic(ours, setup=theirs, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert torch.allclose(out["tmbench"][:, -SCORED:], out["plain"][:, -SCORED:], atol=1e-4)
    plain_s, ours_s = min(times["plain"][-ROUNDS:]), min(times["tmbench"][-ROUNDS:])
    benchmark.extra_info.update(plain_s=plain_s, tmbench_s=ours_s, speedup=plain_s / ours_s)
    print(f"\njudge scoring, {B} x {S} tokens, {SCORED} scored per row, 1 thread: plain "
          f"{plain_s:.2f} s, tmbench {ours_s:.2f} s, speed-up {plain_s / ours_s:.2f}x")
