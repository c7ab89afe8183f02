"""Throughput from the runner's per-batch timings (DESIGN section 4, throughput).

The runner, when a suite asks for this metric, warms up once, then for every batch times a
1-token decode (time to first token) and the full decode. Per-step latency of a batch is
``(decode wall - time to first token) / (steps - 1)``: the same definition for every decoder,
AR or TM, without hooks inside the decoder. Numbers are comparable only within one machine
fingerprint, which is recorded in ``meta``.
"""

from __future__ import annotations

import numpy as np

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
    return out
