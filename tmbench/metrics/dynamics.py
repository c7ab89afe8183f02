"""Maturation dynamics (TM runs only; any other run returns nothing).

Reads what the ``maturation`` decoder writes with ``trace=True``: per sample, a
:class:`tmbench.types.Trace` in ``Sample.info["trace"]`` (the format is described there), a
:class:`tmbench.types.TailHealth` in ``Sample.info["tail"]`` (also with ``health=True``), and
``Sample.info["agree_front_argmax"]`` (share of commits equal to the argmax of the front slot's
final prediction, DESIGN 3.3).

Keys (per sample = mean over the sample's committed tokens; value = mean over samples):
``entropy_first[scale=S]``, ``entropy_final[scale=S]``, ``displacement_first``,
``displacement_final``, ``cos_final_first``, ``cos_final_last``, ``agree_front_argmax``, and
the tail health of DESIGN 3.4 item 8 (``tmbench.tm.health``; per sample = mean over its
committing steps): ``tail_norm_ratio``, ``tail_copy_rate``, ``tail_readability``,
``tail_distinct``. Mean
curves over the update index are in ``meta["curve"]`` of the ``entropy_final`` /
``displacement_final`` / ``cos_final_last`` keys.

The metric reads what the decoder wrote and generates nothing. Agreement with K = 1
(``k1_agree``) is a comparison of two rows, the TM row and a K = 1 row of the same suite, made
from their records by :mod:`tmbench.agreement`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tmbench.types import MetricContext, Sample, Score, metric_key


def dynamics(samples: list[Sample], *, ctx: MetricContext) -> dict[str, Score]:
    """Maturation dynamics of TM runs: tail entropy, displacement, front agreement (DESIGN 3.3).

    From the ``maturation`` decoder's trace (Naparstek, arXiv 2601.04854); other runs give
    nothing."""
    traces = [s.info.get("trace") for s in samples]
    if getattr(ctx.model, "kind", None) != "tm" or not samples:
        return {}
    out: dict[str, Score] = {}
    tails = [s.info.get("tail") for s in samples]
    if all(tails):
        out.update(_tail_scores(tails))
    if any(traces):
        out.update(_trace_scores(traces, ctx))
    elif not all(tails):
        ctx.notes.append("no maturation trace in these samples (decode with trace=true)")
    agree = [s.info.get("agree_front_argmax") for s in samples]
    if all(a is not None for a in agree):
        per = [float(a) for a in agree]
        out["agree_front_argmax"] = Score(float(np.mean(per)), per, None, {
            "definition": "share of commits equal to the argmax of the front slot's final "
                          "prediction (from the decoder)"})
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


TAIL = {  # key: (trace field, definition)
    "tail_copy_rate": ("copy", "share of tail slots behind the front whose nearest token equals "
                               "that of the slot ahead (collapse = 1)"),
    "tail_readability": ("readable", "share of tail slots whose prediction's nearest token equals "
                                     "the prediction with the tail's nearest tokens fed as exact "
                                     "embeddings (as text); under readout next the front slot, "
                                     "read from committed history, is left out"),
    "tail_distinct": ("distinct", "distinct nearest tokens over the tail's slots, as a share of "
                                  "K, averaged over steps"),
}


def _tail_scores(tails: list[dict]) -> dict[str, Score]:
    """Tail health from the samples' ``info["tail"]`` (:class:`tmbench.types.TailHealth`)."""
    out: dict[str, Score] = {}

    def mean(xs):
        xs = [x for x in xs if x == x]
        return float(np.mean(xs)) if xs else float("nan")

    per = [mean(t["fed_norm"]) / t["train_norm"] if t.get("train_norm") else float("nan")
           for t in tails]
    if any(p == p for p in per):
        out["tail_norm_ratio"] = _score(per, {
            "definition": "mean norm of the vectors fed back as tail inputs over the mean norm "
                          "of the tail inputs training builds (alpha e + (1 - alpha) n); "
                          "healthy near 1"})
    for key, (field, what) in TAIL.items():
        per = [mean(t[field]) for t in tails]
        if any(p == p for p in per):
            out[key] = _score(per, {"definition": what})
    return out
