"""Per-step logits filters: pure functions ``(B, V) -> (B, V)``.

Truncation filters set removed logits to ``-inf``; they never renormalise (softmax does).
Penalties also take the token history ``(B, T)``; entries ``< 0`` are padding and ignored.
Every filter matches the corresponding ``transformers`` logits processor (tests check this).

:func:`process` is the one place the order of composition is written down:
penalties (repetition, frequency, presence), then temperature, then one truncation filter.
Parameters are validated by the decoders (``tmbench.decoders._loop.check``), not here.
"""

from __future__ import annotations

from typing import Callable

import torch

NEG_INF = float("-inf")


def _drop(logits: torch.Tensor, remove: torch.Tensor) -> torch.Tensor:
    """``logits.masked_fill(remove, -inf)``, same values; ``torch.where`` is about twice as fast
    on CPU as an out-of-place ``masked_fill``."""
    return torch.where(remove, NEG_INF, logits)


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Softmax temperature: ``logits / t`` (Ackley, Hinton & Sejnowski 1985)."""
    return logits / t


def top_k(logits: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the ``max(k, min_tokens_to_keep)`` largest logits (Fan, Lewis & Dauphin 2018,
    "Hierarchical Neural Story Generation"). Ties with the k-th value are all kept."""
    k = min(max(k, min_tokens_to_keep), logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[:, -1:]  # (B, 1)
    return _drop(logits, logits < kth)


def top_p(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose mass reaches ``p``
    (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration").

    Equals :func:`top_p_sort` (transformers' ``TopPLogitsWarper``) bit for bit. On CPU it
    replays that arithmetic on the sorted values alone: softmax and cumsum only ever see the
    ascending values, which numpy sorts without an index array about 20x faster than
    ``torch.sort``; the permutation is only needed to map the cut back to token ids, and that
    is the value threshold "logit >= first kept value" unless equal logits straddle the cut,
    in which case the row takes the reference path (which order ``torch.sort`` gives ties is
    its own business)."""
    if not _value_sortable(logits) or min_tokens_to_keep < 1:
        return top_p_sort(logits, p, min_tokens_to_keep)
    B, V = logits.shape
    asc = _sorted_values(logits)  # (B, V) ascending, = logits.sort(-1).values
    cum = asc.softmax(-1).cumsum(-1)  # the reference's cumulative sums, same bits
    # cum never decreases, so the reference removes the first n sorted tokens, n = #(cum <=
    # 1 - p), with 1 - p rounded to the logits' dtype as the comparison does; a row with a
    # NaN (or +inf) has NaN sums and the reference removes nothing
    thr = torch.full((B, 1), 1 - p, dtype=cum.dtype)
    n = torch.searchsorted(cum, thr, right=True)[:, 0].masked_fill(cum[:, -1].isnan(), 0)
    n = n.clamp(max=max(V - min_tokens_to_keep, 0))  # (B,)
    cut = asc.gather(1, n[:, None])  # (B, 1) the smallest kept value
    below = asc.gather(1, (n - 1).clamp(min=0)[:, None])  # (B, 1) the largest removed one
    out = _drop(logits, logits < cut)
    tied = (n > 0) & (below == cut)[:, 0]  # (B,) equal logits on both sides of the cut
    if bool(tied.any()):
        out[tied] = top_p_sort(logits[tied], p, min_tokens_to_keep)
    return out


def top_p_sort(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """:func:`top_p` by a full sort, exactly as transformers' ``TopPLogitsWarper``."""
    sorted_logits, order = logits.sort(dim=-1)  # ascending, (B, V)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    # a token goes when all the mass at or below it still fits outside the nucleus
    remove = cum <= 1 - p
    remove[:, -min_tokens_to_keep:] = False
    return _drop(logits, remove.scatter(1, order, remove))


def _value_sortable(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dim() == 2 and x.dtype in (torch.float32, torch.float64)


def _sorted_values(x: torch.Tensor) -> torch.Tensor:
    """(B, V) CPU float -> ``x.sort(-1).values`` by numpy's value-only sort (vectorised where
    the CPU allows). Both put NaN last; equal values carry no order, which can only show as
    -0.0 and 0.0 swapping places (equal under softmax too)."""
    out = x.detach().clone(memory_format=torch.contiguous_format)
    out.numpy().sort(axis=-1)  # in place, in torch-owned memory
    return out


def typical(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy
    until their mass reaches ``p`` (Meister et al. 2023, "Locally Typical Sampling").

    Keeps transformers' full sort: its probabilities are summed in the order ``torch.sort``
    gives tokens at equal distance, and real rows have many of those with different logits
    (a SmolLM2 row has about 140 such pairs), so no other sort reproduces the sums' bits."""
    logp = logits.log_softmax(-1)  # (B, V)
    entropy = -(logp * logp.exp()).nansum(-1, keepdim=True)  # (B, 1); nansum: 0 * -inf
    dist, order = (-logp - entropy).abs().sort(dim=-1)  # ascending distance to the entropy
    cum = logits.gather(-1, order).softmax(-1).cumsum(-1)
    last = (cum < p).sum(-1, keepdim=True).clamp(max=logits.shape[-1] - 1)  # (B, 1)
    remove = dist > dist.gather(1, last)
    remove[:, :min_tokens_to_keep] = False
    return _drop(logits, remove.scatter(1, order, remove))


def min_p(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep tokens with probability ``>= p * max probability`` (Nguyen et al. 2024, "Turning
    Up the Heat: Min-p Sampling for Creative and Coherent LLM Outputs")."""
    probs = logits.softmax(-1)
    remove = probs < p * probs.amax(-1, keepdim=True)
    keep = probs.topk(min(min_tokens_to_keep, logits.shape[-1]), dim=-1).indices
    remove.scatter_(1, keep, False)
    return _drop(logits, remove)


def _cutoff(logits: torch.Tensor, threshold: torch.Tensor | float,
            min_tokens_to_keep: int) -> torch.Tensor:
    """Drop tokens with probability below ``threshold`` but keep the top ``min_tokens_to_keep``."""
    remove = logits.softmax(-1) < threshold
    k = min(min_tokens_to_keep, logits.shape[-1])
    remove &= logits < logits.topk(k, dim=-1).values[:, -1:]
    return _drop(logits, remove)


def epsilon(logits: torch.Tensor, epsilon: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep tokens with probability ``>= epsilon`` (Hewitt, Manning & Liang 2022, "Truncation
    Sampling as Language Model Desmoothing")."""
    return _cutoff(logits, epsilon, min_tokens_to_keep)


def eta(logits: torch.Tensor, epsilon: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep tokens with probability ``>= min(epsilon, sqrt(epsilon) * exp(-H(p)))``, an
    entropy-dependent cutoff (Hewitt, Manning & Liang 2022, "Truncation Sampling as Language
    Model Desmoothing", eta-sampling)."""
    logp = logits.log_softmax(-1)
    # clamp as torch.distributions.Categorical does, so -inf logits contribute 0 * finite
    entropy = -(logp.clamp(min=torch.finfo(logp.dtype).min) * logp.exp()).sum(-1, keepdim=True)
    eps = torch.tensor(epsilon, dtype=logits.dtype, device=logits.device)
    cut = torch.minimum(eps, eps.sqrt() * torch.exp(-entropy))  # (B, 1)
    return _cutoff(logits, cut, min_tokens_to_keep)


def _seen(history: torch.Tensor, vocab: int) -> torch.Tensor:
    """(B, T) ids (``< 0`` = pad) -> (B, V + 1) with a slot V that absorbs pads."""
    return torch.where(history < 0, vocab, history).clamp(max=vocab)


def repetition_penalty(logits: torch.Tensor, history: torch.Tensor, theta: float) -> torch.Tensor:
    """Divide positive logits of tokens seen in ``history`` (B, T) by ``theta`` and multiply
    negative ones, once per token however often it was seen (Keskar et al. 2019, CTRL, as in
    transformers' ``RepetitionPenaltyLogitsProcessor``). History is prompt + generated."""
    B, V = logits.shape
    seen = torch.zeros(B, V + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, _seen(history, V), True)
    penalised = torch.where(logits < 0, logits * theta, logits / theta)
    return torch.where(seen[:, :V], penalised, logits)


def _counts(history: torch.Tensor, vocab: int, dtype: torch.dtype) -> torch.Tensor:
    idx = _seen(history, vocab)
    counts = torch.zeros(idx.shape[0], vocab + 1, dtype=dtype, device=history.device)
    return counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=dtype))[:, :vocab]


def frequency_penalty(logits: torch.Tensor, history: torch.Tensor, alpha: float) -> torch.Tensor:
    """Subtract ``alpha * count(v)`` from each logit; counts over generated tokens only
    (OpenAI API "frequency_penalty", platform.openai.com/docs/advanced-usage)."""
    return logits - alpha * _counts(history, logits.shape[-1], logits.dtype)


def presence_penalty(logits: torch.Tensor, history: torch.Tensor, beta: float) -> torch.Tensor:
    """Subtract ``beta`` from each logit whose token was generated at least once (OpenAI API
    "presence_penalty", platform.openai.com/docs/advanced-usage)."""
    return logits - beta * (_counts(history, logits.shape[-1], logits.dtype) > 0).to(logits.dtype)


def process(
    logits: torch.Tensor,  # (B, V)
    *,
    context: torch.Tensor,  # (B, S + t) prompt + generated ids, -1 = pad
    generated: torch.Tensor,  # (B, t) generated ids
    repetition: float = 1.0,
    frequency: float = 0.0,
    presence: float = 0.0,
    temp: float = 1.0,
    truncate: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The fixed order every decoder uses: penalties, then temperature, then truncation
    (the order of transformers' processor list). Filters at their neutral value are skipped."""
    if repetition != 1.0:
        logits = repetition_penalty(logits, context, repetition)
    if frequency != 0.0:
        logits = frequency_penalty(logits, generated, frequency)
    if presence != 0.0:
        logits = presence_penalty(logits, generated, presence)
    if temp != 1.0:
        logits = temperature(logits, temp)
    if truncate is not None:
        logits = truncate(logits)
    return logits
