"""Beam search, batched over prompts, reproducing transformers' ``_beam_search`` exactly.

The bookkeeping follows transformers' vectorised ``_beam_search`` (generation/utils.py) so that
``beam(...)`` equals ``generate(num_beams=n, do_sample=False)`` token for token:
- each step keeps the top ``2 * num_beams`` continuations over all beams of a prompt, so that
  ``num_beams`` non-finished ones remain even if every beam picks EOS;
- a continuation that ends in EOS (or reaches ``max_new_tokens``) is a finished hypothesis
  only if it ranks in the top ``num_beams``; its score is ``sum log p / len ** length_penalty``
  with ``len`` the generated length including EOS;
- a prompt stops taking hypotheses once its ``num_beams`` slots are full and either
  ``early_stopping=True`` or no running beam can beat the worst finished one (the heuristic
  transformers uses: ``early_stopping=False`` assumes the current length, ``"never"`` assumes
  ``max_new_tokens`` when ``length_penalty > 0``);
- penalties act on log-probabilities, as transformers applies its processors there; their
  history skips left pads, while transformers also counts the pad id, so with penalties the
  two agree on batches of equal-length prompts.
Sentinel scores of ``-1e9`` are kept as in transformers, since ties among them decide which
placeholder fills an empty slot.
"""

from __future__ import annotations

import torch

from tmbench.decoders import _loop, filters
from tmbench.types import model_kind, seed_free

NEG = -1.0e9


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, ...) rows ``idx`` (B, M) along dim 1."""
    while idx.dim() < x.dim():
        idx = idx.unsqueeze(-1)
    return torch.take_along_dim(x, idx, dim=1)


@seed_free
@model_kind("ar")
@torch.no_grad()
def beam(model, prompts: list[list[int]], *, max_new_tokens: int, generator: torch.Generator,
         num_beams: int = 4, length_penalty: float = 1.0, early_stopping: bool | str = False,
         repetition_penalty: float = 1.0, frequency_penalty: float = 0.0,
         presence_penalty: float = 0.0) -> list[list[int]]:
    """Best finished beam per prompt; ``generator`` is unused (beam search is argmax-only)."""
    _loop.check_common(prompts, max_new_tokens, repetition_penalty, frequency_penalty,
                       presence_penalty)
    _loop.check("num_beams", num_beams, 1, integer=True)
    _loop.check("length_penalty", length_penalty)
    if early_stopping not in (True, False, "never") or not isinstance(early_stopping, (bool, str)):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")

    B, nb, T, eos = len(prompts), num_beams, max_new_tokens, model.eos_token_id
    K = 2 * nb  # max(2, 1 + number of EOS ids) * num_beams, with at most one EOS id
    out = model.prefill(prompts)
    dev = out.logits.device
    flat = torch.arange(B, device=dev).repeat_interleave(nb)  # (B*nb,) prompt of each beam
    state, logits = model.select(out.state, flat), out.logits[flat]
    prompt_ctx = _loop.prompt_history(prompts, 0, dev)[flat]  # (B*nb, S)
    top_nb = torch.arange(K, device=dev) < nb  # (K,) only these may become hypotheses
    offset = torch.arange(B, device=dev)[:, None] * nb  # (B, 1)

    run_seq = torch.full((B, nb, T), -1, dtype=torch.long, device=dev)
    run_score = torch.zeros(B, nb, device=dev)
    run_score[:, 1:] = NEG  # all beams start equal: let only beam 0 expand at step 0
    fin_seq = run_seq.clone()
    fin_score = torch.full((B, nb), NEG, device=dev)
    fin_len = torch.zeros(B, nb, dtype=torch.long, device=dev)
    fin_done = torch.zeros(B, nb, dtype=torch.bool, device=dev)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=dev)

    for t in range(T):
        gen = run_seq.view(B * nb, T)[:, :t]
        logp = filters.process(
            logits.log_softmax(-1), context=torch.cat([prompt_ctx, gen], 1), generated=gen,
            repetition=repetition_penalty, frequency=frequency_penalty,
            presence=presence_penalty)
        V = logp.shape[-1]
        acc = (logp.view(B, nb, V) + run_score[:, :, None]).view(B, nb * V)
        top_score, top_idx = acc.topk(K, dim=-1)  # (B, K)
        src, tok = top_idx // V, top_idx % V
        cand = _gather(run_seq, src)  # (B, K, T)
        cand[:, :, t] = tok
        hits = torch.full_like(tok, t + 1 == T, dtype=torch.bool)
        if eos is not None:
            hits |= tok == eos

        # running beams for the next step: the best nb that did not just finish
        run_lp = top_score + hits.float() * NEG
        nxt = run_lp.topk(nb, dim=-1).indices
        run_seq, run_score, run_src = _gather(cand, nxt), _gather(run_lp, nxt), _gather(src, nxt)

        # finished hypotheses: merge the new ones into the nb best so far
        just = hits & top_nb
        score = top_score / ((t + 1) ** length_penalty)
        score = score + (fin_done.all(-1, keepdim=True) & (early_stopping is True)).float() * NEG
        score = score + (~improvable).float() * NEG
        score = score + (~just) * NEG
        m_score = torch.cat([fin_score, score], 1)
        keep = m_score.topk(nb, dim=-1).indices
        fin_score = _gather(m_score, keep)
        fin_seq = _gather(torch.cat([fin_seq, cand], 1), keep)
        fin_len = _gather(torch.cat([fin_len, torch.full_like(tok, t + 1)], 1), keep)
        fin_done = _gather(torch.cat([fin_done, just], 1), keep)

        # can a running beam still beat the worst finished hypothesis?
        best_len = T if early_stopping == "never" and length_penalty > 0.0 else t + 1
        best_running = run_score[:, :1] / (best_len ** length_penalty)
        worst = torch.where(fin_done, fin_score.min(1, keepdim=True).values, NEG)
        improvable = improvable & (best_running > worst).any(-1, keepdim=True)
        go_on = improvable.any() & ~(fin_done.all() & (early_stopping is True)) & ~hits.all()
        if not bool(go_on):
            break
        state = model.select(state, (run_src + offset).view(-1))
        out = model.step(state, run_seq[:, :, t].reshape(-1))
        state, logits = out.state, out.logits

    assert bool(fin_done[:, 0].all()), "every prompt ends with a finished hypothesis"
    lens = fin_len[:, 0].tolist()
    return [row[:n] for row, n in zip(fin_seq[:, 0].tolist(), lens)]
