r"""Shared tokenisation and n-gram counting for the repetition and diversity metrics.

Units (always named in metric keys):

- ``token``: the generator's token ids (``Sample.token_ids``), one trailing EOS removed.
  Numbers depend on the tokenizer, so compare them only between runs that share one.
- ``wordpunct``: words and punctuation, from nltk's ``wordpunct_tokenize`` (regex
  ``\w+|[^\w\s]+``, no lower-casing, no data download), with every run of punctuation further
  split into single characters. ``-1-1-1``, ``-am-out-am-out`` and ``------`` are sequences of
  several units, so their repetition is counted; whitespace words (the SimCTG convention, Su et
  al. 2022) would make each of them one "word" and score it rep-2 0. ``word`` is accepted as an
  old name of this unit: the scores are keyed ``unit=wordpunct`` and a note is recorded, so
  numbers of the two definitions never share a key.

Counting is vectorised: each sequence is interned to dense integer ids, every n-gram becomes
one int64 key (or a row of an ``np.unique(axis=0)`` when the key would overflow), and per-sample
counts are ``np.unique`` over (owner, n-gram) pairs. All n-grams of a sequence are counted
(``len - n + 1`` of them); SimCTG's reference loop ``while end_idx < len(tokens)`` skips the last
one, which changes their numbers slightly for short texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

UNITS = ("token", "wordpunct")
OLD_UNITS = {"word": "wordpunct"}  # old name -> the unit it now means
WORDPUNCT = ("nltk wordpunct_tokenize, punctuation runs split into single characters, "
             "case kept")
_PUNCT_RUN = re.compile(r"[^\w\s]+")


def check_units(units: Any, notes: list[str] | None = None) -> tuple[str, ...]:
    """Validated units, old names mapped to their current unit (with a note in ``notes``)."""
    units = (units,) if isinstance(units, str) else tuple(units)
    bad = [u for u in units if u not in UNITS and u not in OLD_UNITS]
    if bad or not units:
        raise ValueError(f"unknown unit(s) {bad or units!r}; accepted: {', '.join(UNITS)}")
    out = []
    for u in units:
        if u in OLD_UNITS and notes is not None:
            notes.append(f"unit {u!r} is read as {OLD_UNITS[u]!r} ({WORDPUNCT}); "
                         f"keys say unit={OLD_UNITS[u]}")
        u = OLD_UNITS.get(u, u)
        if u not in out:
            out.append(u)
    return tuple(out)


def wordpunct_units(text: str) -> list[str]:
    """Words and single punctuation characters: ``"-am-out!!"`` -> ``['-', 'am', '-', 'out',
    '!', '!']``. nltk's ``wordpunct_tokenize`` keeps a punctuation run (``------``) as one token;
    it is split here so that a run of repeated punctuation counts as repetition."""
    from nltk.tokenize import wordpunct_tokenize

    out: list[str] = []
    for t in wordpunct_tokenize(text):
        out.extend(t if _PUNCT_RUN.fullmatch(t) else (t,))
    return out


def check_ns(ns: Any, name: str = "ns") -> tuple[int, ...]:
    ns = (ns,) if isinstance(ns, int) else tuple(ns)
    if not ns or any(not isinstance(n, int) or n < 1 for n in ns):
        raise ValueError(f"{name} must be positive integers, got {ns!r}")
    return ns


def eos_of(ctx: Any) -> int | None:
    """The generator's EOS id (stripped from token units), or None (human row, no tokenizer)."""
    for obj in (getattr(ctx, "model", None), getattr(ctx, "tokenizer", None)):
        eos = getattr(obj, "eos_token_id", None)
        if eos is not None:
            return int(eos)
    return None


def sample_units(samples: Sequence[Any], unit: str, eos_id: int | None = None) -> list[list]:
    """One list of units per sample: token ids (one trailing EOS dropped) or
    :func:`wordpunct_units` of the text."""
    if unit == "wordpunct":
        return [wordpunct_units(s.text) for s in samples]
    if unit == "token":
        out = []
        for s in samples:
            t = list(s.token_ids)
            if t and eos_id is not None and t[-1] == eos_id:
                t = t[:-1]
            out.append(t)
        return out
    raise ValueError(f"unknown unit {unit!r}; accepted: {', '.join(UNITS)}")


def has_units(samples: Sequence[Any], unit: str) -> bool:
    """False when the unit is unavailable (the human row carries no token ids without a
    suite tokenizer)."""
    if unit == "token":
        return any(len(s.token_ids) for s in samples)
    return True


def prompt_groups(samples: Sequence[Any]) -> np.ndarray:
    """(N,) group index per sample: samples with the same ``prompt_index`` share a group
    (groups numbered in first-seen order)."""
    first: dict[int, int] = {}
    return np.array([first.setdefault(s.prompt_index, len(first)) for s in samples], dtype=np.int64)


