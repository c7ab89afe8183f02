"""Any tmbench model as an lm-evaluation-harness ``LM``, so lm-eval tasks can score it.

The model needs ``tokenizer`` (tmbench ``Tokenizer``: encode/decode/eos_token_id) and
``token_logprobs(seqs) -> list[Tensor]`` (log p(x_t | x_<t), t = 1..T-1, teacher forced). AR
models have it in ``ARModel``; TM models score tokens by their induced distribution
(DESIGN 3.5). Usage::

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    res = simple_evaluate(model=TmbenchLM(model), tasks=["wikitext"],  # online task
                          task_manager=TaskManager())

Protocol, the same as lm-eval's ``HFLM`` so numbers are comparable:

- ``loglikelihood``: context and continuation split as lm-eval's ``TemplateLM`` does; the
  pair is left-truncated to ``max_length + 1`` tokens. ``is_greedy`` is computed for AR models
  (from the same forward); for other models it is False.
- ``loglikelihood_rolling``: disjoint windows from ``lm_eval.utils.get_rolling_token_windows``
  with ``context_len`` (default 1, lm-eval's choice): each window feeds ``max_length`` tokens,
  the first window is prefixed by ``prefix_token_id`` (BOS, else EOS), and the stride is
  ``max_length - context_len + 1`` predicted tokens per window; the last window keeps a full
  context. Every token is predicted exactly once. Windows of all documents are scored in
  left-padded batches of at most ``batch_tokens`` tokens (AR models; others one by one).
  Scoring is :class:`tmbench.metrics.lm_eval_lm.ScoringLM`'s (what ``heldout_ppl`` runs);
  this class adds generation.
- ``generate_until``: greedy. AR models through ``prefill``/``step``; TM models through the
  ``maturation`` decoder (argmax commit, generator seeded 0). The context is left-truncated to
  ``max_length - max_gen_toks``; stops at EOS, a stop string, or ``max_gen_toks``.
- ``max_length`` defaults to the model's context minus one (``token_logprobs`` also feeds the
  last, scored token), capped at 2048.
"""

from __future__ import annotations

import torch

from tmbench.metrics.lm_eval_lm import ScoringLM


class TmbenchLM(ScoringLM):
    """A tmbench model as an lm-eval ``LM``: scoring (:class:`ScoringLM`) and greedy
    generation."""

    # ---- generation ------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        res = []
        for context, gen_kwargs in [r.args for r in requests]:
            kw = normalize_gen_kwargs(dict(gen_kwargs or {}), self.max_gen_toks)
            if kw.get("do_sample"):
                raise ValueError("TmbenchLM.generate_until is greedy only (do_sample=True given); "
                                 "sample with tmbench decoders instead")
            eos = self.tok_decode([self.eot_token_id]) if self.tok.eos_token_id is not None else None
            until = handle_stop_sequences(kw.get("until"), eos=eos or None)
            n = int(kw["max_gen_toks"])
            ids = self.tok_encode(context)[-max(1, self.max_length - n):] or [self.prefix_token_id]
            toks = self._greedy(ids, n, until)
            text = self.tok_decode(toks)
            for stop in until:
                if stop:
                    text = text.split(stop)[0]
            res.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return res

    @torch.no_grad()
    def _greedy(self, ids: list[int], n: int, until: list[str]) -> list[int]:
        m = self.model
        eos = getattr(m, "eos_token_id", None)
        if getattr(m, "kind", "ar") == "tm":
            from tmbench.tm.decode import maturation

            out = maturation(m, [ids], max_new_tokens=n, generator=torch.Generator().manual_seed(0))
            toks = list(getattr(out, "tokens", out)[0])
            return toks[:toks.index(eos)] if eos in toks else toks
        step = m.prefill([ids])
        toks: list[int] = []
        for _ in range(n):
            t = int(step.logits[0].argmax())
            if eos is not None and t == eos:
                break
            toks.append(t)
            if until and any(s and s in self.tok_decode(toks) for s in until):
                break
            step = m.step(step.state, torch.tensor([t]))
        return toks
