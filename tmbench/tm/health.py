"""Tail health (DESIGN 3.4, item 8): does a TM model read its own liquid tail?

Pure functions over one maturation step's tensors; the decoder's trace (``tmbench.tm.trace``)
calls them at every committing step and the ``dynamics`` metric averages what they return.
A TM row whose tail is not healthy says nothing about maturation (DESIGN 3.3, fourth look).

- ``copy_share``: share of tail slots behind the front whose nearest token equals that of the
  slot ahead of them (collapse onto one token shows as 1);
- ``distinct_share``: distinct nearest tokens over the tail's slots, as a share of K;
- ``agree_share``: share of slots (from ``first`` on) whose two token readings agree: the slot's
  prediction from the fed-back tail against the prediction the model makes when the tail's own
  nearest tokens are fed as exact embeddings, as text (``tail_readability``);
- ``tail_norm_ratio`` is the mean norm of the fed-back tail inputs over the mean norm of the
  tail inputs training builds (``MaturationModel.training_tail_norm``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that need it, so that tables (which read HEALTHY and
# is_healthy) render without it
HEALTHY = {"tail_readability": (0.5, None), "tail_copy_rate": (None, 0.3),
           "tail_norm_ratio": (0.5, 2.0)}  # DESIGN 3.4 item 8: (lowest, highest) healthy value


def copy_share(tok: torch.Tensor) -> torch.Tensor:
    """tok (B, K) nearest token of every slot, front first -> (B,) share of slots j >= 1 whose
    token equals slot j - 1's; NaN when K = 1 (no slot behind the front)."""
    import torch

    B, K = tok.shape
    if K < 2:
        return torch.full((B,), float("nan"))
    return (tok[:, 1:] == tok[:, :-1]).float().mean(-1).cpu()


def distinct_share(tok: torch.Tensor) -> torch.Tensor:
    """tok (B, K) -> (B,) number of distinct tokens in each row over K."""
    import torch

    K = tok.shape[1]
    return torch.tensor([len(set(r)) / K for r in tok.tolist()])


def agree_share(a: torch.Tensor, b: torch.Tensor, first: int = 0) -> torch.Tensor:
    """a, b (B, K) token readings -> (B,) share of slots j >= first where they agree; NaN when
    no slot is left."""
    import torch

    a, b = a[:, first:], b[:, first:]
    if a.shape[1] == 0:
        return torch.full((a.shape[0],), float("nan"))
    return (a == b).float().mean(-1).cpu()


def failures(values: dict[str, float]) -> list[str]:
    """The health thresholds (keys of ``HEALTHY``) a tail's values fail; a missing or NaN value
    fails its threshold (nothing certifies it)."""
    out = []
    for key, (lo, hi) in HEALTHY.items():
        v = values.get(key)
        if v is None or v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
            out.append(key)
    return out


def is_healthy(values: dict[str, float]) -> bool | None:
    """True when every health value meets DESIGN's thresholds, False when one fails, None when
    one is missing or NaN (nothing can be said)."""
    if any(values.get(k) is None or values[k] != values[k] for k in HEALTHY):
        return None
    return not failures(values)
