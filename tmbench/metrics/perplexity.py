"""Perplexity: held-out perplexity of the generator (through lm-eval) and generation
perplexity of the samples under a pinned judge.

``heldout_ppl``: the generator scores held-out text with lm-eval's ``loglikelihood_rolling``
(model wrapped by :class:`tmbench.metrics.lm_eval_lm.ScoringLM`). Default corpus: the first
``n_articles`` BBC test articles (content-hash order), written to a JSONL file and run as the
local task ``tasks/lm_eval/tmbench_bbc_ppl.yaml``. With ``lm_eval_task="wikitext"`` (or any
lm-eval perplexity task) it runs lm-eval's own task instead, which needs the hub for its data.

Window policy, the same for every model: lm-eval's disjoint rolling windows
(``get_rolling_token_windows``, ``context_len`` 1), each predicting ``W`` tokens, with
``W = min(max_length, model context - 1)`` (scoring feeds one token more than it predicts).
The default ``max_length=127`` is the largest window the shipped tiny models (128 positions)
allow, so every built-in model is scored with the same window; a model with a shorter context
gets a shorter one, recorded (``meta["window_reduced"]``) and named in the key, so it never
shares a column with the others. ``max_length=None`` asks for each model's own maximum
(capped at 2048), which differs between models.

Keys (``W`` = the window used): ``heldout_ppl[corpus=C,unit=word,window=W]`` and
``bits_per_byte[corpus=C,window=W]`` are the headlines (lm-eval's word perplexity and bits per
byte; comparable across tokenizers); ``heldout_ppl[corpus=C,unit=byte,window=W]`` and
``heldout_ppl[corpus=C,unit=token,window=W]`` (per model token: compare only within one
tokenizer) are further columns. The human row is skipped (no generator). Results are cached on
disk per model content hash and parameters, since every decoder and seed of a model would
recompute them.

``gen_ppl``: each continuation re-tokenised with the judge's tokenizer and scored given its
prompt (:mod:`tmbench.metrics.judge`: prompt and continuation encoded separately and
concatenated, prompt not scored; windows of ``window`` tokens advancing by ``stride`` for long
texts; scores cached per judge). The default judge is Gemma 3 270M (``gemma3-270m``), which no
row generates. Keys:

- ``gen_ppl[agg=pooled,judge=J]`` (headline): corpus perplexity exp(sum_i NLL_i / sum_i T_i)
  over all samples, NLL_i the summed token NLL (nats) of sample i and T_i its judge token
  count. ``per_sample`` holds each sample's own perplexity exp(NLL_i / T_i) (NaN for an empty
  continuation), so the value is *not* their mean; ``meta["per_sample_nll"]`` and
  ``meta["per_sample_tokens"]`` hold NLL_i and T_i, so that a table pools over prompts (and
  resamples prompts for an interval) by summing them.
- ``gen_ppl[agg=sample-mean,judge=J]``: the mean over samples of exp(NLL_i / T_i), the figure
  this key family reported before; long and short samples weigh the same.

``meta["self_judged"]`` is True when the judge is the generator. Applies to the human row too
(the judge scores the reference). Degenerate text scores low, so read it next to a diversity
figure (DESIGN 8.8); closer to the human row is better.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tmbench.fileio import atomic_write, sha256_text
from tmbench.metrics.judge import check_window, judge_logprobs
from tmbench.types import MetricContext, Sample, Score, metric_key, metric
from tmbench.versions import dist_version

TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks" / "lm_eval"
BBC_TASK = "tmbench_bbc_ppl"
CORPORA = ("bbc-test", "bbc-valid")


# ---- held-out perplexity ----------------------------------------------------------------------
@metric(per_model=True)  # the model alone: computed once per model and reused by its records
def heldout_ppl(samples: list[Sample], *, ctx: MetricContext, corpus: str = "bbc-test",
                n_articles: int = 8, max_length: int | None = 127, context_len: int = 1,
                lm_eval_task: str | None = None, batch_tokens: int = 2048) -> dict[str, Score]:
    """Held-out perplexity of the generator (BBC test by default): per word, bits per byte.

    Scored by lm-eval's ``loglikelihood_rolling``, one window policy for every model (module
    docstring)."""
    if lm_eval_task is None and corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; accepted: {', '.join(CORPORA)} "
                         "(or lm_eval_task=<an lm-eval perplexity task>)")
    if n_articles < 1:
        raise ValueError(f"n_articles must be >= 1, got {n_articles}")
    window_policy(max_length, None)  # checks max_length before any model is needed
    if ctx.model is None:
        ctx.notes.append("no generator model (human row); skipped")
        return {}
    if lm_eval_task is None and not (TASKS_DIR / f"{BBC_TASK}.yaml").exists():
        raise ValueError(f"the lm-eval task file {TASKS_DIR / BBC_TASK}.yaml is missing; "
                         "heldout_ppl on BBC needs a tmbench checkout (pip install -e .)")
    from tmbench.metrics.lm_eval_lm import ScoringLM
    from tmbench.scoring import context_length

    window, policy = window_policy(max_length, context_length(ctx.model))
    if policy["window_reduced"]:
        ctx.notes.append(f"the model's context ({policy['model_context']}) allows a window of "
                         f"{window} tokens, not max_length={max_length}; keyed window={window}")
    lm = ScoringLM(ctx.model, max_length=window, context_len=context_len,
                   batch_tokens=batch_tokens)
    label = lm_eval_task or corpus
    data_path, data_hash = (None, None) if lm_eval_task else _write_corpus(corpus, n_articles, ctx)
    params = {"corpus": label, "n_articles": None if lm_eval_task else n_articles,
              "adapter": lm.identity(), "data_sha256": data_hash, "lm_eval": dist_version("lm_eval")}
    cached = _cache_get(ctx, params)
    res = cached if cached is not None else _run_lm_eval(lm, lm_eval_task, data_path)
    if cached is None:
        _cache_put(ctx, params, res)
    meta = {**params, **policy, "task": res["task"], "task_version": res["version"],
            "n_docs": res["n_docs"], "tokens": res["tokens"], "per_doc_loglik": res["logliks"],
            "window": lm.max_length, "stride": lm.max_length - lm.context_len + 1,
            "cached": cached is not None}
    key = {"corpus": label, "window": lm.max_length}
    out = {
        metric_key("heldout_ppl", unit="word", **key): Score(res["word_perplexity"], None, False, meta),
        metric_key("heldout_ppl", unit="byte", **key): Score(res["byte_perplexity"], None, False, meta),
        metric_key("bits_per_byte", **key): Score(res["bits_per_byte"], None, False, meta),
    }
    if res["tokens"]:
        out[metric_key("heldout_ppl", unit="token", **key)] = Score(
            math.exp(-sum(res["logliks"]) / res["tokens"]), None, False,
            meta | {"note": "per model token; not comparable across tokenizers"})
    return out


def window_policy(max_length: int | None, model_context: int | None) -> tuple[int, dict[str, Any]]:
    """The rolling-window length W in tokens, and its description for ``meta``.
    W = min(max_length, model_context - 1); ``max_length=None``: the model's own maximum."""
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                   or max_length < 2):
        raise ValueError(f"max_length must be an integer >= 2 (tokens per window) or null "
                         f"(each model's own maximum), got {max_length!r}")
    if max_length is None:
        window = 2048 if model_context is None else min(model_context - 1, 2048)
    else:
        window = max_length if model_context is None else min(max_length, model_context - 1)
    return window, {
        "window_policy": "lm-eval loglikelihood_rolling: disjoint rolling windows "
                         "(get_rolling_token_windows), each predicting W tokens, "
                         "W = min(max_length, model context - 1)"
                         + (" with max_length = the model's own maximum (capped at 2048)"
                            if max_length is None else ""),
        "max_length": max_length, "model_context": model_context,
        "window_reduced": max_length is not None and window < max_length,
    }


