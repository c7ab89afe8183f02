"""Throughput from the runner's per-batch timings (DESIGN section 4, throughput).

The runner, when a suite asks for this metric, warms up once, then for every batch times a
1-token decode (time to first token) and the full decode. Per-step latency of a batch is
``(decode wall - time to first token) / (steps - 1)``: the same definition for every decoder,
AR or TM, without hooks inside the decoder. Numbers are comparable only within one machine
fingerprint, which is recorded in ``meta``.

Where the fingerprint holds the machine's measured peaks (:mod:`tmbench.peaks`) and the model
has torch parameters, ``roofline_share[phase=decode]`` and ``roofline_share[phase=prefill]``
give the share of the binding limit (bandwidth or compute, :mod:`tmbench.roofline`) the timed
work reached, from what the record holds: the model's parameter count, weight bytes, dtype and
attention shape (``meta["model"]``), each batch's rows, padded prompt length and steps, and
the measured times. Decoding steps 2 .. S of a batch (the per-step time above) attend over
P + 1 .. P + S - 1 positions (P: the batch's longest prompt, as left padding caches it), so
their work is S - 1 steps at the mean context P + S / 2. A step feeds one position per row
unless the decoder's batch info names ``rows_per_step`` and ``positions_per_step``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from tmbench import roofline as rl
from tmbench.types import MetricContext, Sample, Score, metric_key


def throughput(samples: list[Sample], *, ctx: MetricContext) -> dict[str, Score]:
    """Throughput: tokens/s, time to first token and per-step latency from the runner's timings.

    One definition for every decoder (DESIGN section 4); comparable within one machine
    fingerprint."""
    timing = ctx.decode_info.get("timing")
    if not timing or ctx.model is None:
        return {}
    batches = timing["batches"]
    if any(b.get("ttft_s") is None for b in batches):
        return {}
    tokens = sum(b["new_tokens"] for b in batches)
    wall = sum(b["wall_s"] for b in batches)
    ttft = np.array([b["ttft_s"] for b in batches])
    step = np.array([(b["wall_s"] - b["ttft_s"]) / (b["steps"] - 1) for b in batches if b["steps"] > 1])
    meta = {"fingerprint": timing["fingerprint"], "batches": len(batches),
            "batch_size": max(b["size"] for b in batches),
            "definition": "per-step = (wall - ttft) / (steps - 1) per batch; tokens/s = generated "
                          "tokens (EOS included) / decode wall time"}
    shape = model_shape(ctx.model)
    if shape is not None:
        meta["model"] = shape
    out = {
        metric_key("tokens_per_s"): Score(tokens / wall if wall else float("nan"), None, True, meta),
        metric_key("ttft_ms", q=50): Score(float(np.percentile(ttft, 50) * 1e3), None, False, meta),
        # the run's own peak above its entry (weights loaded before are not counted)
        metric_key("peak_mem_mb", scope="run"): Score(timing["peak_memory"]["bytes"] / 2**20, None, False,
                                         meta | {"memory": timing["peak_memory"]["kind"]}),
    }
    if len(step):
        for q in (50, 90):
            out[metric_key("step_ms", q=q)] = Score(float(np.percentile(step, q) * 1e3), None, False, meta)
    peaks = timing["fingerprint"].get("peaks")
    if shape is not None and peaks:
        for phase, r in roofline(samples, batches, shape, peaks).items():
            out[metric_key("roofline_share", phase=phase)] = Score(
                r["share"], None, True, meta | {"bound": r["bound"], "roofline": r,
                                                "reliable": r["share"] <= 1.0})
    return out


def _attr(cfg: Any, *names: str) -> int | None:
    for n in names:
        v = getattr(cfg, n, None)
        if v:
            return int(v)
    return None


def model_shape(model: Any) -> dict[str, Any] | None:
    """Parameter count, weight bytes and dtype of the model's torch parameters, and its
    attention shape (layers, q_dim = heads x head_dim, kv_dim = kv heads x head_dim) where its
    config (or its backbone's) names it; None for a model without torch parameters."""
    import torch

    mod = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(mod, torch.nn.Module):
        return None
    params = list(mod.parameters())  # shared (tied) parameters once
    if not params:
        return None
    by_dtype = Counter()
    for p in params:
        by_dtype[p.dtype] += p.numel()
    dtype = by_dtype.most_common(1)[0][0]
    out = {"params": sum(by_dtype.values()),
           "weight_bytes": sum(p.numel() * p.element_size() for p in params),
           "dtype": str(dtype).replace("torch.", ""),
           "elem_bytes": torch.empty((), dtype=dtype).element_size()}
    for obj in (mod, getattr(mod, "backbone", None)):
        cfg = getattr(obj, "config", None)
        layers = _attr(cfg, "num_hidden_layers", "n_layer")
        heads = _attr(cfg, "num_attention_heads", "n_head")
        width = _attr(cfg, "hidden_size", "n_embd")
        if layers and heads and width:
            head_dim = _attr(cfg, "head_dim") or width // heads
            kv_heads = _attr(cfg, "num_key_value_heads") or heads
            return out | {"layers": layers, "q_dim": heads * head_dim, "kv_dim": kv_heads * head_dim}
    return out | {"layers": 0, "q_dim": 0, "kv_dim": 0}  # attention not counted


def roofline(samples: list[Sample], batches: list[dict], shape: dict[str, Any],
             peaks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{phase: :func:`tmbench.roofline.bound` of the phase's work summed over batches} for
    ``decode`` (steps 2 .. S) and ``prefill`` (the time to first token); {} when the peaks
    have no FLOP/s for the model's dtype or a batch's samples are not all at hand."""
    peak = (peaks.get("flops") or {}).get(shape["dtype"])
    if not peak or not peaks.get("bandwidth") or any(b["start"] + b["size"] > len(samples)
                                                      for b in batches):
        return {}
    n, w = shape["params"], shape["weight_bytes"]
    arch = {"layers": shape["layers"], "q_dim": shape["q_dim"],
            "kv_bytes": rl.kv_token_bytes(shape["layers"], shape["kv_dim"], shape["elem_bytes"])}
    dec, pre, dec_s, pre_s = rl.Work(0.0, 0.0), rl.Work(0.0, 0.0), 0.0, 0.0
    for b in batches:
        P = max(len(samples[i].prompt_ids) for i in range(b["start"], b["start"] + b["size"]))
        pre, pre_s = pre + rl.prefill(n, w, b["size"], P, **arch), pre_s + b["ttft_s"]
        if b["steps"] > 1:
            info = b.get("batch_info") or {}
            step = rl.decode_step(n, w, info.get("rows_per_step", b["size"]), P + b["steps"] / 2,
                                  positions=info.get("positions_per_step", 1), **arch)
            dec, dec_s = dec + step * (b["steps"] - 1), dec_s + b["wall_s"] - b["ttft_s"]
    out = {"prefill": rl.bound(pre, pre_s, peak, peaks["bandwidth"])} if pre_s > 0 else {}
    if dec_s > 0:
        out["decode"] = rl.bound(dec, dec_s, peak, peaks["bandwidth"])
    return out
