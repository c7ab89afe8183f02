"""Token-level scoring of text: log-probabilities of token sequences under a model.

One place for what generation perplexity, judge coherence, held-out perplexity, best-of-n
reranking and the lm-eval adapter all compute. Models give ``token_logprobs(seqs)`` (the
contract); AR models with ``forward`` are scored here in batches of one forward each.

- :func:`token_logprobs_batched`: log p(x_t | x_<t) per sequence, left-padded batches (judges,
  rolling windows).
- :func:`windows`: the windows that score a long continuation given its prompt.
- :func:`mean_logprob`: mean log-probability of continuations given prompts (best-of-n).
- :func:`context_length`: how many positions a model can attend over.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def context_length(model: Any) -> int | None:
    """The model's maximum sequence length, from the attributes tmbench and transformers use."""
    for obj in (model, getattr(model, "config", None), getattr(model, "backbone", None),
                getattr(getattr(model, "backbone", None), "config", None),
                getattr(getattr(model, "model", None), "config", None)):
        for attr in ("max_length", "context_length", "block_size", "max_position_embeddings",
                     "n_positions"):
            v = getattr(obj, attr, None) if obj is not None else None
            if isinstance(v, int) and v > 1:
                return v
    return None


def windows(p_ids: list[int], c_ids: list[int], pre: list[int], window: int,
            stride: int) -> list[tuple[list[int], int]]:
    """Inputs of at most ``window`` tokens (``pre`` + a slice of prompt + continuation) and how
    many of their last tokens are scored; together they score every continuation token once."""
    body, room = p_ids + c_ids, window - len(pre)
    out, s = [], len(p_ids)
    while s < len(body):
        e = min(s + stride, len(body)) if len(body) > room else len(body)
        out.append((pre + body[max(0, e - room):e], e - s))
        s = e
    return out


@torch.no_grad()
def token_logprobs_batched(jm: Any, seqs: list[list[int]], batch_tokens: int = 2048,
                           tails: list[int] | None = None) -> list[np.ndarray]:
    """log p(x_t | x_<t), t = 1..T-1, per sequence (float64). AR models: left-padded batches
    (as ``ARModel.prefill`` pads) of at most ``batch_tokens`` padded tokens. ``tails``: per
    sequence, how many last values are needed; a judge with ``target_logprobs`` then computes
    only those (the others are 0)."""
    if getattr(jm, "kind", None) != "ar" or not hasattr(jm, "forward") or batch_tokens <= 0:
        return [lp.double().cpu().numpy() for lp in jm.token_logprobs(seqs)]
    out: list[np.ndarray] = [np.zeros(0)] * len(seqs)
    order = sorted((i for i in range(len(seqs)) if len(seqs[i]) >= 2), key=lambda i: -len(seqs[i]))
    while order:
        S = len(seqs[order[0]])
        chunk, order = order[:max(1, batch_tokens // S)], order[max(1, batch_tokens // S):]
        ids = torch.zeros(len(chunk), S, dtype=torch.long)
        mask = torch.zeros(len(chunk), S, dtype=torch.long)
        for b, i in enumerate(chunk):
            ids[b, S - len(seqs[i]):] = torch.tensor(seqs[i])
            mask[b, S - len(seqs[i]):] = 1
        ids, mask = ids.to(jm.device), mask.to(jm.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        if hasattr(jm, "target_logprobs"):  # large vocabulary: log-softmax in chunks
            need = None if tails is None else torch.tensor([tails[i] for i in chunk])
            lp = jm.target_logprobs(ids, mask, pos, need).double().cpu().numpy()  # (B, S-1)
        else:
            logits = jm.forward(ids, mask, pos, None)[0][:, :-1].float()  # (B, S-1, V)
            tgt = logits.gather(-1, ids[:, 1:, None])[..., 0]  # (B, S-1)
            lp = (tgt - torch.logsumexp(logits, -1)).double().cpu().numpy()
        for b, i in enumerate(chunk):
            out[i] = lp[b, S - len(seqs[i]):]
    return out


@torch.no_grad()
def mean_logprob(model, prompts: list[list[int]], conts: list[list[int]],
                 batch_size: int = 16) -> list[float]:
    """Mean log p(continuation token | everything before it) per pair, right-padded batches of
    one forward each (the model's ``forward(ids, mask, positions, cache)`` contract)."""
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        seqs = [p + c for p, c in zip(prompts[i:i + batch_size], conts[i:i + batch_size])]
        T = max(map(len, seqs))
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, :len(s)], mask[b, :len(s)] = torch.tensor(s), 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        pos = torch.arange(T, device=model.device)[None].expand_as(ids)
        logits, _, _ = model.forward(ids, mask, pos, None)  # (B, T, V)
        lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        for b, (p, c) in enumerate(zip(prompts[i:i + batch_size], conts[i:i + batch_size])):
            n = len(c)
            out.append(float(lp[b, len(p) - 1:len(p) - 1 + n].mean()) if n else float("-inf"))
    return out
