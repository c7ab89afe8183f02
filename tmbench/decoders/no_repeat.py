"""Greedy decoding that never repeats an n-gram: the ``no_repeat_ngram_size`` baseline.

A common fix for argmax degeneration (Paulus et al. 2018, and transformers'
``no_repeat_ngram_size``): at every step each token that would complete an n-gram already in
the prompt or the continuation is banned, then the argmax of what is left is taken. It cannot
loop by construction, so its repetition scores say little; its coherence and MAUVE say what
the ban costs. Equals transformers ``generate(do_sample=False, no_repeat_ngram_size=n)`` token
for token on unpadded batches (transformers also counts the left-pad id as text).
"""

from __future__ import annotations

import torch

from tmbench.decoders import _loop
from tmbench.types import first_token, model_kind, seed_free


class _Seen:
    """Per row: for each (n-1)-gram, the tokens that followed it."""

    def __init__(self, n: int):
        self.n, self.next = n, {}

    def add(self, row: list[int]) -> None:
        """Record the n-gram that ends ``row`` (nothing while the row is shorter than n)."""
        if len(row) >= self.n:
            gram = tuple(row[len(row) - self.n:])
            self.next.setdefault(gram[:-1], set()).add(gram[-1])

    def banned(self, row: list[int]) -> list[int]:
        """The tokens that would complete a seen n-gram after ``row``."""
        if len(row) + 1 < self.n:
            return []
        return sorted(self.next.get(tuple(row[len(row) - self.n + 1:]), ()))


@seed_free
@model_kind("ar")
def no_repeat_greedy(model, prompts: list[list[int]], *, max_new_tokens: int,
                     generator: torch.Generator, n: int = 3) -> list[list[int]]:
    """argmax over the tokens that complete no n-gram seen so far in the row (prompt
    included); ``n``: the n-gram size (>= 1; 1 bans every token already in the row).
    ``generator`` is unused."""
    _loop.check_common(prompts, max_new_tokens)
    _loop.check("n", n, 1, integer=True)
    rows = [list(p) for p in prompts]
    seen = [_Seen(n) for _ in prompts]
    for s, row in zip(seen, rows):
        for end in range(1, len(row) + 1):
            s.add(row[:end])
    eos, out = model.eos_token_id, [[] for _ in prompts]
    with torch.inference_mode():
        state = model.prefill(prompts)
        done = [False] * len(prompts)
        for t in range(max_new_tokens):
            logits = state.logits.clone()
            for b, (s, row) in enumerate(zip(seen, rows)):
                ban = s.banned(row)
                if ban and not done[b]:
                    logits[b, ban] = float("-inf")
            tok = _loop.argmax(logits).tolist()
            for b, k in enumerate(tok):
                if done[b]:
                    tok[b] = eos  # a finished row is fed EOS (the batch stays rectangular)
                    continue
                rows[b].append(k)
                seen[b].add(rows[b])
                out[b].append(k)
                done[b] = eos is not None and k == eos
            if t == 0:
                first_token()
            if t + 1 == max_new_tokens or all(done):
                break
            state = model.step(state.state, torch.tensor(tok, device=state.logits.device))
    return out
