"""The floor of maturation decoding's cost per committed token.

Each committed token costs the decoder one forward of the pending token and the forwarded
tail slots (K - 1 under readout ``next``, K under ``self``) against the KV cache of the
committed prefix; under guidance that forward has 2B rows (the unguided pass under the
tail-only mask). :func:`tail_forward` builds every input of that forward beforehand and
returns a callable that runs it alone, so a benchmark can set the decoder's time per token
against it: what is left over is the loop around the forward.
"""

from __future__ import annotations

from typing import Callable

import torch

from tmbench.tm.model import MaturationModel, tail_mask


def tail_forward(tm: MaturationModel, B: int, K: int, cached: int, guided: bool = False,
                 alpha_max: float = 0.75, seed: int = 0) -> Callable[[], None]:
    """A zero-argument callable: one tail forward of ``B`` rows (``2B`` if ``guided``) against
    a cache of ``cached`` random committed tokens, cropped back after each call so that every
    call does the same work."""
    S, d, dev = cached, tm.d, tm.device
    n = K - tm.readout_shift  # forwarded tail slots
    T = 1 + n  # the pending token and the tail
    R = 2 * B if guided else B  # rows per forward
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ids = torch.randint(0, tm.vocab_size, (R, S), generator=g).to(dev)
        real = torch.ones(R, S, dtype=torch.long, device=dev)
        cache = tm.prefill(ids, real, torch.arange(S, device=dev)[None].expand(R, S))
    z = (torch.randn(R, T, d, generator=g) * tm.radius / d ** 0.5).to(dev, tm.dtype)
    profile = tm.alpha_profile(K, alpha_max)[:n]
    alpha = torch.cat([profile.new_ones(1), profile])[None].expand(R, T)
    tail = (torch.arange(T, device=dev) >= 1)[None].expand(R, T)
    k = torch.full((R,), K, dtype=torch.long, device=dev)
    pos = (S + torch.arange(T, device=dev))[None].expand(R, T)
    mask = tail_mask(torch.ones(R, S + T, dtype=torch.long, device=dev), T, tail_start=S + 1,
                     tail_only=torch.arange(R, device=dev) >= B)

    @torch.no_grad()
    def run() -> None:
        _, c = tm(z, alpha, tail, k, pos, mask, cache)
        tm.crop_cache(c, S)

    return run
