"""Any tmbench model as an lm-evaluation-harness ``LM`` that scores text, as ``heldout_ppl``
runs lm-eval perplexity tasks with it (``tmbench.lm_eval_adapter.TmbenchLM`` adds generation).

Protocol, the same as lm-eval's ``HFLM`` so numbers are comparable:

- ``loglikelihood``: context and continuation split as lm-eval's ``TemplateLM`` does; the
  pair is left-truncated to ``max_length + 1`` tokens. ``is_greedy`` is computed for AR models
  (from the same forward); for other models it is False.
- ``loglikelihood_rolling``: disjoint windows from ``lm_eval.utils.get_rolling_token_windows``
  with ``context_len`` (default 1, lm-eval's choice): each window feeds ``max_length`` tokens,
  the first window is prefixed by ``prefix_token_id`` (BOS, else EOS), and the stride is
  ``max_length - context_len + 1`` predicted tokens per window; the last window keeps a full
  context. Every token is predicted exactly once. Windows of all documents are scored in
  left-padded batches of at most ``batch_tokens`` tokens (``tmbench.scoring``; AR models,
  others one by one).
- ``max_length`` defaults to the model's context minus one (``token_logprobs`` also feeds the
  last, scored token), capped at 2048.
"""

from __future__ import annotations

from typing import Any

import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM

from tmbench.scoring import context_length, token_logprobs_batched


class ScoringLM(TemplateLM):
    """A tmbench model as an lm-eval ``LM`` that scores text (``loglikelihood``,
    ``loglikelihood_rolling``); generation is :class:`tmbench.lm_eval_adapter.TmbenchLM`'s."""

    backend = "causal"

    def __init__(self, model: Any, *, max_length: int | None = None, context_len: int = 1,
                 max_gen_toks: int = 256, prefix_token_id: int | None = None,
                 batch_tokens: int = 2048):
        super().__init__()
        if getattr(model, "tokenizer", None) is None or not hasattr(model, "token_logprobs"):
            raise ValueError(f"{type(self).__name__} needs a model with .tokenizer and .token_logprobs(seqs)")
        self.model, self.tok = model, model.tokenizer
        ctx = context_length(model)
        if max_length is None:
            if ctx is None:
                raise ValueError(f"cannot tell the context length of {type(model).__name__}; "
                                 "pass max_length=")
            max_length = min(ctx - 1, 2048)
        if max_length < 2 or (ctx is not None and max_length > ctx - 1):
            raise ValueError(f"max_length must be in [2, context - 1 = {ctx and ctx - 1}], "
                             f"got {max_length}")
        if not 1 <= context_len <= max_length:
            raise ValueError(f"context_len must be in [1, max_length], got {context_len}")
        self._max_length, self.context_len = int(max_length), int(context_len)
        self._max_gen_toks, self.batch_tokens = int(max_gen_toks), int(batch_tokens)
        bos = getattr(self.tok, "bos_token_id", None)
        if bos is None:
            bos = getattr(getattr(self.tok, "tok", None), "bos_token_id", None)
        self._prefix = prefix_token_id if prefix_token_id is not None else (
            bos if bos is not None else self.tok.eos_token_id)
        if self._prefix is None:
            raise ValueError("the tokenizer has neither BOS nor EOS; pass prefix_token_id=")
        self.token_counts: dict[str, int] = {}  # rolling requests: string -> scored tokens

    # ---- what TemplateLM asks for ---------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tok.eos_token_id if self.tok.eos_token_id is not None else self._prefix

    @property
    def prefix_token_id(self) -> int:
        return self._prefix

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kw) -> list[int]:
        return list(self.tok.encode(string))

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tok.decode(list(tokens) if not isinstance(tokens, int) else [tokens])

    def identity(self) -> dict[str, Any]:
        ident = self.model.identity() if hasattr(self.model, "identity") else {}
        return {"model": ident, "max_length": self.max_length, "context_len": self.context_len,
                "stride": self.max_length - self.context_len + 1, "prefix_token_id": self._prefix}

    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval's ``simple_evaluate`` adds to the ``config`` of its results."""
        ident = self.identity()
        model = ident["model"]
        return {"model_name": model.get("name"), "model_dtype": model.get("dtype"),
                "model_sha": model.get("content_hash"), "tmbench_adapter": ident}

    # ---- scoring ---------------------------------------------------------------------------
    def _score(self, seq: list[int], n_cont: int, greedy: bool) -> tuple[float, bool]:
        """Sum of log p of the last ``n_cont`` tokens of ``seq`` and whether each is argmax
        (AR models: one forward for both; other models: ``token_logprobs``, never greedy)."""
        m = self.model
        if greedy and getattr(m, "kind", None) == "ar" and hasattr(m, "forward"):
            ids = torch.tensor([seq], device=m.device)  # (1, T)
            pos = torch.arange(len(seq) - 1, device=m.device)[None]
            with torch.no_grad():
                logits = m.forward(ids[:, :-1], torch.ones_like(pos), pos, None)[0]  # (1, T-1, V)
            logits, tgt = logits[0, -n_cont:].float(), ids[0, -n_cont:]  # (n, V), (n,)
            lp = logits.log_softmax(-1).gather(-1, tgt[:, None])[:, 0]
            return float(lp.double().sum()), bool((logits.argmax(-1) == tgt).all())
        lp = m.token_logprobs([seq])[0][-n_cont:]  # (n_cont,)
        return float(lp.double().sum()), False

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kw):
        out = []
        for strings, ctx, cont in requests:
            assert 0 < len(cont) <= self.max_length
            seq = (ctx + cont)[-(self.max_length + 1):]
            out.append(self._score(seq, len(cont), greedy=True))
            self.cache_hook.add_partial("loglikelihood", strings, out[-1])
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        strings = [r.args[0] for r in requests]
        jobs: list[tuple[int, list[int], int]] = []  # (request, window input, scored tokens)
        for k, string in enumerate(strings):
            tokens = self.tok_encode(string)
            self.token_counts[string] = len(tokens)
            for ctx, cont in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=tokens, prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=self.context_len)):
                jobs.append((k, ctx + cont, len(cont)))
        totals = [0.0] * len(strings)
        for (k, _, n), lp in zip(jobs, token_logprobs_batched(self.model, [j[1] for j in jobs],
                                                              self.batch_tokens)):
            totals[k] += float(lp[len(lp) - n:].sum())
        for string, total in zip(strings, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        raise NotImplementedError("ScoringLM scores text only; generate with "
                                  "tmbench.lm_eval_adapter.TmbenchLM")
