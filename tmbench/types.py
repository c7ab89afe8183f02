"""The contracts between suites, models, decoders and metrics, in one short file.

A **decoder** is a plain function::

    def my_decoder(model, prompts: list[list[int]], *, max_new_tokens: int,
                   generator: list[torch.Generator], **params) -> list[list[int]] | DecodeOutput

``generator`` holds one ``torch.Generator`` per prompt, seeded by the runner from (run seed,
prompt position): row b draws only from ``generator[b]``, so a prompt's tokens never depend on
the batch it lands in. (The built-in decoders also accept a single generator for the batch.)

A decoder that needs another model by name (best-of-n's scorer) takes a keyword-only
``ctx: DecodeContext`` as well; it is never a setting. Its keyword parameters (with defaults)
are its schema; the runner validates a suite's settings
against the signature and records the resolved values. Returned continuations stop at (and
include) the model's EOS token when one is generated. A decoder declares which model kind it
talks to with the ``@model_kind("ar")`` / ``@model_kind("tm")`` decorator (default "ar"), and
a decoder that draws nothing from its generator (at every setting, or at some) says so with
``@seed_free`` (:func:`seed_free`): the planner then runs it once, whatever seeds a suite names.
A decoder may call :func:`first_token` once its first tokens are final; a run that measures
throughput then reads the time to first token there instead of by a separate one-token decode.

A **metric** is a plain function::

    def my_metric(samples: list[Sample], *, ctx: MetricContext, **params) -> dict[str, Score]

returning scores under keys that carry their parameters (see :func:`metric_key`). The optional
``@metric`` decorator marks one (``per_model=True``: it reads the model alone, so the runner
scores it once per model).

What a decoder (or a metric) may call on a model is :class:`ARModelProtocol` ("ar": logits
with a KV cache over a :class:`DecodeState`, implemented by ``tmbench.models.base.ARModel``) or :class:`TMModelProtocol`
("tm": the maturation step, implemented by ``tmbench.tm.model.MaturationModel``).
A decoder that needs an attribute neither names shows a method the protocol is missing.
What the runner tells a metric about decoding is :class:`DecodeInfo`; the maturation trace
format is :class:`Trace`. A run is described by a :class:`RunSpec` (the run key hashes the part
of it that determines the tokens) and stored as a :class:`RunRecord`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, TypedDict

if TYPE_CHECKING:
    import torch


class Tokenizer(Protocol):
    name: str
    eos_token_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


HUMAN = "human"  # the model name and kind of the human reference row


# ---- models: what decoders and metrics may call ----------------------------------------------

@dataclass
class StepOutput:
    """What an AR model's ``prefill`` and ``step`` return."""

    logits: torch.Tensor  # (B, V) float32, next-token logits at the last position
    hidden: torch.Tensor  # (B, H) last-layer hidden state at the last position
    state: DecodeState


@dataclass
class DecodeState:
    """An AR model's decoding state between steps (decoders pass it back, never read it)."""

    cache: Any  # backend KV cache
    attention_mask: torch.Tensor  # (B, S) long, 1 = real token, 0 = left pad
    positions: torch.Tensor  # (B,) long, position id of the next token
    prompt_hidden: torch.Tensor | None = None  # (B, S, H) when requested (contrastive search)
    steps: int = 0  # decoding steps taken (for error messages)


