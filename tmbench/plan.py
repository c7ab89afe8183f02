"""The plan stage: everything a suite asks for is resolved and checked before the first token.

``make_plan`` turns a suite (and the CLI's selections) into a :class:`Plan`: which runs, with
which resolved decoder parameters (defaults applied), which metrics with which resolved
parameters, on which prompts. It fails with one ``ValueError`` naming the suite entry, what
was wrong and what is accepted when
- a model does not exist or does not load;
- a decoder parameter is unknown, of the wrong type, or rejected by the decoder's own checks
  (each decoder is dry-run on a tiny random model of its kind for two tokens);
- a metric parameter is unknown (names come from the metric's signature) or of the wrong type,
  or rejected by the metric's ``check_params`` hook;
- prompt + max_new_tokens (+ the maturation tail) does not fit a model's context: one context
  policy for every model, refusal at plan time (no silent sliding window).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

from tmbench.params import defaults_of, plain as _plain, resolve_params
from tmbench.registry import DECODERS, METRICS
from tmbench.suites import DecoderSpec, MetricSpec, Suite
from tmbench.types import is_seed_free, metric_key


@dataclass(frozen=True)
class RunPlan:
    model: str
    decoder: DecoderSpec
    params: dict[str, Any]  # resolved: the suite's settings with the decoder's defaults applied
    defaults: dict[str, Any]  # the decoder's own defaults (stored so tables render from records)
    seed: int
    batch_size: int
    seed_free: bool = False  # the decoder draws nothing from its generator at these params


@dataclass(frozen=True)
class MetricPlan:
    name: str
    params: dict[str, Any]  # resolved with the metric's defaults

    @property
    def id(self) -> str:
        """What a record's metric results are keyed by: name and resolved parameters."""
        return metric_key(self.name, **{k: _key_value(v) for k, v in self.params.items()})


def _key_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return "|".join(map(str, v))
    return v


# ---- decoder dry runs -------------------------------------------------------------------------

_TOYS: dict[str, Any] = {}


def _toy(kind: str):
    """A tiny random model of each kind, for the decoders' own parameter checks."""
    if kind not in _TOYS:
        if kind == "ar":
            from tmbench.models.toy import load_toy

            _TOYS[kind] = load_toy()
        else:
            from tmbench.backbones.gpt import GPT, GPTConfig
            from tmbench.tm.model import MaturationModel, TMConfig

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                bb = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=256))
                _TOYS[kind] = MaturationModel(bb, TMConfig(vocab_size=300, k_max=4)).eval()
    return _TOYS[kind]


