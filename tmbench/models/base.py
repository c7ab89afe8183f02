"""The autoregressive model interface every AR decoder talks to.

A backend implements two methods, ``forward`` and ``select_cache`` (and may override
``forward_last`` to skip the LM head on all but the last position); the shared methods
``prefill``, ``step`` and ``select`` handle left padding, position ids and the attention mask,
so decoders never see padding. Batches are left-padded: row b's prompt occupies the last
``len(prompt_b)`` columns of the prefill. ``prefill`` and ``step`` run under
``torch.inference_mode``: what they return (logits, hidden states, cache) is for decoding only
and takes no in-place update outside inference mode.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from tmbench.scoring import context_length
from tmbench.types import DecodeState, StepOutput


class NonFiniteError(FloatingPointError):
    """NaN or inf where a model must produce finite numbers; names the model, step and rows."""


def check_finite(x: torch.Tensor, model: str, where: str) -> None:
    # one reduction instead of an elementwise test per step: a NaN or inf makes the sum
    # non-finite; a finite sum that overflows only costs the exact test below
    if torch.isfinite(x.sum()) or torch.isfinite(x).all():
        return
    rows = (~torch.isfinite(x)).flatten(1).any(1).nonzero()[:, 0].tolist()
    raise NonFiniteError(f"model {model!r} produced NaN/inf {where} in batch rows {rows}")


class ARModel(abc.ABC):
    """Base class for causal LMs that produce next-token logits."""

    kind = "ar"
    name: str
    vocab_size: int
    eos_token_id: int | None
    tokenizer: Any
    device: torch.device

    # ---- backend: implement these two --------------------------------------------------
    @abc.abstractmethod
    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, S + T) over cache and new tokens
        position_ids: torch.Tensor,  # (B, T)
        cache: Any,  # None on prefill
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Return logits (B, T, V), last-layer hidden states (B, T, H) and the new cache."""

    @abc.abstractmethod
    def select_cache(self, cache: Any, index: torch.Tensor) -> Any:
        """Rows ``index`` (N,) of the cache, in that order (beam reordering, expansion)."""

    def forward_last(self, input_ids, attention_mask, position_ids, cache):
        """``forward`` with logits at the last position only (B, 1, V); hidden states and cache
        as ``forward``. What ``prefill`` and ``step`` call: a backend that can skip the LM
        head on the other positions overrides it."""
        logits, hidden, cache = self.forward(input_ids, attention_mask, position_ids, cache)
        return logits[:, -1:], hidden, cache

    def identity(self) -> dict[str, Any]:
        """What identifies this model in a run record (name, content hash, dtype)."""
        return {"name": self.name}

    def context_length(self) -> int | None:
        """Positions the model can attend over, read from its backbone or transformers config
        (:func:`tmbench.scoring.context_length`); None when it cannot tell."""
        return context_length(self)

    # ---- shared -------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], keep_hidden: bool = False) -> StepOutput:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        B, S = len(prompts), max(len(p) for p in prompts)
        ids = torch.zeros(B, S, dtype=torch.long)
        mask = torch.zeros(B, S, dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, S - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[b, S - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # pads get position 0; they are masked anyway
        logits, hidden, cache = self.forward_last(ids, mask, pos, None)
        state = DecodeState(cache, mask, pos[:, -1] + 1, hidden if keep_hidden else None)
        last = logits[:, -1].float()
        check_finite(last, self.name, "in the prefill logits")
        return StepOutput(last, hidden[:, -1], state)

    @torch.inference_mode()
    def step(self, state: DecodeState, tokens: torch.Tensor) -> StepOutput:
        """Feed one token per row (B,) and return the logits for the following position."""
        mask = torch.cat([state.attention_mask, state.attention_mask.new_ones(len(tokens), 1)], 1)
        pos = state.positions[:, None]
        logits, hidden, cache = self.forward_last(tokens[:, None].to(self.device), mask, pos,
                                                  state.cache)
        new = DecodeState(cache, mask, state.positions + 1, None)
        new.steps = state.steps + 1
        last = logits[:, -1].float()
        check_finite(last, self.name, f"in the logits at decoding step {new.steps}")
        return StepOutput(last, hidden[:, -1], new)

    def select(self, state: DecodeState, index: torch.Tensor) -> DecodeState:
        index = index.to(self.device)
        ph = state.prompt_hidden[index] if state.prompt_hidden is not None else None
        return DecodeState(
            self.select_cache(state.cache, index), state.attention_mask[index],
            state.positions[index], ph, state.steps,
        )

    @torch.no_grad()
    def token_logprobs(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """log p(x_t | x_<t) for t = 1..T-1 of each sequence (teacher-forced, one forward).
        Sequences must fit the model's context; windowing is the caller's job."""
        out = []
        for s in seqs:
            if len(s) < 2:
                out.append(torch.zeros(0))
                continue
            ids = torch.tensor([s], device=self.device)
            mask = torch.ones_like(ids)
            pos = torch.arange(len(s), device=self.device)[None]
            logits, _, _ = self.forward(ids, mask, pos, None)
            lp = torch.log_softmax(logits[0, :-1].float(), -1)
            out.append(lp.gather(-1, ids[0, 1:, None])[:, 0].cpu())
        return out
