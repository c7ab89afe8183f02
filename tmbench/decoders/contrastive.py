"""Contrastive search (Su et al. 2022, "A Contrastive Framework for Neural Text Generation").

Among the ``k`` most likely next tokens pick the one maximising
``(1 - alpha) * p(v | x) - alpha * max_j cos(h_v, h_j)``, where ``h_v`` is the last-layer
hidden state of the candidate and ``h_j`` runs over the hidden states of every real token so
far (prompt and generated; left-pad positions are excluded). The ``k`` candidates of all rows
go through one batched ``model.step`` over the cache expanded to ``B * k`` rows; the chosen
row's cache, logits and hidden state are kept, so there is one step per token.
Follows transformers' former ``_contrastive_search``/``_ranking_fast``, which transformers 5
no longer ships (``generate`` points to the hub repo transformers-community/contrastive-search).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tmbench.decoders import _loop, filters
from tmbench.types import first_token, model_kind, seed_free


@seed_free
@model_kind("ar")
@torch.no_grad()
def contrastive(model, prompts: list[list[int]], *, max_new_tokens: int,
                generator: torch.Generator, k: int = 5, alpha: float = 0.6,
                repetition_penalty: float = 1.0, frequency_penalty: float = 0.0,
                presence_penalty: float = 0.0) -> list[list[int]]:
    """Contrastive search; ``generator`` is unused (the choice is an argmax).
    ``alpha=0`` is greedy; penalties act on the logits before ``p(v | x)`` is taken."""
    _loop.check_common(prompts, max_new_tokens, repetition_penalty, frequency_penalty,
                       presence_penalty)
    _loop.check("k", k, 1, integer=True)
    _loop.check("alpha", alpha, 0, 1)

    out = model.prefill(prompts, keep_hidden=True)
    state, logits = out.state, out.logits
    B, S, T, eos = len(prompts), max(len(p) for p in prompts), max_new_tokens, model.eos_token_id
    dev = logits.device
    k = min(k, logits.shape[-1])
    ctx = F.normalize(state.prompt_hidden.float(), dim=-1)  # (B, S, H) unit vectors
    ctx_ok = state.attention_mask.bool()  # (B, S) False at left pads
    state.prompt_hidden = None  # not needed in the cache expansions below
    hist = _loop.prompt_history(prompts, T, dev)  # (B, S + T)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    rows = torch.arange(B, device=dev)
    expand = rows.repeat_interleave(k)  # (B*k,)

    for t in range(T):
        logits = filters.process(
            logits, context=hist[:, : S + t], generated=hist[:, S:S + t],
            repetition=repetition_penalty, frequency=frequency_penalty,
            presence=presence_penalty)
        top_p, top_ids = logits.softmax(-1).topk(k, dim=-1)  # (B, k)
        cand = model.step(model.select(state, expand), top_ids.view(-1))
        h = F.normalize(cand.hidden.float(), dim=-1).view(B, k, -1)  # (B, k, H)
        cos = torch.einsum("bkh,bsh->bks", h, ctx)  # (B, k, S + t)
        # masked_fill, not an additive mask: pad hidden states may be NaN
        degeneration = cos.masked_fill(~ctx_ok[:, None, :], float("-inf")).amax(-1)  # (B, k)
        score = (1.0 - alpha) * top_p - alpha * degeneration
        sel = score.argmax(-1)  # (B,)
        tok = top_ids[rows, sel]
        if eos is not None:
            tok = tok.masked_fill(done, eos)
            done |= tok == eos
        hist[:, S + t] = tok
        if t == 0:
            first_token()
        if t + 1 == T or bool(done.all()):
            break
        chosen = rows * k + sel
        state, logits = model.select(cand.state, chosen), cand.logits[chosen]
        ctx = torch.cat([ctx, h[rows, sel][:, None]], 1)
        ctx_ok = torch.cat([ctx_ok, ctx_ok.new_ones(B, 1)], 1)
    return _loop.trim(hist[:, S:S + t + 1], eos)
