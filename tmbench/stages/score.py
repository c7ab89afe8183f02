"""The score stage: the suite's metrics over a run's samples.

Each metric is keyed by its resolved parameters. Judges and featurizers come from the session
(loaded once, their identities recorded). A metric of the model alone (``@metric(per_model=
True)``: held-out perplexity) is computed once per model and reused. A metric that raises is a
:class:`MetricError` naming the metric and the run; only a missing optional dependency skips
it, and :func:`complete` scores it on the stored samples once the dependency is there. Each
metric's result carries the code identity of the metric's implementation
(``metric_runs[id]["code"]``); :func:`complete` rescores a stored result whose code identity
differs from the installed metric's (or was never recorded), without generating again.
A metric's ``scoring_s`` excludes the time spent loading a judge or featurizer the first time
(recorded as its ``load_s``): loading is paid once per session, scoring once per run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tmbench.plan import MetricPlan
from tmbench.registry import METRICS
from tmbench.results import canonical
from tmbench.stages.session import Session
from tmbench.types import DecodeInfo, MetricContext, RunRecord, Sample, Score


class MetricError(RuntimeError):
    """A metric raised while scoring a run (not a missing optional dependency)."""


@dataclass
class Scored:
    metrics: dict[str, dict]  # metric key -> {value, per_sample, meta, metric, metric_id, ...}
    metric_runs: dict[str, dict]  # metric id -> {name, params, status, reason?, scoring_s}
    notes: list[str]
    judges: dict[str, dict]  # judge / featurizer name -> identity


def score(session: Session, samples: list[Sample], model: Any, decode_info: DecodeInfo,
          metrics: list[MetricPlan], what: str) -> Scored:
    """Every metric in ``metrics`` over ``samples`` (``model`` None: the human row)."""
    out = Scored({}, {}, [], {})
    load = session.model_door(out.judges)

    for m in metrics:
        fn, code = METRICS.get(m.name), METRICS.code(m.name)
        t0, load0 = time.perf_counter(), session.load_s
        cache_key = None
        if getattr(fn, "per_model", False):
            if model is None:
                out.metric_runs[m.id] = {"name": m.name, "params": m.params, "status": "ok",
                                         "scoring_s": 0.0, "note": "not defined without a model",
                                         "code": code}
                continue
            cache_key = (m.id, canonical(model.identity()))
        if cache_key in session.per_model:
            got, judges = session.per_model[cache_key]
            out.judges.update(judges)
        else:
            ctx = MetricContext(model=model, tokenizer=getattr(model, "tokenizer", None),
                                load_model=load, device=session.device,
                                cache_dir=str(session.out / ".cache"), decode_info=decode_info)
            before = dict(out.judges)
            try:
                scores: dict[str, Score] = fn(samples, ctx=ctx, **m.params)
            except ImportError as e:  # an optional dependency: skip, complete later
                out.metric_runs[m.id] = {"name": m.name, "params": m.params,
                                         "status": "skipped", "reason": f"{type(e).__name__}: {e}",
                                         "code": code}
                session.log(f"warning: metric {m.name} skipped on {what} (missing optional "
                            f"dependency: {e}); a later run with it installed completes the record")
                continue
            except Exception as e:  # noqa: BLE001 - re-raised with the metric and run named
                raise MetricError(f"metric {m.id} failed on run {what}: "
                                  f"{type(e).__name__}: {e}") from e
            out.notes.extend(f"{m.name}: {n}" for n in ctx.notes)
            got = {k: {"value": s.value, "per_sample": s.per_sample,
                       "higher_is_better": s.higher_is_better, "meta": s.meta,
                       "metric": m.name, "metric_id": m.id} for k, s in scores.items()}
            if cache_key is not None:
                session.per_model[cache_key] = (
                    got, {k: v for k, v in out.judges.items() if k not in before})
        out.metrics.update(got)
        # a judge or featurizer loaded for the first time is load time, not scoring time
        load_s = session.load_s - load0
        out.metric_runs[m.id] = {"name": m.name, "params": m.params, "status": "ok",
                                 "scoring_s": round(time.perf_counter() - t0 - load_s, 4),
                                 "load_s": round(load_s, 4), "code": code}
    return out


def complete(session: Session, rec: RunRecord, model: Any, metrics: list[MetricPlan],
             what: str) -> tuple[RunRecord | None, list[MetricPlan], list[str]]:
    """A finished run brought up to the suite's metrics, without generating again: metrics it
    lacks (or skipped for a missing dependency), and metrics whose implementation changed since
    they were scored (another code identity, or none recorded), are scored on its stored
    samples; scores of a metric the suite no longer has (or has with other parameters) are
    dropped. Returns (the new record, or None when nothing changed; the metrics scored; the
    metric ids dropped)."""
    done = rec.get("metric_runs", {})
    todo = [m for m in metrics if done.get(m.id, {}).get("status") != "ok"
            or done[m.id].get("code") != METRICS.code(m.name)]
    gone = sorted(set(done) - {m.id for m in metrics})
    if not todo and not gone:
        return None, [], []
    new = {k: v for k, v in rec.items() if k != "record_hash"}
    new["metrics"] = {k: v for k, v in rec["metrics"].items() if v.get("metric_id") not in gone}
    done = {k: v for k, v in done.items() if k not in gone}
    samples = [Sample(**s) for s in rec["samples"]]
    scored = (score(session, samples, model, rec.get("decode_info", {}), todo, what) if todo
              else Scored({}, {}, [], {}))
    for k in [k for k, v in new["metrics"].items() if v.get("metric_id") in scored.metric_runs]:
        del new["metrics"][k]  # a metric rescored replaces its old values
    new["metrics"].update(scored.metrics)
    new["metric_runs"] = {**done, **scored.metric_runs}
    new["notes"] = rec.get("notes", []) + scored.notes
    new["judges"] = {**rec.get("judges", {}), **scored.judges}
    new["environment"] = {**rec["environment"], "plugins": plugins(new)}
    t = rec["timings"]
    new["timings"] = {**t, **{k: t.get(k, 0.0) + sum(m.get(k, 0.0) for m in scored.metric_runs.values())
                              for k in ("scoring_s", "load_s")}}
    if "wall_s" in t:  # the rescoring's own time, so that wall - generation - scoring - load stays
        new["timings"]["wall_s"] = t["wall_s"] + sum(new["timings"][k] - t.get(k, 0.0)
                                                     for k in ("scoring_s", "load_s"))
    return new, todo, gone


def plugins(rec: RunRecord) -> dict[str, str | None]:
    """Package -> version of every installed distribution other than tmbench whose code shaped
    the record (decoder, model, metrics, judges): what its environment names."""
    spec = rec["spec"]
    codes = [spec["decoder"].get("code"), *spec["model"].get("code", {}).values(),
             *(r.get("code") for r in rec["metric_runs"].values()),
             *(j.get("code") for j in rec["judges"].values() if isinstance(j, dict))]
    return {c["package"]: c["version"] for c in codes
            if c and c.get("package") not in (None, "tmbench")}