def dry_run(fn: Callable, params: dict[str, Any], label: str) -> None:
    """Call the decoder for two tokens on a tiny random model of its kind, so that its own
    checks (types and ranges) run now; a ValueError names the suite entry, and any other
    exception (a plugin's bug) is one line saying where it was raised."""
    model = _toy(getattr(fn, "model_kind", "ar"))
    gens = [torch.Generator().manual_seed(0)]
    try:
        with torch.inference_mode():
            fn(model, [[1, 2, 3]], max_new_tokens=2, generator=gens, **params)
    except ValueError as e:
        raise ValueError(f"decoder {label!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a decoder's own bug: one line, where it raised
        last = traceback.extract_tb(e.__traceback__)[-1]
        msg = " ".join(str(e).split())[:300]
        raise ValueError(f"decoder {label!r} failed its dry run: {type(e).__name__}: {msg} "
                         f"(raised at {last.filename}:{last.lineno}; the dry run calls it for "
                         "two tokens on a tiny random model of its kind)") from None


# ---- context ------------------------------------------------------------------------------------

def context_length(model) -> int | None:
    """Positions the model can attend over (None = unbounded)."""
    bb = getattr(model, "backbone", None)
    if bb is not None and getattr(bb, "block_size", None):
        return int(bb.block_size)
    cfg = getattr(getattr(model, "model", None), "config", None)
    n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return int(n) if n else None


def positions_needed(model, longest_prompt: int, max_new_tokens: int, params: dict) -> int:
    """Positions a run uses: AR = prompt + new tokens - 1 (the last token is never fed);
    TM = prompt + new tokens - 1 + the forwarded tail (K - 1 under readout ``next``)."""
    n = longest_prompt + max_new_tokens - 1
    if getattr(model, "kind", "ar") == "tm":
        n += int(params.get("tail_len", 16)) - getattr(model, "readout_shift", 1)
    return n


def check_context(model, name: str, label: str, longest_prompt: int, max_new_tokens: int,
                  params: dict) -> None:
    ctx = context_length(model)
    need = positions_needed(model, longest_prompt, max_new_tokens, params)
    if ctx is not None and need > ctx:
        raise ValueError(
            f"model {name!r} with decoder {label!r}: the longest prompt ({longest_prompt} tokens) "
            f"+ max_new_tokens {max_new_tokens} needs {need} positions, more than the model's "
            f"context of {ctx}; shorten prompt_len or max_new_tokens, or drop the model from "
            "the suite (tmbench refuses rather than silently sliding the window)")


# ---- the plan ------------------------------------------------------------------------------------

def select_decoders(specs: list[DecoderSpec], wanted: list[str] | None,
                    log: Callable = print) -> list[DecoderSpec]:
    """``--decoder X``: the suite entry labelled X; else every entry whose decoder is named X;
    else the registered decoder X with its defaults. ``X[key=value,...]`` (see
    :func:`with_settings`) sets parameters. Says which entries it selected."""
    if not wanted:
        return specs
    chosen: list[DecoderSpec] = []
    for w in wanted:
        by_label = [d for d in specs if d.label == w]
        by_name = [d for d in specs if d.name == w]
        if not by_label and w.endswith("]"):
            hit, how = with_settings(specs, w)
        elif by_label:
            hit, how = by_label, "label"
        elif by_name:
            hit, how = by_name, "decoder name"
        else:
            DECODERS.get(w)  # raises with the known names and the closest match
            hit, how = [DecoderSpec(w, w, {})], "registered decoder with its defaults"
        log(f"--decoder {w}: selected {', '.join(d.label for d in hit)} (by {how})")
        chosen.extend(d for d in hit if d not in chosen)
    return chosen


def with_settings(specs: list[DecoderSpec], w: str) -> tuple[list[DecoderSpec], str]:
    """``X[key=value,...]``, in the brackets of model specs (values read as YAML scalars): the
    suite entry labelled X with these parameters on top of its own, else the registered
    decoder X with them on top of its defaults; labelled with the string, keys sorted. Keys
    are checked against the decoder's keyword parameters here."""
    import yaml

    from tmbench.model_specs import split_options

    base, raw = split_options(w, what="decoder")
    if not raw:
        raise ValueError(f"decoder {w!r}: no settings in the brackets; accepted: "
                         "NAME[key=value,...], e.g. nucleus[p=0.8]")
    settings = {k: _scalar(v, yaml) for k, v in raw.items()}
    label = f"{base}[{','.join(f'{k}={raw[k]}' for k in sorted(raw))}]"
    entry = next((d for d in specs if d.label == base), None)
    if entry is not None:
        spec = DecoderSpec(entry.name, label, {**entry.params, **settings}, entry.seeds,
                           entry.models)
        how = f"suite entry {base} with {', '.join(sorted(raw))} set"
    else:
        DECODERS.get(base)  # raises with the known names and the closest match
        spec, how = DecoderSpec(base, label, settings), "registered decoder with these settings"
    resolve_params(DECODERS.get(spec.name), spec.params, label)  # unknown keys, wrong types
    return [spec], how


def _scalar(v: str, yaml) -> Any:
    try:
        x = yaml.safe_load(v)
    except yaml.YAMLError:
        return v
    if isinstance(x, str):  # YAML 1.1 reads 3e-4 as a string; on a command line it is a number
        try:
            return float(x)
        except ValueError:
            return x
    return x


class _Stop(Exception):
    """Raised by the dry run's ``load_model``: the metric got past its own parameter checks."""


def dry_run_metric(fn: Callable, params: dict[str, Any], name: str) -> None:
    """Call the metric on two tiny samples with no generator model and a ``load_model`` that
    stops the call: parameter checks at the top of a metric run now; a judge or featurizer name
    is checked as a model spec (registered, or a hub name / local folder) but not loaded."""
    from tmbench.model_specs import validate_model_spec
    from tmbench.registry import MODELS
    from tmbench.types import MetricContext, Sample

    def stop(model_name, **_):
        validate_model_spec(model_name if model_name in MODELS else f"hf:{model_name}")
        raise _Stop

    samples = [Sample(i, 0, "a b c", [1, 2, 3], "d e f g", [4, 5, 6, 7], "h i j") for i in range(2)]
    ctx = MetricContext(model=None, tokenizer=None, load_model=stop, decode_info={"dry_run": True})
    try:
        fn(samples, ctx=ctx, **params)
    except _Stop:
        pass
    except ValueError as e:
        raise ValueError(f"metric {name!r}: {e}") from None
    except ImportError:
        pass  # an optional dependency: reported (and the metric skipped) at scoring time


def resolve_metrics(metrics: tuple[MetricSpec, ...]) -> list[MetricPlan]:
    """Every metric's parameters resolved with its defaults and checked (names from the
    signature, types from the defaults, values by the metric's own checks)."""
    out = []
    for m in metrics:
        fn = METRICS.get(m.name)
        params = resolve_params(fn, m.params, m.name, what="metric", skip=("ctx",))
        dry_run_metric(fn, params, m.name)
        out.append(MetricPlan(m.name, {k: _plain(v) for k, v in params.items()}))
    return out


def plan_runs(suite: Suite, models: list[str] | None, decoders: list[str] | None,
              seeds: list[int] | None, log: Callable = print) -> list[RunPlan]:
    """Names and parameters of every run, checked (no model is loaded here)."""
    from tmbench.model_specs import validate_model_spec

    # registered names, hf:<folder or hub name>, gguf:<file>, path:<tmbench folder>
    model_names = [str(validate_model_spec(m)) for m in (models or list(suite.models))]
    specs = select_decoders(list(suite.decoders), decoders, log)
    # A model the suite does not list (``--model hf:...``) runs every entry of the suite, one
    # per label; entries that name their models otherwise run on those models only.
    extra = [m for m in model_names if m not in set(map(str, suite.models))]
    if extra:
        log(f"{', '.join(extra)}: not a model of suite {suite.name}; running every decoder "
            "entry of the suite that fits its kind (one per label)")
    labels: dict[str, set[str]] = {m: set() for m in extra}
    plans = []
    for d in specs:
        fn = DECODERS.get(d.name)
        params = resolve_params(fn, d.params, d.label)
        dry_run(fn, params, d.label)
        free = is_seed_free(fn, params)
        run_seeds = list(seeds or d.seeds or suite.seeds)
        if free and len(run_seeds) > 1:  # one run stands for every seed: not decoded twice
            log(f"{d.label}: {d.name} draws nothing from its generator at these settings; one "
                f"run (seed {run_seeds[0]}) stands for seeds {run_seeds}")
            run_seeds = run_seeds[:1]
        for m in model_names:
            if m in labels:
                if d.label in labels[m]:
                    continue
                labels[m].add(d.label)
            elif d.models is not None and m not in d.models:
                continue  # the suite entry runs on the models it names only
            for s in run_seeds:
                for bs in suite.batch_sizes:
                    plans.append(RunPlan(m, d, params, defaults_of(fn), s, bs, free))
    _refuse_shared_runs(plans)
    return plans


def _refuse_shared_runs(plans: list[RunPlan]) -> None:
    """Two labels with the same resolved settings on one model would be one run (labels are
    not in run keys), so one record and one row under whichever label ran first: refused (a
    sweep point that repeats a hand-written entry is the usual way to get there)."""
    import json

    seen: dict[tuple, str] = {}
    for p in plans:
        k = (p.model, p.decoder.name, json.dumps(p.params, sort_keys=True, default=str), p.seed,
             p.batch_size)
        other = seen.setdefault(k, p.decoder.label)
        if other != p.decoder.label:
            raise ValueError(f"decoder entries {other!r} and {p.decoder.label!r} give model "
                             f"{p.model!r} the same settings ({p.decoder.name} with "
                             f"{k[2]}): one run, one record, one row; drop one of them or "
                             "take the point out of the sweep")


@dataclass
class SuitePlan:
    """The plan stage's output: what a ``tmbench run`` will do, all of it checked."""

    runs: list[RunPlan]
    metrics: list[MetricPlan]
    prompts: list[Any]  # tmbench.data.prompts.Prompt


def build_prompts(suite: Suite, limit: int | None, load_model: Callable) -> list:
    """The suite's prompts (the first ``limit`` with ``--limit``)."""
    from tmbench.data.prompts import load_documents, make_prompts

    ds = suite.dataset
    n = ds["n_prompts"] if limit is None else min(limit, ds["n_prompts"])
    tok = load_model(ds["tokenizer"]).tokenizer if ds.get("prompt_unit") == "token" else None
    return make_prompts(load_documents(ds), n_prompts=n, prompt_len=ds["prompt_len"],
                        reference_len=ds["reference_len"], unit=ds.get("prompt_unit", "word"),
                        tokenizer=tok, per_article=ds.get("per_article", 1),
                        boundary=ds.get("boundary", "paragraph"))


def plan_suite(suite: Suite, load_model: Callable, *, models: list[str] | None = None,
               decoders: list[str] | None = None, seeds: list[int] | None = None,
               limit: int | None = None, runs: bool = True, log: Callable = print) -> SuitePlan:
    """Every check before any work: names, decoder and metric parameters, models load, the
    context of every model fits prompt + max_new_tokens. Raises ValueError on the first
    problem. A decoder entry is paired only with models of its kind (maturation runs on TM
    models). ``runs=False`` plans the metrics and prompts only (the human row alone)."""
    plans = plan_runs(suite, models, decoders, seeds, log=log) if runs else []
    metrics = resolve_metrics(suite.metrics)
    prompts = build_prompts(suite, limit, load_model)
    kept = []
    for plan in plans:
        try:
            model = load_model(plan.model)
        except ValueError as e:
            raise ValueError(f"model {plan.model!r} does not load: {e}") from None
        if getattr(DECODERS.get(plan.decoder.name), "model_kind", "ar") != getattr(model, "kind", "ar"):
            continue  # e.g. maturation on an AR model: not a combination a suite runs
        longest = max(len(model.tokenizer.encode(p.text)) for p in prompts)
        check_context(model, plan.model, plan.decoder.label, longest, suite.max_new_tokens,
                      plan.params)
        kept.append(plan)
    if runs and not kept:
        raise ValueError(f"nothing to run: no decoder entry of suite {suite.name} fits the "
                         f"model(s) {', '.join(sorted({p.model for p in plans}) or models or [])} "
                         "(maturation entries need a TM model, the others an AR model)")
    return SuitePlan(kept, metrics, prompts)
