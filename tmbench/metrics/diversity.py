"""Diversity: distinct-n, the SimCTG diversity product, Self-BLEU, novelty across samples,
n-gram entropy and the Zipf coefficient; on tokens and on words (unit named in every key:
``token`` or ``wordpunct``, words with punctuation split off, see :mod:`tmbench.metrics.ngrams`).

Scopes: ``sample`` = within each sample, averaged over samples; ``prompt`` = the samples of one
prompt pooled (samples with the same ``prompt_index`` in this call; only when some prompt has
at least two samples), the group's value given to each of its samples; ``corpus`` = all samples
of the call pooled.

Keys:

- ``distinct[n,scope,unit]``: distinct n-grams / n-gram occurrences (Li et al. 2016). Higher is
  more diverse.
- ``div[unit]``: prod over n=2..4 of (1 - rep-n), rep-n pooled over samples (SimCTG, Su et al.
  2022), i.e. prod of sum_i unique_i / sum_i total_i.
- ``ngram_entropy[n,scope,unit]``: Shannon entropy (nats) of the n-gram frequency distribution
  (Zhang et al. 2018 "Ent-n").
- ``self_bleu[level,n,refs,unit]``: each sample against the other samples as references
  (Zhu et al. 2018). ``refs=all``: every other sample of the call; ``refs=prompt``: the other
  samples of the same prompt. ``level=sentence``: mean of nltk ``sentence_bleu`` (per sample);
  ``level=corpus``: nltk ``corpus_bleu`` over all hypotheses. Lower is more diverse; identical
  samples give 1. See :mod:`tmbench.metrics.selfbleu` for the smoothing and the nltk parity.
- ``novel[n,refs,unit]``: share of a sample's distinct n-grams that no other sample (of the
  call, or of its prompt) contains; identical samples give 0.
- ``zipf[unit]``: Zipf coefficient s of the pooled unigram counts, fitted as in Holtzman et al.
  2020 (``degen/metrics/zipf.py``): ordinary least squares of ln(count) on ln(rank) over ranks
  1..min(V, 5000), s = -slope. Neither higher nor lower is better; compare with the human row.
"""

from __future__ import annotations

import numpy as np

from tmbench.metrics.ngrams import (WORDPUNCT, NgramStats, check_ns, check_units,
                                    entropy_of_counts, eos_of, has_units, intern,
                                    ngram_occurrences, ngram_stats, per_owner_entropy,
                                    prompt_groups, sample_units)
from tmbench.metrics.selfbleu import SMOOTHINGS, self_bleu
from tmbench.types import MetricContext, Sample, Score, metric_key

SCOPES = ("sample", "prompt", "corpus")
REFS = ("all", "prompt")


def diversity(samples: list[Sample], *, ctx: MetricContext, ns=(1, 2, 3, 4),
              units=("token", "wordpunct"), scopes=SCOPES, entropy_ns=(1, 2, 3, 4),
              self_bleu_n: int = 4, self_bleu_refs=REFS, smoothing: str = "method1",
              novel_ns=(2,), zipf_max_rank: int = 5000) -> dict[str, Score]:
    """Diversity: distinct-n (Li et al. 2016), Self-BLEU (Zhu et al. 2018), entropy, novelty, Zipf.

    Within samples, per prompt and over the corpus; keys and definitions are in the module
    docstring."""
    ns, entropy_ns, novel_ns = check_ns(ns), check_ns(entropy_ns, "entropy_ns"), check_ns(novel_ns, "novel_ns")
    units = check_units(units, ctx.notes)
    scopes = _check("scope", scopes, SCOPES)
    refs_list = _check("self_bleu_refs", self_bleu_refs, REFS)
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}; accepted: {', '.join(SMOOTHINGS)}")
    if not samples:
        return {}
    group = prompt_groups(samples)
    multi = int(np.bincount(group).max()) >= 2
    if not multi and ("prompt" in scopes or "prompt" in refs_list):
        ctx.notes.append("one sample per prompt in this call; scope/refs=prompt skipped")
    scopes = tuple(s for s in scopes if s != "prompt" or multi)
    refs_list = tuple(r for r in refs_list if r != "prompt" or multi)
    eos = eos_of(ctx)
    out: dict[str, Score] = {}
    for unit in units:
        if not has_units(samples, unit):
            ctx.notes.append(f"no token ids in these samples; unit={unit} skipped")
            continue
        seqs = intern(sample_units(samples, unit, eos))
        common = {"unit": unit, "n_samples": len(samples), "n_prompts": int(group.max()) + 1,
                  "unit_definition": "generator token ids" if unit == "token" else WORDPUNCT}
        stats = {n: ngram_stats(seqs, n) for n in sorted(set(ns) | set(entropy_ns) | {2, 3, 4})}
        gstats = ({n: ngram_stats(seqs, n, owner_of=group) for n in sorted(set(ns) | set(entropy_ns))}
                  if "prompt" in scopes else {})
        for n in ns:
            for scope in scopes:
                out[metric_key("distinct", n=n, scope=scope, unit=unit)] = _distinct(
                    stats[n], gstats.get(n), group, scope, common)
        for n in entropy_ns:
            for scope in scopes:
                out[metric_key("ngram_entropy", n=n, scope=scope, unit=unit)] = _entropy(
                    stats[n], gstats.get(n), group, scope, common)
        ratios = [stats[n].unique.sum() / stats[n].total.sum() if stats[n].total.sum() else
                  float("nan") for n in (2, 3, 4)]  # NaN: no sample is 4 units long
        out[metric_key("div", unit=unit)] = Score(
            float(np.prod(ratios)), None, True,
            {**common, "definition": "prod_{n=2..4} (1 - rep-n), rep-n pooled (SimCTG)",
             "one_minus_rep": [float(r) for r in ratios]})
        for refs in refs_list:
            g = group if refs == "prompt" else np.zeros(len(samples), np.int64)
            out.update(_self_bleu(seqs, g, refs, unit, self_bleu_n, smoothing, common, ctx))
            for n in novel_ns:
                out[metric_key("novel", n=n, refs=refs, unit=unit)] = _novel(seqs, g, n, common)
        out[metric_key("zipf", unit=unit)] = _zipf(seqs, zipf_max_rank, common, ctx)
    return out


