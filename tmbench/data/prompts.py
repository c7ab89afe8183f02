"""Prompt sets: a prompt is the start of a held-out document, the reference is the human
continuation that follows it.

Prompt length is counted in whitespace words (comparable across tokenizers: the default) or in
tokens of a named tokenizer (``prompt_unit: token`` with ``tokenizer: <model name>``). Each
model then tokenizes the prompt *text* with its own tokenizer; the ids are recorded per run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tmbench.fileio import sha256_text


@dataclass(frozen=True)
class Prompt:
    index: int
    doc_id: str
    text: str
    reference: str


def _split_words(text: str, n_prompt: int, n_ref: int) -> tuple[str, str] | None:
    words = text.split()
    if len(words) < n_prompt + max(1, n_ref // 2):
        return None
    return " ".join(words[:n_prompt]), " ".join(words[n_prompt:n_prompt + n_ref])


def _split_tokens(text: str, n_prompt: int, n_ref: int, tok: Any) -> tuple[str, str] | None:
    ids = tok.encode(text)
    if len(ids) < n_prompt + max(1, n_ref // 2):
        return None
    return tok.decode(ids[:n_prompt]), tok.decode(ids[n_prompt:n_prompt + n_ref])


def paragraph_starts(body: str, prompt_len: int, reference_len: int, per_article: int,
                     boundary: str = "paragraph") -> list[str]:
    """Up to ``per_article`` texts of ``body`` that start at paragraph starts (or, with
    ``boundary='sentence'``, at paragraph or sentence starts) and whose prompt + reference
    windows (in words) do not overlap; the first starts at the body's start."""
    paras = [p for p in body.split("\n\n") if p.strip()]
    offsets, n = [], 0
    for p in paras:
        offsets.append(n)
        n += len(p.split())
    words = body.split()
    if boundary == "sentence":  # also after every word that ends a sentence
        ends = {i + 1 for i, w in enumerate(words) if w.rstrip('"\'').endswith((".", "?", "!"))}
        offsets = sorted(set(offsets) | (ends - {len(words)}))
    out, free = [], 0
    for off in offsets:
        if len(out) == per_article:
            break
        if off >= free and len(words) - off >= prompt_len + max(1, reference_len // 2):
            out.append(" ".join(words[off:]))
            free = off + prompt_len + reference_len
    return out


def make_prompts(docs: list[tuple[str, str]], *, n_prompts: int, prompt_len: int,
                 reference_len: int, unit: str = "word", tokenizer: Any = None,
                 per_article: int = 1, boundary: str = "paragraph") -> list[Prompt]:
    """The first ``n_prompts`` documents (in the given, content-defined order) long enough to
    give a prompt of ``prompt_len`` and at least half a reference of ``reference_len``. With
    ``per_article`` > 1, up to that many prompts per document, at paragraph starts whose
    prompt + reference windows do not overlap (so a few hundred articles give 500+ prompts)."""
    if unit not in ("word", "token"):
        raise ValueError(f"prompt_unit must be 'word' or 'token', got {unit!r}")
    if unit == "token" and tokenizer is None:
        raise ValueError("prompt_unit 'token' needs a tokenizer (dataset.tokenizer: <model name>)")
    if boundary not in ("paragraph", "sentence"):
        raise ValueError(f"prompt boundary must be 'paragraph' or 'sentence', got {boundary!r}")
    if per_article > 1 and unit != "word":
        raise ValueError("per_article > 1 needs prompt_unit 'word'")
    out: list[Prompt] = []
    for doc_id, text in docs:
        # The headline line is not prose; start prompts at the article body when there is one.
        body = text.split("\n\n", 1)[1] if "\n\n" in text else text
        starts = (paragraph_starts(body, prompt_len, reference_len, per_article, boundary)
                  if per_article > 1 else [body])
        for j, start in enumerate(starts):
            pair = (_split_words(start, prompt_len, reference_len) if unit == "word"
                    else _split_tokens(start, prompt_len, reference_len, tokenizer))
            if pair is None:
                continue
            out.append(Prompt(len(out), doc_id if j == 0 else f"{doc_id}#{j}", pair[0], pair[1]))
            if len(out) == n_prompts:
                return out
    raise ValueError(f"dataset gives only {len(out)} prompts long enough for "
                     f"{prompt_len}+{reference_len} {unit}s (per_article={per_article}); asked "
                     f"for n_prompts={n_prompts}")


def prompts_hash(prompts: list[Prompt]) -> str:
    return sha256_text(json.dumps([asdict(p) for p in prompts], sort_keys=True))[:16]


def load_documents(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(doc_id, text) pairs from a dataset spec: ``source`` bbc | hf | file."""
    source = spec.get("source", "bbc")
    if source == "bbc":
        from tmbench.data.bbc import load_bbc

        return [(a.id, a.text) for a in load_bbc(spec.get("split", "test"))]
    if source == "file":
        return _load_file(Path(spec["path"]), spec.get("text_field", "text"))
    if source == "hf":
        return _load_hf(spec)
    raise ValueError(f"unknown dataset source {source!r}; accepted: bbc, hf, file")


FILE_FORMS = ("a .jsonl file (one JSON object per line) or a UTF-8 text file (documents "
              "separated by blank lines)")
_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "true/false",
               int: "a number", float: "a number", type(None): "null"}


def _load_file(path: Path, field: str) -> list[tuple[str, str]]:
    """(doc_id, text) pairs of a local file; every problem names the file and, in a .jsonl
    file, the line (``path:line: what``)."""
    text = _read_utf8(path)
    if path.suffix == ".jsonl":
        return [(f"{path.name}:{i}", _jsonl_text(path, i + 1, line, field))
                for i, line in enumerate(text.splitlines()) if line.strip()]
    # Plain text: documents separated by blank lines.
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    return [(f"{path.name}:{i}", p) for i, p in enumerate(paras)]


def _read_utf8(path: Path) -> str:
    """The file's text with universal newlines (as ``read_text``), decoded here so that a bad
    byte's line can be named."""
    if not path.exists():
        raise ValueError(f"dataset file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"dataset file {path} is a folder; accepted: {FILE_FORMS}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"dataset file {path} cannot be read ({e.strerror or e}); accepted: "
                         f"{FILE_FORMS}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); accepted: "
                         "UTF-8 encoded text") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _jsonl_text(path: Path, n: int, line: str, field: str) -> str:
    """The ``field`` string of line ``n`` of a .jsonl file."""
    want = f"accepted: one JSON object per line with a string field {field!r}"
    try:
        row = json.loads(line)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, or nesting too deep
        what = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else e
        raise ValueError(f"{path}:{n}: not valid JSON ({what}); {want}") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}:{n}: must be a JSON object, got {_JSON_KINDS.get(type(row))}; "
                         f"{want}")
    if field not in row:
        raise ValueError(f"{path}:{n}: has no field {field!r} (fields: {sorted(row)[:8]}); {want} "
                         "(dataset.text_field names another)")
    if not isinstance(row[field], str):
        raise ValueError(f"{path}:{n}: field {field!r} must be a string, got "
                         f"{_JSON_KINDS.get(type(row[field]))}; {want}")
    return row[field]


