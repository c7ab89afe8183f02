"""Maturation dynamics (TM runs only; any other run returns nothing).

Reads what the ``maturation`` decoder writes with ``trace=True``: per sample, a
:class:`tmbench.types.Trace` in ``Sample.info["trace"]`` (the format is described there), and
``Sample.info["agree_front_argmax"]`` (share of commits equal to the argmax of the front slot's
final prediction, DESIGN 3.3).

Keys (per sample = mean over the sample's committed tokens; value = mean over samples):
``entropy_first[scale=S]``, ``entropy_final[scale=S]``, ``displacement_first``,
``displacement_final``, ``cos_final_first``, ``cos_final_last``, ``agree_front_argmax``, and
the agreement with K = 1: the same decoder and parameters rerun with ``tail_len=1`` on the
samples' prompts, each under the run's own generator for that prompt, compared position by position:
``k1_agree[mode=prefix]`` = share of the sample's positions before the first divergence,
``k1_agree[mode=position]`` = share of positions with the same token. Sequence agreement
compounds (one early divergence changes everything after it), so read the conditional
``agree_front_argmax`` first (DESIGN 3.3). Mean curves over the update index are in
``meta["curve"]`` of the ``entropy_final`` / ``displacement_final`` / ``cos_final_last`` keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tmbench.types import DecodeOutput, MetricContext, Sample, Score, metric_key, prompt_generator


def dynamics(samples: list[Sample], *, ctx: MetricContext, k1_agreement: bool = True,
             k1_batch_size: int = 16) -> dict[str, Score]:
    traces = [s.info.get("trace") for s in samples]
    if getattr(ctx.model, "kind", None) != "tm" or not samples:
        return {}
    out: dict[str, Score] = {}
    if any(traces):
        out.update(_trace_scores(traces, ctx))
    else:
        ctx.notes.append("no maturation trace in these samples (decode with trace=true)")
    agree = [s.info.get("agree_front_argmax") for s in samples]
    if all(a is not None for a in agree):
        per = [float(a) for a in agree]
        out["agree_front_argmax"] = Score(float(np.mean(per)), per, None, {
            "definition": "share of commits equal to the argmax of the front slot's final "
                          "prediction (from the decoder)"})
    if k1_agreement:
        out.update(_k1_agreement(samples, ctx, k1_batch_size))
    return out


def _mean_curve(rows: list[list[float]]) -> tuple[list[float], list[int]]:
    """Mean over tokens at each update index (tokens may have fewer updates), and counts."""
    K = max((len(r) for r in rows), default=0)
    sums, counts = np.zeros(K), np.zeros(K, dtype=np.int64)
    for r in rows:
        sums[:len(r)] += np.asarray(r, dtype=np.float64)
        counts[:len(r)] += 1
    return (sums / np.maximum(counts, 1)).tolist(), counts.tolist()


def _per_sample(traces, get) -> list[float]:
    """Per sample, the mean over its committed tokens of get(row) (NaN without tokens)."""
    out = []
    for t in traces:
        vals = [get(r) for r in (t or []) if len(r)]
        out.append(float(np.mean(vals)) if vals else float("nan"))
    return out


def _score(per: list[float], meta: dict[str, Any]) -> Score:
    ok = [p for p in per if not np.isnan(p)]
    return Score(float(np.mean(ok)) if ok else float("nan"), per if len(ok) == len(per) else None,
                 None, meta | {"n_samples": len(ok)})


def _scale_label(s: str) -> Any:
    try:
        return float(s)
    except ValueError:
        return s


def _trace_scores(traces: list[dict | None], ctx: MetricContext) -> dict[str, Score]:
    out: dict[str, Score] = {}
    scales = sorted({k for t in traces if t for k in t.get("entropy", {})}, key=str)
    for sc in scales:
        rows = [(t or {}).get("entropy", {}).get(sc) for t in traces]
        curve, counts = _mean_curve([r for rs in rows if rs for r in rs])
        meta = {"scale": sc, "unit": "nats of the induced distribution softmax(scale * cos)",
                "curve": {"x": "update index (0 = first update)", "mean": curve, "n": counts}}
        lab = _scale_label(sc)
        out[metric_key("entropy_first", scale=lab)] = _score(_per_sample(rows, lambda r: r[0]), meta)
        out[metric_key("entropy_final", scale=lab)] = _score(_per_sample(rows, lambda r: r[-1]), meta)
    for field, first, last, what in (
            ("displacement", "displacement_first", "displacement_final", "||z(k+1) - z(k)|| / R"),
            ("cos_final", "cos_final_first", "cos_final_last", "cos(z(k), committed embedding)")):
        rows = [(t or {}).get(field) for t in traces]
        if not any(rows):
            continue
        curve, counts = _mean_curve([r for rs in rows if rs for r in rs])
        meta = {"definition": what, "curve": {"x": "update index (0 = first update)",
                                              "mean": curve, "n": counts}}
        out[first] = _score(_per_sample(rows, lambda r: r[0]), meta)
        out[last] = _score(_per_sample(rows, lambda r: r[-1]), meta)
    return out


def _k1_agreement(samples: list[Sample], ctx: MetricContext, batch_size: int) -> dict[str, Score]:
    params = dict(ctx.decode_info.get("params", {}))
    if params.get("tail_len") == 1:
        ctx.notes.append("this run is K=1 already; agreement with K=1 not computed")
        return {}
    try:
        from tmbench.decoders.maturation import maturation
    except ImportError as e:
        ctx.notes.append(f"agreement with K=1 skipped ({e})")
        return {}
    for k in ("tail_len", "trace", "max_new_tokens", "generator"):
        params.pop(k, None)
    if params.get("sample_commit") or params.get("sigma_dyn", 0.0):
        ctx.notes.append("the decoder is stochastic; agreement with K=1 mixes noise in")
    max_new = int(ctx.decode_info.get("max_new_tokens") or max(len(s.token_ids) for s in samples))
    # the K=1 decode of sample i draws from the generator the run gave sample i, so the
    # comparison changes K only (not the embryo noise's seed)
    ref: list[list[int]] = []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i:i + batch_size]
        gens = [prompt_generator(s.seed, i + j) for j, s in enumerate(chunk)]
        with torch.inference_mode():
            res = maturation(ctx.model, [list(s.prompt_ids) for s in chunk], max_new_tokens=max_new,
                             generator=gens, tail_len=1, **params)
        toks = res.tokens if isinstance(res, DecodeOutput) else res
        ref.extend(list(map(int, t)) for t in toks)
    prefix, pos = [], []
    for s, b in zip(samples, ref):
        a = list(s.token_ids)
        if not a:
            prefix.append(float("nan"))
            pos.append(float("nan"))
            continue
        same = [i < len(b) and a[i] == b[i] for i in range(len(a))]
        first = same.index(False) if False in same else len(a)
        prefix.append(first / len(a))
        pos.append(sum(same) / len(a))
    meta = {"k1_params": params | {"tail_len": 1, "max_new_tokens": max_new},
            "generator": "the run's own per-prompt generators (seed * 1000003 + position)",
            "run_tail_len":
                ctx.decode_info.get("params", {}).get("tail_len", "decoder default")}
    return {
        metric_key("k1_agree", mode="prefix"): _score(prefix, meta | {
            "definition": "share of the sample's positions before the first divergence"}),
        metric_key("k1_agree", mode="position"): _score(pos, meta | {
            "definition": "share of the sample's positions holding the K=1 token"}),
    }
