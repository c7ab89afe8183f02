"""The record stage: a run's spec, its key, and the record that stores it.

The run key is the hash of the part of the spec that determines the run's tokens
(:func:`key_part`), not of the suite file: editing a suite's description or adding a decoder
leaves every finished run valid, while a changed decoder or model implementation (its code
identity, :func:`tmbench.registry.code_identity`) is a new run. Records are written atomically
by ``tmbench.results``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from tmbench import __version__
from tmbench.data.prompts import Prompt, prompts_hash
from tmbench.plan import RunPlan
from tmbench.registry import DECODERS, MODELS, code_identity
from tmbench.results import SCHEMA_VERSION
from tmbench.stages.generate import Generated
from tmbench.stages.score import Scored, plugins
from tmbench.stages.session import Session
from tmbench.suites import Suite
from tmbench.types import HUMAN, DecodeInfo, RunRecord, RunSpec


def key_part(spec: RunSpec) -> dict[str, Any]:
    """The part of a run spec that determines its tokens (what the run key hashes): prompts,
    model identity (with the code identity of its implementation), decoder name, resolved
    params and code identity (package, version and source hash), seed, max_new_tokens, dtype,
    device type, and the batch size only where it is measured (throughput). Not the suite file
    or the label. A spec from before code identities were recorded hashes as it did then."""
    dec = spec["decoder"]
    out = {k: spec[k] for k in ("prompts", "model", "seed", "max_new_tokens", "dtype",
                                "device_type")}
    out["decoder"] = {"name": dec["name"], "params": dec["params"]}
    if "code" in dec:
        out["decoder"]["code"] = dec["code"]
    if spec.get("timed"):
        out["batch_size"] = spec["batch_size"]
    return out


def run_spec(session: Session, model_id: dict, plan: RunPlan | None,
             prompts: list[Prompt]) -> RunSpec:
    """The spec of one run (``plan`` None: the human row)."""
    s = session.suite
    if plan is None:
        decoder = {"name": "reference", "label": "reference", "params": {}, "defaults": {},
                   "source": "builtin"}
    else:
        decoder = {"name": plan.decoder.name, "label": plan.decoder.label,
                   "params": plan.params, "defaults": plan.defaults,
                   "source": DECODERS.source(plan.decoder.name),
                   "code": DECODERS.code(plan.decoder.name)}
        if plan.seed_free:  # not in the run key: it follows from the decoder and its params
            decoder["seed_free"] = True
        model_id = {**model_id, "code": model_code(plan.model, session.load_model(plan.model))}
    return {
        "suite": {"name": s.name, "version": s.version},
        "prompts": {"hash": prompts_hash(prompts), "n": len(prompts),
                    "samples_per_prompt": s.samples_per_prompt},
        "model": model_id, "decoder": decoder, "seed": 0 if plan is None else plan.seed,
        "max_new_tokens": s.max_new_tokens, "batch_size": 0 if plan is None else plan.batch_size,
        "timed": session.timed and plan is not None,
        "dtype": session.dtype, "device_type": session.device.split(":")[0],
        "tmbench": __version__,
    }


def model_code(name: str, model: Any) -> dict[str, Any]:
    """The code identity of a model's implementation (its class) and, for a registered or
    plugin model, of the function that loads it (which may build the model its own way)."""
    code = {"class": code_identity(type(model))}
    if name in MODELS:
        code["loader"] = MODELS.code(name)
    return code


def decode_info(session: Session, plan: RunPlan, gen: Generated) -> DecodeInfo:
    """What metrics are told about decoding (and what the record keeps of it)."""
    return {"params": plan.params, "decoder": plan.decoder.name, "seed": plan.seed,
            "max_new_tokens": session.suite.max_new_tokens,
            "timing": {"batches": gen.batches, "memory_backoff": gen.memory_backoff,
                       "fingerprint": session.env["fingerprint"],
                       "peak_memory": gen.peak_memory}}


def build_record(session: Session, spec: RunSpec, key: str, gen: Generated, scored: Scored,
                 info: DecodeInfo, started: float | None = None) -> RunRecord:
    """The record of a generated and scored run; ``started`` (``time.perf_counter()`` when the
    run began in this process) gives ``timings["wall_s"]``, the run's wall time up to now."""
    timings = {"generation_s": sum(b["wall_s"] for b in gen.batches),
               "scoring_s": sum(m.get("scoring_s", 0.0) for m in scored.metric_runs.values()),
               "load_s": sum(m.get("load_s", 0.0) for m in scored.metric_runs.values()),
               "batches": gen.batches, "memory_backoff": gen.memory_backoff,
               "peak_memory": gen.peak_memory}
    if started is not None:
        timings["wall_s"] = time.perf_counter() - started
    rec: RunRecord = {
        "schema_version": SCHEMA_VERSION, "key": key, "spec": spec,
        "row": {"model": spec["model"]["name"], "decoder": spec["decoder"]["label"]},
        "protocol": protocol(session.suite), "environment": session.env,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "timings": timings, "metrics": scored.metrics, "metric_runs": scored.metric_runs,
        "skipped_metrics": {v["name"]: v["reason"] for v in scored.metric_runs.values()
                            if v["status"] == "skipped"},
        "notes": scored.notes, "judges": {**gen.judges, **scored.judges}, "decode_info": info,
        "samples": [asdict(s) for s in gen.samples],
    }
    rec["environment"] = {**session.env, "plugins": plugins(rec)}
    return rec


def protocol(suite: Suite) -> dict:
    """DESIGN section 8: the choices a record must name to be comparable."""
    ds = suite.dataset
    return {
        "prompts": {"source": ds.get("source", "bbc"), "split": ds.get("split"),
                    "length": ds["prompt_len"], "unit": ds.get("prompt_unit", "word"),
                    "per_article": ds.get("per_article", 1),
                    "selection": "first n_prompts documents in content-hash order long enough "
                                 "for prompt + half the reference; article body after the "
                                 "headline (several paragraph starts per article when "
                                 "per_article > 1)"},
        "continuation": {"max_new_tokens": suite.max_new_tokens,
                         "eos": "generation stops at EOS; EOS is kept in token_ids, not in text"},
        "rng": "one torch.Generator per prompt, seeded with seed * 1000003 + prompt position; "
               "sampling decoders share these streams (common random numbers)",
        "context": "prompt + max_new_tokens (+ the maturation tail) must fit every model's "
                   "context; checked at plan time, no sliding window",
    }
