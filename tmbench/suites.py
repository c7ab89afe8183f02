"""Suite files (tasks/*.yaml): versioned data that say what to generate and how to score it.

A suite is parsed safely (``yaml.safe_load``), checked field by field, and frozen into a
:class:`Suite`. Every problem is a ``ValueError`` naming the file, the field, the bad value
and what is accepted, raised before anything is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tmbench.fileio import sha256_text
from tmbench.sweeps import expand_sweep

REPO_ROOT = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class DecoderSpec:
    name: str  # registry name
    label: str  # row label in tables, e.g. "nucleus-0.95"
    params: dict[str, Any]
    seeds: tuple[int, ...] | None = None  # overrides the suite's seeds (argmax decoders: one)
    models: tuple[str, ...] | None = None  # only these of the suite's models (None = all)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    description: str
    dataset: dict[str, Any]
    max_new_tokens: int
    batch_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    samples_per_prompt: int
    models: tuple[str, ...]
    decoders: tuple[DecoderSpec, ...]
    metrics: tuple[MetricSpec, ...]
    path: str
    content_hash: str = ""
    human_row: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    # paired comparisons shown with the tables: (row, reference), each "MODEL/LABEL"
    compare: tuple[tuple[str, str], ...] = ()
    # the tables' headline columns (metric keys or short names); presentation only, so it is
    # no part of the suite's hash or of any run key
    headline: tuple[str, ...] = ()


def suite_dirs() -> list[Path]:
    return [Path.cwd() / "tasks", REPO_ROOT / "tasks"]


def find_suite(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ValueError(f"suite file {p} does not exist")
        return p
    for d in suite_dirs():
        for ext in (".yaml", ".yml"):
            if (d / f"{name_or_path}{ext}").exists():
                return d / f"{name_or_path}{ext}"
    known = list_suites()
    import difflib

    close = difflib.get_close_matches(name_or_path, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown suite {name_or_path!r}{hint} Known suites: {', '.join(known)} "
                     "(or pass a path to a .yaml file)")


def list_suites() -> list[str]:
    names = set()
    for d in suite_dirs():
        if d.is_dir():
            names |= {p.stem for p in d.glob("*.yaml")}
    return sorted(names)


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, field_name: str, msg: str):
        raise ValueError(f"{self.where}: {field_name}: {msg}")

    def int_(self, d: dict, key: str, default: Any = None, lo: int = 1, hi: int = 10**7) -> int:
        v = d.get(key, default)
        if v is None:
            self.fail(key, "is required (an integer)")
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self.fail(key, f"must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def ints(self, d: dict, key: str, default: Any, lo: int = 0, hi: int = 2**31 - 1) -> tuple[int, ...]:
        v = d.get(key, default)
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if (not isinstance(v, list) or not v
                or any(isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi for x in v)):
            self.fail(key, f"must be a non-empty list of integers in [{lo}, {hi}], got {v!r}")
        if len(set(v)) != len(v):
            self.fail(key, f"has duplicates: {v!r}")
        return tuple(v)

    def name(self, v: Any, key: str) -> str:
        if not isinstance(v, str) or not _NAME.match(v):
            self.fail(key, f"must be a name of letters, digits, '_', '.', '-' (max 64), got {v!r}")
        return v

    def params(self, v: Any, key: str) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict) or any(not isinstance(k, str) for k in v):
            self.fail(key, f"must be a mapping of parameter names to values, got {v!r}")
        return dict(v)


def _decoder_entries(raw: Any, c: _Checker, base: Path,
                     chain: tuple[Path, ...] = ()) -> list[DecoderSpec]:
    """Decoder entries of a suite or an included file; ``chain``: the files including this one."""
    if isinstance(raw, dict) and "include" in raw:
        bad = set(raw) - {"include", "models", "labels", "seeds"}
        if bad:
            c.fail("decoders.include", f"unknown fields {sorted(bad)}; accepted: include, "
                                       "models (run the included entries on these only), labels "
                                       "(only these entries), seeds (the included entries' seeds)")
        if not isinstance(raw["include"], str) or not raw["include"]:
            c.fail("decoders.include", f"must be a file name, got {raw['include']!r}")
        inc = Path(raw["include"])
        path = inc if inc.is_absolute() else _resolve_include(inc, base)
        if path.resolve() in chain:
            c.fail("decoders.include", f"{path} includes itself (through "
                                       f"{' -> '.join(map(str, chain))})")
        data = _read_yaml(path)
        if not isinstance(data, dict) or "decoders" not in data:
            c.fail("decoders.include", f"{path} must be a mapping with a 'decoders' list")
        got = _decoder_entries(data["decoders"], _Checker(str(path)), path.parent,
                               (*chain, path.resolve()))
        if "labels" in raw:
            want = raw["labels"]
            missing = sorted(set(want) - {d.label for d in got}) if isinstance(want, list) else want
            if not isinstance(want, list) or missing:
                c.fail("decoders.include.labels", f"{missing!r} not in {path}; accepted: "
                                                  f"{[d.label for d in got]}")
            got = [d for d in got if d.label in want]
        if "models" in raw:
            if not isinstance(raw["models"], list) or not raw["models"]:
                c.fail("decoders.include.models", f"must be a non-empty list, got {raw['models']!r}")
            ms = tuple(_model_entry(m, c, "decoders.include.models") for m in raw["models"])
            got = [DecoderSpec(d.name, d.label, d.params, d.seeds, ms) for d in got]
        if "seeds" in raw:
            seeds = c.ints(raw, "seeds", None)
            got = [DecoderSpec(d.name, d.label, d.params, seeds, d.models) for d in got]
        return got
    if not isinstance(raw, list) or not raw:
        c.fail("decoders", "must be a non-empty list of {name, params, label, seeds} or {include: FILE}")
    out: list[DecoderSpec] = []
    entries = []
    for i, e in enumerate(raw):
        if isinstance(e, str):
            e = {"name": e}
        if isinstance(e, dict) and "include" in e:
            entries.append((i, e))
            continue
        if not isinstance(e, dict) or "name" not in e:
            c.fail(f"decoders[{i}]", f"must be a mapping with a 'name', got {e!r}")
        unknown = set(e) - {"name", "params", "label", "seeds", "models", "sweep"}
        if unknown:
            c.fail(f"decoders[{i}]", f"unknown fields {sorted(unknown)}; accepted: name, params, "
                                     "label, seeds, models, sweep (tmbench.sweeps)")
        entries += [(i, x) for x in expand_sweep(e, f"{c.where}: decoders[{i}]")]
    for i, e in entries:
        if "include" in e:
            out.extend(_decoder_entries(e, c, base, chain))
            continue
        name = c.name(e["name"], f"decoders[{i}].name")
        label = c.name(e.get("label", name), f"decoders[{i}].label")
        seeds = c.ints(e, "seeds", None) if "seeds" in e else None
        models = None
        if "models" in e:
            if not isinstance(e["models"], list) or not e["models"]:
                c.fail(f"decoders[{i}].models", f"must be a non-empty list of the suite's models, "
                                                f"got {e['models']!r}")
            models = tuple(_model_entry(m, c, f"decoders[{i}].models") for m in e["models"])
        out.append(DecoderSpec(name, label, c.params(e.get("params"), f"decoders[{i}].params"),
                               seeds, models))
    # one setting listed for several groups of models is one entry over their union
    merged: dict[tuple, DecoderSpec] = {}
    for d in out:
        k = (d.name, d.label, json.dumps(d.params, sort_keys=True, default=str), d.seeds)
        a = merged[k].models if k in merged else None
        if a is not None and d.models is not None:  # the same setting for more models
            merged[k] = DecoderSpec(d.name, d.label, d.params, d.seeds,
                                    tuple(dict.fromkeys(a + d.models)))
        else:
            merged[k if k not in merged else (*k, len(merged))] = d  # a repeat stays visible
    out = list(merged.values())
    labels = [d.label for d in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        c.fail("decoders", f"labels must be unique, repeated: {dup} (set 'label:'; one label "
                           "may list several models only with the same settings)")
    return out


def split_row(ref: str) -> tuple[str, str]:
    """``"MODEL/LABEL" -> (MODEL, LABEL)``; split at the last ``/`` (model specs may hold
    slashes, labels never do)."""
    model, sep, label = ref.rpartition("/") if isinstance(ref, str) else ("", "", "")
    if not sep or not model or not label:
        raise ValueError(f"{ref!r} is not MODEL/LABEL (e.g. ar-smollm2/greedy, human/reference)")
    return model, label


def _compare_entries(raw: Any, c: _Checker, models: tuple[str, ...],
                     decoders: list[DecoderSpec]) -> tuple[tuple[str, str], ...]:
    """``compare: [{row: MODEL/LABEL, to: MODEL/LABEL}, ...]``: rows of this suite (a model
    it lists, or ``human/reference``, with one of its decoder labels)."""
    if not isinstance(raw, list):
        c.fail("compare", f"must be a list of {{row: MODEL/LABEL, to: MODEL/LABEL}}, got {raw!r}")
    labels = {d.label: d for d in decoders}
    out = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or set(e) != {"row", "to"}:
            c.fail(f"compare[{i}]", f"must be a mapping {{row: MODEL/LABEL, to: MODEL/LABEL}}, "
                                    f"got {e!r}")
        for k in ("row", "to"):
            try:
                model, label = split_row(e[k])
            except ValueError as err:
                c.fail(f"compare[{i}].{k}", str(err))
            if (model, label) == ("human", "reference"):
                continue
            if model not in models:
                c.fail(f"compare[{i}].{k}", f"model {model!r} is not in the suite's models "
                                            f"{list(models)} (or human/reference)")
            d = labels.get(label)
            if d is None or (d.models is not None and model not in d.models):
                ok = sorted(x.label for x in decoders if x.models is None or model in x.models)
                c.fail(f"compare[{i}].{k}", f"{label!r} is not a decoder label the suite runs "
                                            f"on {model}; accepted: {', '.join(ok)}")
        if e["row"] == e["to"]:
            c.fail(f"compare[{i}]", f"compares {e['row']} with itself")
        out.append((e["row"], e["to"]))
    return tuple(dict.fromkeys(out))


MAX_HEADLINE = 12  # tmbench.render.MAX_HEADLINE


def _headline_entries(raw: Any, c: _Checker) -> tuple[str, ...]:
    """``headline: [Rep-2, MAUVE, "compression_ratio[scope=corpus]", ...]``: at most 12 metric
    keys or short names (tmbench.glossary), in the order the tables show them."""
    if raw is None:
        return ()
    if (not isinstance(raw, list) or not raw or len(raw) > MAX_HEADLINE
            or any(not isinstance(x, str) or not x.strip() for x in raw)):
        c.fail("headline", f"must be a list of 1 to {MAX_HEADLINE} metric keys or short names "
                           f"(e.g. [Rep-2, Dist-2, MAUVE, 'gen_ppl[agg=pooled,judge=gemma3-270m]']), "
                           f"got {raw!r}")
    dup = sorted({x for x in raw if raw.count(x) > 1})
    if dup:
        c.fail("headline", f"has duplicates: {dup}")
    return tuple(raw)


def headline_of(name: str, version: int, warn=print) -> tuple[str, ...]:
    """The ``headline:`` of the suite file of that name, where its version is ``version``
    (tables of another version keep the default); () without such a file, and where it does
    not load (reported through ``warn``)."""
    try:
        find_suite(name)
    except ValueError:
        return ()
    try:
        suite = load_suite(name)
    except ValueError as e:
        warn(f"warning: suite {name}: its headline columns are left at the default: {e}")
        return ()
    return suite.headline if suite.version == version else ()


def with_suite_headlines(tables: list, warn=print) -> list:
    """Each table's ``facts["headline"]`` set from its suite file (see :func:`headline_of`)."""
    seen: dict[tuple[str, int], tuple[str, ...]] = {}
    for t in tables:
        k = (t.suite, t.version)
        if k not in seen:
            seen[k] = headline_of(*k, warn=warn)
        if seen[k]:
            t.facts["headline"] = list(seen[k])
    return tables


