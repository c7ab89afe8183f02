"""Repetition: rep-n, seq-rep-n, Loop% and the longest repeated span, on tokens and on words.

Keys (``U`` = ``token`` or ``wordpunct``, words with punctuation split off; see
:mod:`tmbench.metrics.ngrams`):

- ``rep[n=N,unit=U]``: 1 - sum_i unique_i / sum_i total_i, n-gram counts pooled over samples
  (SimCTG, Su et al. 2022). Pooled, so ``per_sample`` is None.
- ``seq_rep[n=N,unit=U]``: mean over samples of 1 - unique_i / total_i (Welleck et al. 2020,
  "seq-rep-n"; it is also the per-sample mean of rep-n). Samples with fewer than n units
  count as 0 and are counted in ``meta["no_ngrams"]``.
- ``loop[n=3,unit=U]``: share of samples containing any repeated n-gram (trigram by default),
  the Token Maturation paper's Loop% divided by 100. Human BBC text over 96 tokens scores about
  0.5 here because of trigrams like "of the", so read it next to the human row.
- ``longest_repeat[unit=U]``: mean length (in units) of the longest span occurring twice in a
  sample; occurrences may overlap.

All lower-is-better.
"""

from __future__ import annotations

import numpy as np

from tmbench.metrics.ngrams import (WORDPUNCT, check_ns, check_units, eos_of, has_units,
                                    intern, longest_repeat, ngram_stats, sample_units)
from tmbench.types import MetricContext, Sample, Score, metric_key


def repetition(samples: list[Sample], *, ctx: MetricContext, ns=(2, 3, 4),
               units=("token", "wordpunct"), loop_n: int = 3) -> dict[str, Score]:
    """Repetition within samples: rep-n (Su et al. 2022), seq-rep-n (Welleck et al. 2020), Loop%.

    Lower is less repetitive; keys and definitions are in the module docstring."""
    ns, units = check_ns(ns), check_units(units, ctx.notes)
    (loop_n,) = check_ns(loop_n, "loop_n")
    if not samples:
        return {}
    out: dict[str, Score] = {}
    eos = eos_of(ctx)
    for unit in units:
        if not has_units(samples, unit):
            ctx.notes.append(f"no token ids in these samples; unit={unit} skipped")
            continue
        seqs = intern(sample_units(samples, unit, eos))
        common = {"unit": unit, "n_samples": len(samples),
                  "unit_definition": "generator token ids" if unit == "token" else WORDPUNCT,
                  "eos": "one trailing EOS removed" if unit == "token" else None}
        for n in ns:
            st = ngram_stats(seqs, n)
            uniq, tot = st.unique, st.total
            T = int(tot.sum())
            out[metric_key("rep", n=n, unit=unit)] = Score(
                1.0 - float(uniq.sum()) / T if T else float("nan"), None, False,
                {**common, "definition": "1 - sum unique / sum total, pooled (SimCTG)",
                 "unique": int(uniq.sum()), "total": T})
            per = [1.0 - u / t if t else 0.0 for u, t in zip(uniq.tolist(), tot.tolist())]
            out[metric_key("seq_rep", n=n, unit=unit)] = Score(
                float(np.mean(per)), per, False,
                {**common, "definition": "mean over samples of 1 - unique/total (Welleck 2020)",
                 "no_ngrams": int((tot == 0).sum())})
        st = ngram_stats(seqs, loop_n)
        looped = [float(u < t) for u, t in zip(st.unique.tolist(), st.total.tolist())]
        out[metric_key("loop", n=loop_n, unit=unit)] = Score(
            float(np.mean(looped)), looped, False,
            {**common, "definition": f"share of samples with any repeated {loop_n}-gram "
                                     "(Token Maturation Loop%, as a fraction)"})
        spans = [float(longest_repeat(s)) for s in seqs]
        out[metric_key("longest_repeat", unit=unit)] = Score(
            float(np.mean(spans)), spans, False,
            {**common, "definition": "longest span occurring at two start positions "
                                     "(overlap allowed), in units", "max": max(spans)})
    return out
