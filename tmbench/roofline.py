"""The roofline bound of a timed forward (Williams, Waterman & Patterson, "Roofline", CACM 2009).

Pure arithmetic, no torch. A forward of ``tokens`` positions through a model of ``params``
parameters costs about 2 x params x tokens FLOPs (one multiply-add per weight per token), plus
the attention's 4 x layers x q_dim x context FLOPs per token (QK^T and the weighted sum of V;
PaLM, Chowdhery et al. 2022, appendix B). It reads every weight once (``weight_bytes``) and,
in decoding, the KV cache of every row at the step's context length (2 tensors x layers x
kv_dim x element bytes per cached position). Its arithmetic intensity (FLOPs per byte) against
the machine's ridge point (peak FLOP/s over bandwidth) says which limit binds: below the ridge,
bandwidth (share = achieved bytes/s over the bandwidth), at or above it, compute (share =
achieved FLOP/s over the peak). A share above 1 is impossible: it flags a wrong model size,
wrong peaks, or a decoder that does less work per step than this count assumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Work:
    flops: float
    bytes: float

    def __add__(self, other: "Work") -> "Work":
        return Work(self.flops + other.flops, self.bytes + other.bytes)

    def __mul__(self, k: float) -> "Work":
        return Work(self.flops * k, self.bytes * k)


def kv_token_bytes(layers: int, kv_dim: int, elem_bytes: float) -> float:
    """Bytes one cached position holds: keys and values of every layer."""
    return 2 * layers * kv_dim * elem_bytes


def decode_step(params: float, weight_bytes: float, rows: int, context: float, *,
                positions: int = 1, layers: int = 0, q_dim: int = 0,
                kv_bytes: float = 0.0) -> Work:
    """One decoding forward: ``rows`` sequences each feeding ``positions`` new positions that
    attend over ``context`` cached positions (``kv_bytes`` each, :func:`kv_token_bytes`)."""
    tokens = rows * positions
    flops = 2 * params * tokens + 4 * layers * q_dim * context * tokens
    return Work(flops, weight_bytes + rows * context * kv_bytes)


def prefill(params: float, weight_bytes: float, rows: int, length: int, *, layers: int = 0,
            q_dim: int = 0, kv_bytes: float = 0.0) -> Work:
    """The prompt's forward: ``rows`` x ``length`` positions, causal attention (position i
    attends i + 1 positions, length (length + 1) / 2 in all per row); reads the weights and
    writes the cache."""
    flops = 2 * params * rows * length + 4 * layers * q_dim * rows * length * (length + 1) / 2
    return Work(flops, weight_bytes + rows * length * kv_bytes)


def bound(work: Work, seconds: float, peak_flops: float, bandwidth: float) -> dict[str, Any]:
    """Which limit binds ``work`` done in ``seconds``, and the share of it achieved, with every
    intermediate: intensity (FLOP/byte), ridge (FLOP/byte), achieved FLOP/s and bytes/s."""
    intensity = work.flops / work.bytes
    ridge = peak_flops / bandwidth
    achieved_flops, achieved_bw = work.flops / seconds, work.bytes / seconds
    compute = intensity >= ridge
    return {**asdict(work), "seconds": seconds, "intensity": intensity, "ridge": ridge,
            "bound": "compute" if compute else "bandwidth",
            "achieved_flops": achieved_flops, "achieved_bandwidth": achieved_bw,
            "peak_flops": peak_flops, "bandwidth": bandwidth,
            "share": achieved_flops / peak_flops if compute else achieved_bw / bandwidth}
