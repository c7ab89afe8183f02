"""Compression ratio: how much gzip shrinks the text (Shaib et al. 2024, "Standardizing the
Measurement of Text Diversity").

Keys (lower is better: repetitive text compresses well):

- ``compression_ratio[scope=corpus]``: UTF-8 bytes of all samples joined by newlines, divided by
  the bytes of their gzip compression: the paper's definition, which sees repetition across
  samples (the same phrase in many continuations) as well as within them.
- ``compression_ratio[scope=sample]``: the mean over samples of the same ratio per sample (per
  sample values give intervals; gzip's fixed overhead of about 20 bytes keeps short samples
  near or below 1, so compare it only between runs of equal length).

gzip at level 9 with the header's time stamp fixed, so the value is a function of the text.
"""

from __future__ import annotations

import gzip

import numpy as np

from tmbench.types import MetricContext, Sample, Score, metric, metric_key

SCOPES = ("corpus", "sample")


def ratio(text: str) -> float:
    """UTF-8 bytes / gzip bytes (level 9, time stamp 0); NaN for empty text."""
    raw = text.encode("utf-8")
    return len(raw) / len(gzip.compress(raw, compresslevel=9, mtime=0)) if raw else float("nan")


@metric
def compression_ratio(samples: list[Sample], *, ctx: MetricContext,
                      scopes=SCOPES) -> dict[str, Score]:
    """gzip compression ratio of the samples (Shaib et al. 2024), joined (corpus) and one by one."""
    scopes = [scopes] if isinstance(scopes, str) else list(scopes)
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be a non-empty list of {', '.join(SCOPES)}, got {scopes!r}")
    if not samples:
        return {}
    meta = {"definition": "UTF-8 bytes / gzip bytes (level 9)", "n_samples": len(samples)}
    out = {}
    if "corpus" in scopes:
        out[metric_key("compression_ratio", scope="corpus")] = Score(
            ratio("\n".join(s.text for s in samples)), None, False,
            meta | {"joined": "samples joined by newlines"})
    if "sample" in scopes:
        per = [ratio(s.text) for s in samples]
        ok = [p for p in per if not np.isnan(p)]
        out[metric_key("compression_ratio", scope="sample")] = Score(
            float(np.mean(ok)) if ok else float("nan"), per, False,
            meta | {"empty_samples": len(per) - len(ok)})
    return out
