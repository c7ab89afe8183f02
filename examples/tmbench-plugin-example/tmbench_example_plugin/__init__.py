"""Greedy decoding that never repeats an n-gram (as ``no_repeat_ngram_size`` in transformers).

Installed next to tmbench, it shows up in ``tmbench list`` and runs in any suite as
``{name: no_repeat_greedy, params: {n: 3}}`` without touching tmbench.
"""

import torch

from tmbench.types import model_kind


@model_kind("ar")
def no_repeat_greedy(model, prompts, *, max_new_tokens, generator, n=3):
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    out = model.prefill(prompts)
    seqs = [list(p) for p in prompts]
    new = [[] for _ in prompts]
    done = [False] * len(prompts)
    for _ in range(max_new_tokens):
        logits = out.logits.clone()  # (B, V)
        for b, s in enumerate(seqs):
            if len(s) >= n - 1:  # ban every token that would complete an n-gram seen before
                tail = tuple(s[len(s) - n + 1:]) if n > 1 else ()
                for i in range(len(s) - n + 1):
                    if tuple(s[i:i + n - 1]) == tail:
                        logits[b, s[i + n - 1]] = float("-inf")
        nxt = logits.argmax(-1)
        for b in range(len(prompts)):
            if not done[b]:
                t = int(nxt[b])
                new[b].append(t)
                seqs[b].append(t)
                done[b] = t == model.eos_token_id
        if all(done):
            break
        out = model.step(out.state, nxt)
    return new
