"""The contracts between suites, models, decoders and metrics, in one short file.

A **decoder** is a plain function::

    def my_decoder(model, prompts: list[list[int]], *, max_new_tokens: int,
                   generator: list[torch.Generator], **params) -> list[list[int]] | DecodeOutput

``generator`` holds one ``torch.Generator`` per prompt, seeded by the runner from (run seed,
prompt position): row b draws only from ``generator[b]``, so a prompt's tokens never depend on
the batch it lands in. (The built-in decoders also accept a single generator for the batch.)

Its keyword parameters (with defaults) are its schema; the runner validates a suite's settings
against the signature and records the resolved values. Returned continuations stop at (and
include) the model's EOS token when one is generated. A decoder declares which model kind it
talks to with the ``@model_kind("ar")`` / ``@model_kind("tm")`` decorator (default "ar").

A **metric** is a plain function::

    def my_metric(samples: list[Sample], *, ctx: MetricContext, **params) -> dict[str, Score]

returning scores under keys that carry their parameters (see :func:`metric_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class Tokenizer(Protocol):
    name: str
    eos_token_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@dataclass
class DecodeOutput:
    """What a decoder may return instead of bare token lists: ``info`` holds JSON-able extras
    (per-sample lists of length B, or per-batch scalars), e.g. maturation traces."""

    tokens: list[list[int]]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    """One continuation (or, for the human row, the reference continuation)."""

    prompt_index: int
    seed: int
    prompt_text: str
    prompt_ids: list[int]
    text: str
    token_ids: list[int]
    reference_text: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Score:
    """One metric value; ``per_sample`` (aligned with the samples) enables bootstrap CIs."""

    value: float
    per_sample: list[float] | None = None
    higher_is_better: bool | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricContext:
    """What a metric may use beyond the samples. Judges and featurizers are loaded by name
    through ``load_model`` (cached by the runner) and recorded in the run record."""

    model: Any  # the generator model, or None for the human row
    tokenizer: Tokenizer | None
    load_model: Callable[[str], Any]
    device: str = "cpu"
    cache_dir: str | None = None
    corpus: Any = None  # the suite's dataset object (held-out text for perplexity)
    decode_info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings the metric wants recorded


def metric_key(name: str, **params: Any) -> str:
    """``metric_key("rep", n=2, unit="word") == "rep[n=2,unit=word]"``; parameters sorted."""
    if not params:
        return name
    inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
    return f"{name}[{inner}]"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def prompt_generator(seed: int, position: int):
    """The generator of the prompt at ``position`` (0-based, in the suite's sample order) in a
    run with ``seed``: one per prompt, so a prompt's tokens never depend on its batch."""
    import torch

    return torch.Generator().manual_seed(seed * 1_000_003 + position)


def model_kind(kind: str) -> Callable:
    """Mark a decoder as talking to an "ar" (logits) or "tm" (maturation) model."""
    if kind not in ("ar", "tm"):
        raise ValueError(f"model kind must be 'ar' or 'tm', got {kind!r}")

    def mark(fn):
        fn.model_kind = kind
        return fn

    return mark