def _model_entry(m: Any, c: _Checker, where: str) -> str:
    """A registered name, a spec string (hf:..., gguf:..., path:...) or {name, params}; kept
    as the canonical spec string (checked for existence at plan time)."""
    from tmbench.model_specs import parse_model_spec

    if not isinstance(m, (str, dict)):
        c.fail(where, f"must be a model name, a spec string (hf:..., gguf:..., path:...) or "
                      f"{{name, params}}, got {m!r}")
    try:
        return str(parse_model_spec(m))
    except ValueError as e:
        c.fail(where, str(e))


def _resolve_include(inc: Path, base: Path) -> Path:
    for root in (base, Path.cwd(), REPO_ROOT):
        if (root / inc).exists():
            return root / inc
    raise ValueError(f"included file {inc} not found (looked in {base}, the working directory "
                     "and the tmbench checkout)")


MAX_NODES = 100_000  # the largest shipped suite expands to about 200


def _check_size(data: Any, path: Path) -> None:
    """Refuse a document that expands to more than MAX_NODES values, an alias counted each time
    it is used: ``safe_load`` shares aliased objects, so a 1.4 KB alias bomb ("billion laughs")
    loads at once but expands to 9**9 strings when the suite is checked and hashed. Iterative,
    so a self-referencing alias is refused too."""
    stack, n = [data], 0
    while stack:
        node = stack.pop()
        n += 1
        if n > MAX_NODES:
            raise ValueError(f"{path}: expands to more than {MAX_NODES} YAML values (aliases "
                             "counted each time they are used); accepted: suites of at most "
                             f"{MAX_NODES} values")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _read_yaml(path: Path) -> Any:
    try:
        data = yaml.safe_load(path.read_text())
        _check_size(data, path)
        return data
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    except RecursionError:  # the YAML composer recurses once per nesting level
        raise ValueError(f"{path}: nested too deeply to parse; accepted: a suite of plain "
                         "fields, lists and mappings") from None


