"""Names -> objects for decoders, models and metrics.

Built-ins are a static name map (imported lazily on first use, so importing tmbench stays
cheap); third-party packages add their own through the entry-point groups
``tmbench.decoders``, ``tmbench.models`` and ``tmbench.metrics``; notebooks and tests use the
``register_*`` decorators. Unknown names fail with the known ones and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    source: str  # "builtin", "entry-point <dist>", or "decorator <module>"


class Registry:
    """One kind of named object. Built-ins are 'module:attr' strings resolved on demand."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False

    def register(self, name: str, obj: Any = None, *, source: str | None = None):
        """Register ``obj`` under ``name``; used bare as a decorator when ``obj`` is None."""

        def add(o):
            src = source or f"decorator {getattr(o, '__module__', '?')}"
            self._entries[name] = Entry(name, o, src)
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
                e = Entry(name, e.obj.load(), e.source)  # resolve an EntryPoint once
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

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
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