def intern(seqs: Sequence[Sequence[Hashable]]) -> list[np.ndarray]:
    """Map units to dense int64 ids 0..V-1 (shared over ``seqs``)."""
    if not seqs:
        return []
    if all(all(isinstance(u, (int, np.integer)) for u in s) for s in seqs):
        lens = [len(s) for s in seqs]
        flat = np.fromiter((u for s in seqs for u in s), dtype=np.int64, count=sum(lens))
        _, dense = np.unique(flat, return_inverse=True)
        return np.split(dense.reshape(-1).astype(np.int64), np.cumsum(lens)[:-1])
    vocab: dict[Hashable, int] = {}
    return [np.array([vocab.setdefault(u, len(vocab)) for u in s], dtype=np.int64) for s in seqs]


@dataclass
class NgramStats:
    """Counts of the n-grams of N sequences (or of N groups of sequences).

    ``total[i]`` = number of n-gram occurrences of owner i; the pair arrays list each distinct
    (owner, n-gram) with its count; ``G`` = number of distinct n-grams over all owners."""

    n: int
    total: np.ndarray  # (N,) int64
    pair_owner: np.ndarray  # (P,) int64
    pair_gram: np.ndarray  # (P,) int64, ids 0..G-1
    pair_count: np.ndarray  # (P,) int64
    G: int

    @property
    def unique(self) -> np.ndarray:
        """(N,) distinct n-grams per owner."""
        return np.bincount(self.pair_owner, minlength=len(self.total))

    def corpus_counts(self) -> np.ndarray:
        """(G,) count of each n-gram over all owners."""
        return np.bincount(self.pair_gram, weights=self.pair_count, minlength=self.G).astype(np.int64)


def ngram_occurrences(seqs: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Every n-gram occurrence of the (interned) ``seqs``: its id (M,), its sequence (M,) and
    the number of distinct n-grams."""
    parts, owners = [], []
    for i, s in enumerate(seqs):
        if len(s) >= n:
            w = sliding_window_view(np.asarray(s, dtype=np.int64), n)  # (L-n+1, n)
            parts.append(w)
            owners.append(np.full(len(w), i, dtype=np.int64))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    W = np.concatenate(parts)  # (M, n)
    V = int(W.max()) + 1
    if V ** n < 2 ** 63:
        key = W[:, 0].copy()
        for j in range(1, n):
            key = key * V + W[:, j]
        uniq, gid = np.unique(key, return_inverse=True)
    else:
        uniq, gid = np.unique(W, axis=0, return_inverse=True)
    return gid.reshape(-1).astype(np.int64), np.concatenate(owners), len(uniq)


def ngram_stats(seqs: Sequence[np.ndarray], n: int, owner_of: np.ndarray | None = None,
                n_owners: int | None = None) -> NgramStats:
    """Counts per owner. ``owner_of`` (N,) pools sequences into owners (e.g. prompt groups);
    n-grams never span two sequences."""
    gid, seq_idx, G = ngram_occurrences(seqs, n)
    owner_of = np.arange(len(seqs)) if owner_of is None else np.asarray(owner_of, dtype=np.int64)
    N = int(n_owners if n_owners is not None else (owner_of.max() + 1 if len(owner_of) else 0))
    owner = owner_of[seq_idx] if len(seq_idx) else seq_idx
    total = np.bincount(owner, minlength=N).astype(np.int64)
    if not len(gid):
        z = np.zeros(0, np.int64)
        return NgramStats(n, total, z, z, z, 0)
    pairs, counts = np.unique(owner * G + gid, return_counts=True)
    return NgramStats(n, total, pairs // G, pairs % G, counts.astype(np.int64), G)


def entropy_of_counts(counts: np.ndarray) -> float:
    """Shannon entropy in nats of the distribution proportional to ``counts``."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if not len(c):
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def per_owner_entropy(st: NgramStats) -> np.ndarray:
    """(N,) entropy in nats of each owner's n-gram distribution (0 for owners without n-grams)."""
    tot = st.total[st.pair_owner].astype(np.float64)
    p = st.pair_count / np.maximum(tot, 1)
    return np.bincount(st.pair_owner, weights=-p * np.log(p), minlength=len(st.total))


def longest_repeat(seq: np.ndarray) -> int:
    """Length of the longest span that occurs at two different start positions of ``seq``
    (occurrences may overlap: in ``a b a b a`` it is 3, ``a b a``)."""
    a = np.asarray(seq)
    L, best = len(a), 0
    for d in range(1, L):
        if L - d <= best:  # no span at this shift can beat the best
            break
        eq = np.concatenate([[False], a[d:] == a[:-d], [False]])
        edges = np.flatnonzero(np.diff(eq.astype(np.int8)))
        if len(edges):
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best
