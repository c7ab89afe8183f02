"""Metrics: one file per suite, each a plain function ``(samples, *, ctx, **params) -> dict``.

Conventions shared by every metric here (see DESIGN sections 4 and 8):

- Keys carry their parameters (``rep[n=2,unit=wordpunct]``); the *unit* is always named:
  ``token`` = the generator's token ids, ``wordpunct`` = words and single punctuation
  characters (nltk ``wordpunct_tokenize``, see :mod:`tmbench.metrics.ngrams`).
- When ``Score.per_sample`` is set, ``Score.value == mean(per_sample)`` exactly, so a bootstrap
  over samples reproduces the point estimate. Pooled (corpus-level) figures such as SimCTG's
  rep-n have ``per_sample=None``; resample samples and recompute them for an interval. One
  exception, a pooled ratio: ``gen_ppl[agg=pooled,...]`` keeps each sample's own perplexity in
  ``per_sample`` and the numerator and denominator of the pooled figure in
  ``meta["per_sample_nll"]`` and ``meta["per_sample_tokens"]``; pool those, not the values.
- Protocol details (featurizer, judge, window, buckets, seeds, n, fit) go to ``Score.meta``;
  warnings go to ``ctx.notes``.
- Model-backed metrics load their judge or featurizer through ``ctx.load_model(name)`` so the
  runner records it; the name is a metric parameter.
"""
