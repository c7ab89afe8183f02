"""Names -> objects for decoders, models and metrics.

Built-ins are a static name map (imported lazily on first use, so importing tmbench stays
cheap); third-party packages add their own through the entry-point groups
``tmbench.decoders``, ``tmbench.models`` and ``tmbench.metrics``; notebooks and tests use the
``register_*`` decorators. Unknown names fail with the known ones and the closest match.

Every entry has a code identity (:func:`code_identity`): the package and version that ship it
and a hash of its module's source file, so a record can say which code made it and a run key
can change when that code does.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.metadata as md
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from tmbench.versions import dist_version


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    source: str  # "builtin", "entry-point <dist>", or "decorator <module>"
    dist: tuple[str, str] | None = None  # (name, version) of an entry point's distribution


def closest(name: str, known: list[str]) -> str | None:
    """The known name closest to ``name`` (difflib ratio >= 0.5), or None."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return close[0] if close else None


@functools.lru_cache(maxsize=None)
def _distribution_of(top_level: str) -> str | None:
    # packages_distributions() scans every installed distribution (a third of a second here);
    # which distribution ships a top-level module does not change while a process runs
    dists = md.packages_distributions().get(top_level) or []
    return dists[0] if dists else None


def _source_sha256(obj: Any) -> str | None:
    """sha256 of the source file of ``obj``'s module (of its source text where there is no
    file, e.g. a notebook cell); None when neither can be read."""
    try:
        path = (inspect.getsourcefile(obj)
                or getattr(sys.modules.get(obj.__module__), "__file__", None))
        if path:
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
    except (OSError, TypeError, AttributeError):
        pass
    try:
        return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()
    except (OSError, TypeError):
        return None


def code_identity(obj: Any, dist: tuple[str, str] | None = None) -> dict[str, Any]:
    """Which code ``obj`` (a function or class) is: ``{"package", "version", "object"
    ("module:qualname"), "sha256"}`` (sha256 of the module's source file). tmbench's own code is
    package tmbench at its version; anything else is the distribution of its entry point
    (``dist``) or the one that ships its top-level module
    (``importlib.metadata.packages_distributions``); package and version are None for code no
    installed distribution ships (a script, a test module, a notebook)."""
    module = getattr(obj, "__module__", None) or "?"
    top = module.split(".")[0]
    if top == "tmbench":
        from tmbench import __version__

        package, version = "tmbench", __version__
    elif dist is not None:
        package, version = dist
    else:
        package = _distribution_of(top)
        version = dist_version(package, missing=None) if package else None
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return {"package": package, "version": version, "object": f"{module}:{qualname}",
            "sha256": _source_sha256(obj)}


class Registry:
    """One kind of named object. Built-ins are 'module:attr' strings resolved on demand."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)
        self._entries: dict[str, Entry] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._plugins_loaded = False

    def register(self, name: str, obj: Any = None, *, source: str | None = None):
        """Register ``obj`` under ``name``; used bare as a decorator when ``obj`` is None."""

        def add(o):
            src = source or f"decorator {getattr(o, '__module__', '?')}"
            self._entries[name] = Entry(name, o, src)
            self._codes.pop(name, None)
            return o

        return add if obj is None else add(obj)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            dist = ep.dist.name if ep.dist is not None else "?"
            self._entries[ep.name] = Entry(ep.name, ep, f"entry-point {dist}")

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(set(self._builtins) | set(self._entries))

    def entries(self) -> list[Entry]:
        return [self._entry(n) for n in self.names()]

    def _entry(self, name: str) -> Entry:
        self._load_plugins()
        if name in self._entries:
            e = self._entries[name]
            if hasattr(e.obj, "load") and e.source.startswith("entry-point"):
                d = e.obj.dist  # resolve an EntryPoint once
                e = Entry(name, e.obj.load(), e.source, (d.name, d.version) if d else None)
                self._entries[name] = e
            return e
        if name in self._builtins:
            module, attr = self._builtins[name].split(":")
            e = Entry(name, getattr(importlib.import_module(module), attr), "builtin")
            self._entries[name] = e
            return e
        raise ValueError(self.unknown_message(name))

    def get(self, name: str) -> Any:
        return self._entry(name).obj

    def source(self, name: str) -> str:
        return self._entry(name).source

    def code(self, name: str) -> dict[str, Any]:
        """:func:`code_identity` of the entry, taken when it is first asked for in this process
        (so it describes the code that was imported, not a later edit of the file)."""
        if name not in self._codes:
            e = self._entry(name)
            self._codes[name] = code_identity(e.obj, e.dist)
        return self._codes[name]

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = closest(name, known)
        hint = f"; did you mean {close!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} Known {self.kind}s: {', '.join(known)}"


DECODERS = Registry(
    "decoder",
    "tmbench.decoders",
    {
        "greedy": "tmbench.decoders.greedy:greedy",
        "beam": "tmbench.decoders.beam:beam",
        "sample": "tmbench.decoders.sampling:sample",
        "top_k": "tmbench.decoders.sampling:top_k",
        "nucleus": "tmbench.decoders.sampling:nucleus",
        "typical": "tmbench.decoders.sampling:typical",
        "min_p": "tmbench.decoders.sampling:min_p",
        "epsilon": "tmbench.decoders.sampling:epsilon",
        "eta": "tmbench.decoders.sampling:eta",
        "contrastive": "tmbench.decoders.contrastive:contrastive",
        "maturation": "tmbench.tm.decode:maturation",
        "best_of_n": "tmbench.decoders.best_of_n:best_of_n",
        "no_repeat_greedy": "tmbench.decoders.no_repeat:no_repeat_greedy",
    },
)

MODELS = Registry(
    "model",
    "tmbench.models",
    {
        "smollm2-135m": "tmbench.models.hf:load_smollm2",
        "gemma3-270m": "tmbench.models.judges:load_gemma3_270m",
        "gemma3-270m-bf16": "tmbench.models.judges:load_gemma3_270m_bf16",
        "toy-random": "tmbench.models.toy:load_toy",
        "ar-bbc-tiny": "tmbench.models.shipped:load_ar_bbc_tiny",
        "tm-bbc-tiny": "tmbench.models.shipped:load_tm_bbc_tiny",
        "tm-smollm2": "tmbench.models.delta:load_tm_smollm2",
        "tm-smollm2-ce": "tmbench.models.delta:load_tm_smollm2_ce",
        "ar-smollm2": "tmbench.models.delta:load_ar_smollm2",
        "tm-smollm2-init": "tmbench.models.delta:load_tm_smollm2_init",
        "all-minilm-l6-v2": "tmbench.models.featurizers:load_minilm",
        "bigram-bbc": "tmbench.models.ngram:load_bigram_bbc",
    },
)

METRICS = Registry(
    "metric",
    "tmbench.metrics",
    {
        "repetition": "tmbench.metrics.repetition:repetition",
        "diversity": "tmbench.metrics.diversity:diversity",
        "coherence": "tmbench.metrics.coherence:coherence",
        "mauve": "tmbench.metrics.mauve:mauve",
        "gen_ppl": "tmbench.metrics.perplexity:gen_ppl",
        "heldout_ppl": "tmbench.metrics.perplexity:heldout_ppl",
        "throughput": "tmbench.metrics.throughput:throughput",
        "dynamics": "tmbench.metrics.dynamics:dynamics",
        "compression_ratio": "tmbench.metrics.compression:compression_ratio",
    },
)


def register_decoder(name: str) -> Callable:
    return DECODERS.register(name)


def register_model(name: str) -> Callable:
    return MODELS.register(name)


def register_metric(name: str) -> Callable:
    return METRICS.register(name)