class ARModelProtocol(Protocol):
    """An autoregressive model: next-token logits over a KV cache. Batches are left-padded
    inside ``prefill``; decoders never see padding (see ``tmbench.models.base``)."""

    kind: str  # "ar"
    name: str
    vocab_size: int
    eos_token_id: int | None
    tokenizer: Any

    @property
    def device(self) -> torch.device: ...

    def identity(self) -> dict[str, Any]:
        """What identifies the model in a run record (name, content hash, dtype)."""

    def context_length(self) -> int | None:
        """Positions the model can attend over (None: no limit it can tell)."""

    def prefill(self, prompts: list[list[int]], keep_hidden: bool = False) -> StepOutput:
        """Run the prompts; logits (B, V) for the first new token and the decode state."""

    def step(self, state: DecodeState, tokens: torch.Tensor) -> StepOutput:
        """Feed one token per row (B,); logits (B, V) for the following position."""

    def select(self, state: DecodeState, index: torch.Tensor) -> DecodeState:
        """Rows ``index`` (N,) of the state, in that order (beam reordering, expansion)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """input_ids (B, T), attention_mask (B, S + T), position_ids (B, T), cache (None on a
        fresh batch) -> logits (B, T, V), last hidden states (B, T, H), the new cache."""

    def token_logprobs(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """log p(x_t | x_<t) for t = 1..T-1 of each sequence, teacher-forced."""


class TMModelProtocol(Protocol):
    """A Token Maturation model (DESIGN 3): a tail of K vectors matured over a KV cache of
    committed tokens, committed by nearest embedding, scored by the induced distribution.

    Optional, outside the protocol: ``training_tail_norm(alpha, sigma) -> Tensor`` gives the
    norm of the tail inputs the model's training objective builds at maturities ``alpha``; the
    tail-health trace uses it for ``tail_norm_ratio`` and falls back to the mean norm of the
    embedding rows when a model does not provide it. ``expected_embedding(z) -> Tensor`` (the
    expected embedding under the induced distribution) is what the decoder's ``feed: expected``
    calls; a model without it can decode with ``feed: state`` or ``nearest``."""

    kind: str  # "tm"
    name: str
    eos_token_id: int | None
    tokenizer: Any
    d: int  # embedding width
    radius: float  # R, the norm of the embedding rows (``sphere`` geometry)
    emb: torch.Tensor  # (V, d) embedding matrix E

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def readout_shift(self) -> int:
        """Slot t is read at position t - shift: 1 for readout ``next``, 0 for ``self``."""

    def identity(self) -> dict[str, Any]:
        """What identifies the model in a run record (name, content hash, readout, dtype)."""

    def context_length(self) -> int:
        """Positions the model can attend over (committed tokens and forwarded tail)."""

    def new_cache(self) -> Any:
        """An empty KV cache for :meth:`prefill` and :meth:`tail_step`."""

    def crop_cache(self, cache: Any, n: int) -> Any:
        """Keep the first ``n`` positions of ``cache`` (in place); return it."""

    def select_cache(self, cache: Any, index: torch.Tensor) -> Any:
        """The cache of batch rows ``index`` (a row may repeat; guidance keeps two copies)."""

    def alpha_profile(self, K: int, alpha_max: float) -> torch.Tensor:
        """(K,) maturity of tail slots, front (0) to newest (K - 1)."""

    def prefill(self, ids: torch.Tensor, key_real: torch.Tensor, positions: torch.Tensor,
                cache: Any = None) -> Any:
        """Committed tokens ids (B, S) into the KV cache; key_real (B, S) 1 = real, 0 = left
        pad; positions (B, S). Returns the cache."""

    def tail_step(self, pending: torch.Tensor, tail_z: torch.Tensor, alpha: torch.Tensor,
                  key_real: torch.Tensor, positions: torch.Tensor, cache: Any,
                  tail_only: torch.Tensor | bool = False) -> tuple[torch.Tensor, Any]:
        """One maturation forward of the pending token (B,) and the tail (B, K, d) over the
        cache of S positions (key_real (B, S)); z_hat (B, K, d) and the extended cache.
        ``tail_only`` (bool or (B,)): rows whose tail sees only the tail (unguided pass)."""

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (...,) long: the committed token (nearest embedding)."""

    def induced_logits(self, z: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """(..., d) -> (..., V) logits of the induced distribution (DESIGN 3.5)."""

    def token_logprobs(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """log p(x_t | x_<t) for t = 1..T-1 under the induced distribution."""


@dataclass
class DecodeContext:
    """What a decoder that takes a keyword-only ``ctx`` gets beyond its model and prompts:
    other models by name (best-of-n's scorer), loaded through ``load_model(name)`` as a
    metric's judges are (once by the runner, recorded in the run record's ``judges``)."""

    load_model: Callable[..., Any]


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


class DecodeInfo(TypedDict, total=False):
    """``MetricContext.decode_info``: how the samples were decoded (also stored in the record)."""

    params: dict[str, Any]  # the decoder's resolved keyword parameters (defaults applied)
    decoder: str  # registered decoder name
    seed: int  # run seed; prompt i drew from prompt_generator(seed, i)
    max_new_tokens: int
    # {"batches": [{"wall_s", ...} per batch], "memory_backoff": [...], "fingerprint": machine
    # fingerprint (with "peaks" when measured, tmbench.peaks), "peak_memory": {...}}: what the
    # throughput metric reads. A decoder whose step feeds more than one position per row
    # may say so in its batch info (DecodeOutput.info scalars): "rows_per_step",
    # "positions_per_step" (the roofline's work per step; default the batch size and 1)
    timing: dict[str, Any]
    human: bool  # the samples are the human reference continuations
    dry_run: bool  # plan-time check of the metric's parameters, no real samples


@dataclass
class MetricContext:
    """What a metric may use beyond the samples. Judges and featurizers (registered names or
    hub names) are loaded by name through ``load_model(name)`` and
    ``load_model(name, featurizer=True)`` (a model with ``embed``): loaded once by the runner,
    their identities recorded in the run record's ``judges``. A metric loads no model itself."""

    model: Any  # the generator model, or None for the human row
    tokenizer: Tokenizer | None
    load_model: Callable[..., Any]
    device: str = "cpu"
    cache_dir: str | None = None
    corpus: Any = None  # the suite's dataset object (held-out text for perplexity)
    decode_info: DecodeInfo = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings the metric wants recorded


class Trace(TypedDict):
    """What the ``maturation`` decoder records with ``trace=True`` (``tmbench.tm.trace``), per
    sample, in ``Sample.info["trace"]``; the ``dynamics`` metric reads it.

    One row per committed token t, in order; each row has one entry per update i = 0 .. K - 1
    of the last K updates the token received in the tail (i = 0 its first as an embryo, K - 1
    its last, at the front; tokens 2 .. K of a sample sat in the tail during warm-up and
    received up to K - 1 more, of which only the last K are kept). Update i takes the token's
    vector from z(i) to z(i + 1)::

        entropy[scale][t][i]  nats of the induced distribution (DESIGN 3.5) of z(i + 1) at scale
        displacement[t][i]    ||z(i + 1) - z(i)|| / R
        cos_final[t][i]       cos(z(i + 1), embedding of the committed token)
        top[t]                the top-5 token ids of the induced distribution of z(K)

    ``scale`` keys are the trace scales written with ``f"{s:g}"`` (``"1"``, ``"20"``). Beside
    the trace, with or without ``trace=True``, the decoder writes
    ``Sample.info["agree_front_argmax"]``: the share of the sample's commits equal to the argmax
    of the front slot's final prediction z_hat (DESIGN 3.3).
    """

    entropy: dict[str, list[list[float]]]
    displacement: list[list[float]]
    cos_final: list[list[float]]
    top: list[list[int]]


class TailHealth(TypedDict):
    """The tail's health (DESIGN 3.4 item 8, ``tmbench.tm.health``), which the ``maturation``
    decoder records with ``trace=True`` or ``health=True``, per sample, in
    ``Sample.info["tail"]``; one entry per committing step s of the sample."""

    fed_norm: list[float]  # mean norm of the vectors the slots fed the network (forwarded slots)
    train_norm: float | None  # mean norm of the tail inputs training builds at those maturities
    copy: list[float]  # share of slots behind the front whose nearest token = the slot ahead's
    distinct: list[float]  # distinct nearest tokens over K
    # share of slots whose prediction's nearest token equals the prediction with the tail's
    # nearest tokens fed as exact embeddings (as text)
    readable: list[float]


class RunSpec(TypedDict):
    """What one run is: ``record["spec"]``. The run key is the hash of the fields that determine
    its tokens (``tmbench.stages.record.key_part``): prompts, model (with the code identity of
    its implementation), decoder name, resolved params and code identity, seed,
    max_new_tokens, dtype, device type, and batch size only when timed. A code identity
    (``tmbench.registry.code_identity``) is ``{"package", "version", "object", "sha256"}``."""

    suite: dict[str, Any]  # {"name", "version"}
    prompts: dict[str, Any]  # {"hash", "n", "samples_per_prompt"}
    # the model's identity(): name, kind, source, content hash, ...; and "code": {"class":
    # code identity of its implementation, "loader"?: of a registered model's loader}
    model: dict[str, Any]
    # {"name", "label", "params" (resolved), "defaults" (the decoder's own), "source", "code"}
    decoder: dict[str, Any]
    seed: int
    max_new_tokens: int
    batch_size: int
    timed: bool  # the suite measures throughput: batch size is part of the key
    dtype: str
    device_type: str
    tmbench: str  # version that wrote the record (not part of the key)


class RunRecord(TypedDict, total=False):
    """One ``record.json`` (schema ``tmbench.results.SCHEMA_VERSION``), written atomically and
    checked on every read by ``tmbench.schema.record_problem``."""

    schema_version: int
    key: str
    spec: RunSpec
    row: dict[str, str]  # {"model", "decoder" (label)}: how tables name the run
    protocol: dict[str, Any]  # prompt selection, continuation, RNG and context rules
    # machine, library versions, fingerprint, "plugins": {package: version} of the non-tmbench
    # code that shaped the run
    environment: dict[str, Any]
    created: str
    # {"generation_s", "scoring_s" (metric compute), "load_s" (judges and featurizers loaded
    # while scoring), "wall_s"? (the run in the process that wrote the record, from before its
    # model was loaded to the record), "batches", "memory_backoff", "peak_memory", "world_size"?}
    timings: dict[str, Any]
    # metric key -> {"value", "per_sample", "higher_is_better", "meta", "metric", "metric_id"}
    metrics: dict[str, dict[str, Any]]
    # metric id -> {"name", "params", "status" ("ok" | "skipped"), "reason"?, "scoring_s", "load_s",
    # "code" (the metric's code identity: a changed one is rescored on the stored samples)}
    metric_runs: dict[str, dict[str, Any]]
    skipped_metrics: dict[str, str]
    notes: list[str]
    judges: dict[str, dict[str, Any]]  # judge / featurizer name -> its identity()
    decode_info: DecodeInfo
    samples: list[dict[str, Any]]  # Sample fields
    record_hash: str  # sha256 of the record without this field


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


def seed_free(fn: Callable | None = None, *,
              when: Callable[[dict[str, Any]], bool] | None = None) -> Callable:
    """Mark a decoder whose tokens do not depend on its generator: at every setting (bare
    ``@seed_free``) or at the resolved settings where ``when(params)`` is true (maturation with
    zero embryos, no update noise and argmax commits). A suite's seeds then plan one run of it
    (the first seed), and the tables say that the row stands for every seed."""

    def mark(f: Callable) -> Callable:
        f.seed_free = when or (lambda params: True)
        return f

    return mark if fn is None else mark(fn)


def is_seed_free(decoder: Callable, params: dict[str, Any]) -> bool:
    """Whether ``decoder`` at the resolved ``params`` draws nothing from its generator."""
    when = getattr(decoder, "seed_free", None)
    return bool(when(params)) if callable(when) else False


_FIRST_TOKEN: ContextVar[Callable[[], None] | None] = ContextVar("tmbench_first_token",
                                                                default=None)


def first_token() -> None:
    """Called by a decoder once the first token of every row is chosen for good (a greedy or
    sampling step, a maturation commit; not a beam, which may still change it). Inside
    :func:`first_token_clock` the first call is timed; elsewhere it does nothing."""
    mark = _FIRST_TOKEN.get()
    if mark is not None:
        mark()


@contextmanager
def first_token_clock(sync: Callable[[], None] | None = None) -> Iterator[list[float]]:
    """Yields a list that receives, at the first :func:`first_token` call inside the block, the
    seconds since the block began (after ``sync()``, e.g. a CUDA synchronize, when given).
    Later calls, and calls in a nested block, do not reach it (best-of-n's candidates are
    not its output)."""
    got: list[float] = []
    t0 = time.perf_counter()

    def mark() -> None:
        if not got:
            if sync is not None:
                sync()
            got.append(time.perf_counter() - t0)

    token = _FIRST_TOKEN.set(mark)
    try:
        yield got
    finally:
        _FIRST_TOKEN.reset(token)


def metric(fn: Callable | None = None, *, per_model: bool = False) -> Callable:
    """Mark a function as a metric (optional: any function with the metric signature is one).
    ``per_model``: its scores depend on the model alone, not on the samples (held-out
    perplexity), so the runner computes them once per model and has none for the human row.
    Bare ``@metric`` or ``@metric(per_model=True)``."""

    def mark(f: Callable) -> Callable:
        f.metric = True
        f.per_model = per_model
        return f

    return mark if fn is None else mark(fn)