def _run_lm_eval(lm: Any, task: str | None, data_path: str | None) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if task is None:
        # lm-eval takes an inline dict as a whole config (no merge with a registered task), so
        # read the task file and point its data_files at the JSONL written for this run.
        import yaml

        tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
        spec: Any = yaml.safe_load((TASKS_DIR / f"{BBC_TASK}.yaml").read_text())
        spec["dataset_kwargs"] = {"data_files": {"test": data_path}}
        name = spec["task"]
    else:
        tm, spec, name = TaskManager(), task, task
    # No global seeding: lm-eval seeds random/numpy/torch unless told not to (STYLE 6).
    out = simple_evaluate(model=lm, tasks=[spec], task_manager=tm, log_samples=True,
                          bootstrap_iters=0, random_seed=None, numpy_random_seed=None,
                          torch_random_seed=None)
    r = out["results"][name]
    missing = [k for k in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none")
               if k not in r]
    if missing:
        raise ValueError(f"lm-eval task {name!r} does not report {missing}; heldout_ppl needs a "
                         "loglikelihood_rolling task (e.g. wikitext)")
    docs = out["samples"][name]
    logliks = [float(d["resps"][0][0]) if isinstance(d["resps"][0], list) else float(d["resps"][0])
               for d in docs]
    strings = [d["arguments"][0][0] if isinstance(d["arguments"][0], (list, tuple)) else d["arguments"][0]
               for d in docs]
    return {"task": name, "version": out.get("versions", {}).get(name),
            "word_perplexity": float(r["word_perplexity,none"]),
            "byte_perplexity": float(r["byte_perplexity,none"]),
            "bits_per_byte": float(r["bits_per_byte,none"]),
            "n_docs": len(docs), "logliks": logliks,
            "tokens": sum(lm.token_counts.get(s, 0) for s in strings)}