ALLOWED = {"name", "version", "description", "dataset", "max_new_tokens", "batch_size",
           "batch_sizes", "seeds", "samples_per_prompt", "models", "decoders", "metrics",
           "human_row", "extra", "compare", "headline"}
DATASET_FIELDS = {"source", "split", "n_prompts", "prompt_len", "reference_len", "prompt_unit",
                  "tokenizer", "path", "name", "text_field", "join_lines", "per_article", "boundary"}


def load_suite(name_or_path: str) -> Suite:
    path = find_suite(name_or_path)
    raw = _read_yaml(path)
    c = _Checker(str(path))
    if not isinstance(raw, dict):
        c.fail("(top level)", f"must be a mapping of fields, got {type(raw).__name__}")
    unknown = set(raw) - ALLOWED
    if unknown:
        c.fail("(top level)", f"unknown fields {sorted(unknown)}; accepted: {', '.join(sorted(ALLOWED))}")
    name = c.name(raw.get("name"), "name")
    version = c.int_(raw, "version", lo=1, hi=10**6)
    ds = raw.get("dataset")
    if not isinstance(ds, dict):
        c.fail("dataset", f"must be a mapping (source, split, n_prompts, prompt_len, ...), got {ds!r}")
    bad = set(ds) - DATASET_FIELDS
    if bad:
        c.fail("dataset", f"unknown fields {sorted(bad)}; accepted: {', '.join(sorted(DATASET_FIELDS))}")
    if ds.get("source", "bbc") not in ("bbc", "hf", "file"):
        c.fail("dataset.source", f"must be one of bbc, hf, file; got {ds.get('source')!r}")
    if ds.get("source", "bbc") in ("hf", "file") and not isinstance(ds.get("path"), str):
        what = ("a .jsonl or text file" if ds["source"] == "file"
                else "a hub name, a folder saved with save_to_disk or a data file")
        c.fail("dataset.path", f"is required for source {ds['source']} ({what}), got "
                               f"{ds.get('path')!r}")
    if ds.get("prompt_unit", "word") not in ("word", "token"):
        c.fail("dataset.prompt_unit", f"must be 'word' or 'token', got {ds.get('prompt_unit')!r}")
    dc = _Checker(f"{path}: dataset")
    dataset = dict(ds, n_prompts=dc.int_(ds, "n_prompts", hi=10**6),
                   prompt_len=dc.int_(ds, "prompt_len", 32, hi=4096),
                   reference_len=dc.int_(ds, "reference_len", 128, hi=8192),
                   per_article=dc.int_(ds, "per_article", 1, hi=1000))
    if "batch_size" in raw and "batch_sizes" in raw:
        c.fail("batch_size", "give batch_size or batch_sizes, not both")
    batch_sizes = c.ints(raw, "batch_sizes" if "batch_sizes" in raw else "batch_size", 8, lo=1, hi=4096)
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        c.fail("models", f"must be a non-empty list of model names or specs, got {models!r}")
    models = tuple(_model_entry(m, c, f"models[{i}]") for i, m in enumerate(models))
    metrics_raw = raw.get("metrics", [])
    if not isinstance(metrics_raw, list):
        c.fail("metrics", f"must be a list of {{name, params}}, got {metrics_raw!r}")
    metrics = []
    for i, m in enumerate(metrics_raw):
        if isinstance(m, str):
            m = {"name": m}
        if not isinstance(m, dict) or "name" not in m or set(m) - {"name", "params"}:
            c.fail(f"metrics[{i}]", f"must be a mapping with 'name' and optional 'params', got {m!r}")
        metrics.append(MetricSpec(c.name(m["name"], f"metrics[{i}].name"),
                                  c.params(m.get("params"), f"metrics[{i}].params")))
    decoders = _decoder_entries(raw.get("decoders"), c, path.parent, (path.resolve(),))
    for i, d in enumerate(decoders):
        stray = sorted(set(d.models or ()) - set(models))
        if stray:
            c.fail(f"decoder {d.label!r}.models", f"{stray} are not in the suite's models {list(models)}")
    human = raw.get("human_row", True)
    if not isinstance(human, bool):
        c.fail("human_row", f"must be true or false, got {human!r}")
    suite = Suite(
        name=name, version=version, description=str(raw.get("description", "")),
        dataset=dataset, max_new_tokens=c.int_(raw, "max_new_tokens", hi=65536),
        batch_sizes=batch_sizes, seeds=c.ints(raw, "seeds", [0]),
        samples_per_prompt=c.int_(raw, "samples_per_prompt", 1, hi=1000),
        models=models, decoders=tuple(decoders), metrics=tuple(metrics), path=str(path),
        human_row=human, extra=c.params(raw.get("extra"), "extra"),
        compare=_compare_entries(raw.get("compare", []), c, models, decoders),
        headline=_headline_entries(raw.get("headline"), c),
    )
    # a suite without comparisons hashes as it did before the field existed
    blob = json.dumps({k: v for k, v in suite.__dict__.items()
                       if k not in ("path", "content_hash", "headline") and (k != "compare" or v)},
                      sort_keys=True, default=lambda o: o.__dict__)
    return Suite(**{**suite.__dict__, "content_hash": sha256_text(blob)[:16]})