def _load_hf(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Hub or local datasets through `datasets` (e.g. WikiText-103 when online)."""
    import datasets

    try:
        ds = datasets.load_dataset(spec["path"], spec.get("name"), split=spec.get("split", "test"))
    except (OSError, ConnectionError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"dataset {spec['path']!r} could not be loaded ({type(e).__name__}: "
                         f"{first[:200]}); a hub dataset needs network access. Offline, point the "
                         "suite at a local copy: {source: hf, path: <folder saved with "
                         "save_to_disk or a data file>} or {source: file, path: <.jsonl or .txt>}") from None
    field = spec.get("text_field", "text")
    docs = [(f"{spec['path']}:{i}", row[field]) for i, row in enumerate(ds)]
    if spec.get("join_lines"):  # WikiText stores one line per row; articles start at " = X = "
        docs = _join_wikitext(docs)
    # Without join_lines every row is a document (a WikiText paragraph); headings are dropped.
    return [d for d in docs if d[1].strip() and not d[1].strip().startswith("= ")]


def _join_wikitext(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    docs, cur, cur_id = [], [], None
    for rid, line in rows:
        s = line.strip()
        if s.startswith("= ") and not s.startswith("= = ") and cur:
            docs.append((cur_id, "\n\n".join(cur)))
            cur = []
        if cur_id is None or not cur:
            cur_id = rid
        if s and not s.startswith("="):
            cur.append(s)
    if cur:
        docs.append((cur_id, "\n\n".join(cur)))
    return docs