def _write_corpus(corpus: str, n: int, ctx: MetricContext) -> tuple[str, str]:
    from tmbench.data.bbc import load_bbc

    arts = load_bbc(corpus.split("-", 1)[1])[:n]
    blob = "".join(json.dumps({"id": a.id, "text": a.text}) + "\n" for a in arts)
    digest = sha256_text(blob)
    folder = Path(ctx.cache_dir or tempfile.gettempdir()) / "lm_eval_data"
    path = folder / f"{corpus}-{n}-{digest[:12]}.jsonl"
    if not path.exists():
        atomic_write(path, blob)
    return str(path), digest


def _cache_path(ctx: MetricContext, params: dict) -> Path | None:
    ident = params["adapter"]["model"]
    if ctx.cache_dir is None or not ident.get("content_hash"):
        return None  # an unidentified model (e.g. random weights in tests) is never cached
    key = sha256_text(json.dumps(params, sort_keys=True, default=str))
    return Path(ctx.cache_dir) / "heldout_ppl" / f"{key[:24]}.json"


def _cache_get(ctx: MetricContext, params: dict) -> dict | None:
    p = _cache_path(ctx, params)
    return json.loads(p.read_text()) if p is not None and p.exists() else None


def _cache_put(ctx: MetricContext, params: dict, res: dict) -> None:
    p = _cache_path(ctx, params)
    if p is not None:
        atomic_write(p, json.dumps(res))


# ---- generation perplexity ---------------------------------------------------------------------
def gen_ppl(samples: list[Sample], *, ctx: MetricContext, judge: str = "gemma3-270m",
            window: int = 1024, stride: int = 512, batch_tokens: int = 2048) -> dict[str, Score]:
    """Generation perplexity: the samples scored by a pinned judge LM (as in Holtzman et al. 2020).

    Pooled over tokens (headline) and as the mean over samples; closer to the human row is
    better."""
    check_window(window, stride)
    if not samples:
        return {}
    jm = ctx.load_model(judge)
    lps, meta = judge_logprobs(jm, samples, ctx, window=window, stride=stride,
                               batch_tokens=batch_tokens)
    nll = [-float(lp.sum()) for lp in lps]  # (N,) nats
    tokens = [len(lp) for lp in lps]  # (N,)
    per = [math.exp(a / t) if t else float("nan") for a, t in zip(nll, tokens)]
    ok = [p for p in per if not math.isnan(p)]
    meta |= {"per_sample_nll": nll, "per_sample_tokens": tokens,
             "reading": "lower is not better by itself: closer to the human row is"}
    return {
        metric_key("gen_ppl", agg="pooled", judge=judge): Score(
            pooled_ppl(nll, tokens), per, None,
            meta | {"aggregate": "exp(sum per_sample_nll / sum per_sample_tokens), pooled over "
                                 "samples; per_sample = exp(nll_i / tokens_i), not averaged"}),
        metric_key("gen_ppl", agg="sample-mean", judge=judge): Score(
            float(np.mean(ok)) if ok else float("nan"), per if len(ok) == len(per) else None,
            None, meta | {"aggregate": "mean over samples of exp(nll_i / tokens_i)"}),
    }


def pooled_ppl(nll: list[float], tokens: list[int]) -> float:
    """exp(sum NLL / sum tokens): perplexity of the samples taken as one corpus (NaN when
    there is no token)."""
    n = sum(tokens)
    return math.exp(sum(nll) / n) if n else float("nan")