def _check(name: str, values, accepted: tuple[str, ...]) -> tuple[str, ...]:
    values = (values,) if isinstance(values, str) else tuple(values)
    bad = [v for v in values if v not in accepted]
    if bad:
        raise ValueError(f"unknown {name} {bad!r}; accepted: {', '.join(accepted)}")
    return values


def _distinct(st: NgramStats, gst: NgramStats | None, group, scope: str, common) -> Score:
    meta = {**common, "scope": scope, "definition": "distinct n-grams / n-gram occurrences"}
    if scope == "corpus":
        T = int(st.total.sum())
        return Score(st.G / T if T else float("nan"), None, True, meta | {"total": T, "distinct": st.G})
    src = st if scope == "sample" else gst
    ratio = [u / t if t else 0.0 for u, t in zip(src.unique.tolist(), src.total.tolist())]
    per = ratio if scope == "sample" else [ratio[g] for g in group.tolist()]
    return Score(float(np.mean(per)), per, True, meta | {"no_ngrams": int((src.total == 0).sum())})


def _entropy(st: NgramStats, gst: NgramStats | None, group, scope: str, common) -> Score:
    meta = {**common, "scope": scope, "definition": "entropy of n-gram frequencies, nats"}
    if scope == "corpus":
        return Score(entropy_of_counts(st.corpus_counts()), None, True, meta)
    h = per_owner_entropy(st if scope == "sample" else gst).tolist()
    per = h if scope == "sample" else [h[g] for g in group.tolist()]
    return Score(float(np.mean(per)), per, True, meta)


def _self_bleu(seqs, group, refs: str, unit: str, n: int, smoothing: str, common, ctx) -> dict:
    sent, corpus = self_bleu(seqs, group, max_n=n, smoothing=smoothing)
    meta = {**common, "refs": refs, "weights": [1 / n] * n,
            "smoothing": f"nltk SmoothingFunction().{smoothing}"
                         + (" (epsilon 0.1)" if smoothing == "method1" else ""),
            "reference": "nltk.translate.bleu_score sentence_bleu / corpus_bleu"}
    have = [s for s in sent if s is not None]
    if not have:
        ctx.notes.append(f"Self-BLEU refs={refs} needs two samples; skipped")
        return {}
    complete = len(have) == len(sent)
    if not complete:
        ctx.notes.append(f"Self-BLEU refs={refs}: {len(sent) - len(have)} samples "
                         "without references were left out")
    key = dict(n=n, refs=refs, unit=unit)
    return {
        metric_key("self_bleu", level="sentence", **key): Score(
            float(np.mean(have)), list(sent) if complete else None, False,
            meta | {"level": "mean of sentence_bleu", "n_hypotheses": len(have)}),
        metric_key("self_bleu", level="corpus", **key): Score(
            float(corpus), None, False, meta | {"level": "corpus_bleu", "n_hypotheses": len(have)}),
    }


def _novel(seqs, group, n: int, common) -> Score:
    """Share of each sample's distinct n-grams found in no other sample of its group."""
    N = len(seqs)
    gid, owner, G = ngram_occurrences(seqs, n)
    sizes = np.bincount(group)
    if G:
        pairs = np.unique(owner * G + gid)
        p_owner = pairs // G
        key = group[p_owner] * G + pairs % G
        _, inv, df = np.unique(key, return_inverse=True, return_counts=True)
        lonely = np.bincount(p_owner, weights=(df[inv.reshape(-1)] == 1), minlength=N)
        uniq = np.bincount(p_owner, minlength=N)
    else:
        lonely = uniq = np.zeros(N)
    per = [float(l / u) if u else 0.0 for l, u in zip(lonely.tolist(), uniq.tolist())]
    keep = sizes[group] >= 2
    per_ok = [p for p, k in zip(per, keep.tolist()) if k]
    return Score(float(np.mean(per_ok)) if per_ok else float("nan"),
                 per if keep.all() else None, True,
                 {**common, "definition": "share of distinct n-grams absent from every other "
                                          "sample of the group", "n_scored": len(per_ok)})


def _zipf(seqs, max_rank: int, common, ctx) -> Score:
    counts = np.bincount(np.concatenate(seqs)) if sum(map(len, seqs)) else np.zeros(0, np.int64)
    freqs = np.sort(counts[counts > 0])[::-1][:max_rank].astype(np.float64)
    meta = {**common, "fit": "OLS of ln(count) on ln(rank), ranks 1..min(V, max_rank), s = -slope "
                             "(Holtzman et al. 2020)", "max_rank": max_rank, "n_ranks": len(freqs)}
    if len(freqs) < 2:
        ctx.notes.append("Zipf coefficient needs at least two distinct units; NaN")
        return Score(float("nan"), None, None, meta)
    x, y = np.log(np.arange(1, len(freqs) + 1)), np.log(freqs)
    slope, _ = np.polyfit(x, y, 1)
    r = float(np.corrcoef(x, y)[0, 1]) if np.ptp(y) > 0 else float("nan")
    return Score(float(-slope), None, None, meta | {"r": r})
