"""MAUVE (Pillutla et al. 2021) of model continuations against the human references, with
the ``mauve-text`` package on precomputed features.

P = the human reference continuations (``Sample.reference_text``, one per prompt), Q = the
model continuations (``Sample.text``). Features come from a named featurizer (offline default
``all-minilm-l6-v2``; ``gpt2-large``, the paper's, where the hub is reachable) and are cached on
disk per (featurizer identity, max text length, text). k-means is run once per seed in
``kmeans_seeds`` (default five) and the key reports the mean; ``meta`` has every seed's value
(``per_seed``), their spread (``std``, ``min``, ``max``), the resolved number of k-means
buckets (``num_buckets``), the scaling factor c, ``n_p`` and ``n_q`` (samples of each side),
``n = min(n_p, n_q)`` and ``reliable = n >= min_n``. Scale 0-1 (papers often print x100).

Why ``min_n = 500``: MAUVE is biased and noisy at small n, since the histograms it compares
have about n/10 buckets (``num_buckets="auto"``) and few points per bucket. The authors use
5,000 samples per side and recommend a few thousand; 500 is the size the ``standard`` suite
is built for (DESIGN section 4), the smallest at which this project compares MAUVE at all.
``reliable`` therefore means "large enough to compare rows at equal n", not "unbiased"; below
``RECOMMENDED_N`` a note says so as well.

The human row (texts equal to their references) is skipped: MAUVE of P against itself says
nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tmbench._quiet import quiet_stderr
from tmbench.cache import load_array, save_array
from tmbench.fileio import sha256_text

from tmbench.types import MetricContext, Sample, Score, metric_key
from tmbench.versions import dist_version

RECOMMENDED_N = 2000  # "a few thousand" (MAUVE README); the paper uses 5,000
KMEANS_SEEDS = (1, 2, 3, 4, 5)


def mauve(samples: list[Sample], *, ctx: MetricContext, featurizer: str = "all-minilm-l6-v2",
          max_text_length: int = 256, num_buckets: int | str = "auto", scaling_factor: float = 5.0,
          kmeans_seeds=KMEANS_SEEDS, min_n: int = 500, kmeans_explained_var: float = 0.9,
          kmeans_num_redo: int = 5, kmeans_max_iter: int = 500, seeds=None) -> dict[str, Score]:
    """MAUVE (Pillutla et al. 2021) of the continuations against the human references, in [0, 1].

    ``seeds`` is the old name of ``kmeans_seeds`` (accepted, with a note)."""
    if num_buckets != "auto" and (not isinstance(num_buckets, int) or num_buckets < 2):
        raise ValueError(f"num_buckets must be 'auto' or an integer >= 2, got {num_buckets!r}")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 1:
        raise ValueError(f"min_n must be a positive integer, got {min_n!r}")
    kmeans_seeds = _check_seeds(kmeans_seeds, seeds, ctx)
    if not samples:
        return {}
    if all(s.text == s.reference_text for s in samples):
        ctx.notes.append("human row (texts are the references); MAUVE of human text "
                         "against itself is not meaningful, skipped")
        return {}
    import mauve as mauve_pkg  # lazy: pulls faiss and scikit-learn

    feat = ctx.load_model(featurizer, featurizer=True)  # recorded in the record's judges
    refs: dict[int, str] = {}
    for s in samples:
        refs.setdefault(s.prompt_index, s.reference_text)
    p = embed_cached(feat, list(refs.values()), max_text_length, ctx.cache_dir)
    q = embed_cached(feat, [s.text for s in samples], max_text_length, ctx.cache_dir)
    n = min(len(p), len(q))
    if n < RECOMMENDED_N:
        ctx.notes.append(f"n={n} (P {len(p)}, Q {len(q)}) is below the few thousand "
                         f"samples the MAUVE authors recommend (paper: 5,000); expect a biased, "
                         "high-variance estimate and compare only at equal n"
                         + (f"; below min_n={min_n}, marked unreliable" if n < min_n else ""))
    vals, stars, buckets = [], [], None
    for seed in kmeans_seeds:
        with quiet_stderr():  # faiss warns about few points per centroid; n is noted above
            out = mauve_pkg.compute_mauve(
                p_features=p, q_features=q, num_buckets=num_buckets, mauve_scaling_factor=scaling_factor,
                kmeans_explained_var=kmeans_explained_var, kmeans_num_redo=kmeans_num_redo,
                kmeans_max_iter=kmeans_max_iter, seed=int(seed), verbose=False)
        vals.append(float(out.mauve))
        stars.append(float(out.mauve_star))
        buckets = int(out.num_buckets)
    meta = {
        "featurizer": feat.identity(), "max_text_length": max_text_length,
        "truncation": "first max_text_length featurizer tokens kept",
        "num_buckets": buckets, "num_buckets_param": num_buckets,
        "scaling_factor": scaling_factor, "kmeans_seeds": list(kmeans_seeds), "per_seed": vals,
        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
        "min": min(vals), "max": max(vals), "mauve_star_mean": float(np.mean(stars)),
        "n_p": len(p), "n_q": len(q), "n": n, "min_n": min_n, "reliable": n >= min_n,
        "n_p_human": len(p), "n_q_model": len(q), "scale": "0-1",
        "kmeans": {"explained_var": kmeans_explained_var, "num_redo": kmeans_num_redo,
                   "max_iter": kmeans_max_iter, "pca": "all data"},
        "package": f"mauve-text {dist_version('mauve-text')}",
    }
    return {metric_key("mauve", c=scaling_factor, featurizer=featurizer):
            Score(float(np.mean(vals)), None, True, meta)}


def _check_seeds(kmeans_seeds, seeds, ctx: MetricContext) -> tuple[int, ...]:
    """The k-means seeds, from ``kmeans_seeds`` or its old name ``seeds``."""
    if seeds is not None:
        if _as_tuple(kmeans_seeds) not in (KMEANS_SEEDS, _as_tuple(seeds)):
            raise ValueError(f"give k-means seeds once: kmeans_seeds={kmeans_seeds!r} and its old "
                             f"name seeds={seeds!r} were both set; accepted: kmeans_seeds only")
        ctx.notes.append("parameter 'seeds' is the old name of 'kmeans_seeds'")
        kmeans_seeds = seeds
    out = _as_tuple(kmeans_seeds)
    if not out or any(isinstance(x, bool) or not isinstance(x, int) for x in out):
        raise ValueError(f"kmeans_seeds must be a non-empty list of integers, got {kmeans_seeds!r}")
    return out


def _as_tuple(v) -> tuple:
    return (v,) if isinstance(v, int) else tuple(v)


def embed_cached(feat: Any, texts: list[str], max_length: int, cache_dir: str | None) -> np.ndarray:
    """``feat.embed`` with an on-disk cache keyed by featurizer identity, max length and text;
    files are written atomically (temp file + rename), so parallel runs can share the cache."""
    if cache_dir is None:
        return feat.embed(texts, max_length)
    ident = json.dumps(feat.identity(), sort_keys=True, default=str) + f"|max_length={max_length}"
    folder = Path(cache_dir) / "features" / sha256_text(ident)[:16]
    paths = [folder / f"{sha256_text(t)}.arr" for t in texts]
    have = {i: a for i, p in enumerate(paths) if (a := load_array(p)) is not None}
    todo = [i for i in range(len(texts)) if i not in have]
    if todo:
        new = feat.embed([texts[i] for i in todo], max_length)
        for i, v in zip(todo, new):
            have[i] = v
            save_array(paths[i], v)
    return np.stack([have[i] for i in range(len(texts))])
