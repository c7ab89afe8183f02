"""What lives across the runs of one suite invocation."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from tmbench.env import environment
from tmbench.model_specs import judge_spec, load_model_spec
from tmbench.registry import code_identity
from tmbench.suites import Suite


@dataclass
class Session:
    """Settings of one ``tmbench run``, the models it has loaded (generators, judges and
    featurizers alike, each loaded once) and the scores of per-model metrics (held-out
    perplexity), computed once per model and reused by every run of it."""

    suite: Suite
    out: Path
    device: str = "cpu"
    dtype: str = "float32"
    limit: int | None = None
    progress: bool = True
    log: Callable[..., None] = print
    rerun: bool = False  # regenerate (and rescore) planned runs even when their record exists
    models: dict[str, Any] = field(default_factory=dict, repr=False)
    per_model: dict[tuple, tuple] = field(default_factory=dict, repr=False)
    load_s: float = 0.0  # seconds spent loading models so far (kept out of scoring times)
    # (model, decoder, batch size) already warmed up in this session (timed suites warm up once)
    warmed: set[tuple] = field(default_factory=set, repr=False)
    env: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available; "
                             "accepted: cpu")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        self.out = Path(self.out)
        self.env = environment(self.device, peaks=self.timed)  # peaks: the roofline

    @property
    def timed(self) -> bool:
        """The suite measures throughput: warm-up, time to first token, batch size in the key."""
        return "throughput" in {m.name for m in self.suite.metrics}

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def load_model(self, name: str, *, judge: bool = False, featurizer: bool = False) -> Any:
        """A generator in the run's dtype; a judge, featurizer or scorer (``judge=True``) in
        float32 whatever the run's dtype, so a judge's scores never depend on how the samples
        were generated (a bfloat16 judge is a model of its own name, e.g. ``gemma3-270m-bf16``).
        A judge's name is a registered name or a hub name (:func:`judge_spec`);
        ``featurizer=True`` gives it as a text featurizer (``embed``)."""
        if featurizer:
            return self._featurizer(name)
        spec = judge_spec(name) if judge else name
        dtype = "float32" if judge else self.dtype
        key = name if dtype == self.dtype else f"{name} ({dtype})"
        if key not in self.models:
            self.models[key] = self._timed_load(key, lambda: load_model_spec(
                spec, device=self.device, dtype=dtype))
        return self.models[key]

    def _featurizer(self, name: str) -> Any:
        """A registered featurizer as it is, a registered transformers model as its last-token
        features, a hub name as MAUVE featurizes it (``tmbench.models.featurizers``)."""
        from tmbench.models import featurizers

        key = f"{name} (featurizer)"
        if key not in self.models:
            if judge_spec(name) == name:
                self.models[key] = featurizers.as_featurizer(self.load_model(name, judge=True),
                                                             name)
            else:
                self.models[key] = self._timed_load(key, lambda: featurizers.load_hf_featurizer(
                    name, device=self.device))
        return self.models[key]

    def _timed_load(self, key: str, load: Callable[[], Any]) -> Any:
        self.log(f"loading model {key} ...")
        t0 = time.perf_counter()
        model = load()
        self.load_s += time.perf_counter() - t0
        return model

    def model_door(self, judges: dict[str, dict]) -> Callable[..., Any]:
        """The one door through which metrics and decoders load models by name (judges,
        featurizers, best-of-n scorers): ``load(name, featurizer=False)``, each model loaded
        once per session (:meth:`load_model`), its identity and code identity written to
        ``judges`` (what the run record keeps)."""

        def load(name: str, *, featurizer: bool = False) -> Any:
            m = self.load_model(name, judge=True, featurizer=featurizer)
            judges[name] = {**(m.identity() if hasattr(m, "identity") else {"name": name}),
                            "code": code_identity(type(m))}
            return m

        return load
