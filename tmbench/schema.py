"""The schema of a run record (:class:`tmbench.types.RunRecord`), checked in one function.

:func:`record_problem` is what every reader of ``record.json`` goes through
(:func:`tmbench.results.read_record`): a record whose hash agrees can still be one whose samples
were emptied or deleted and the hash recomputed, or whose metric arrays were cut short, and such
a record must neither count as a complete run nor take a table down. It checks the fields and
their types, and that the counts agree with the spec: ``prompts.n`` x ``samples_per_prompt``
samples (one per prompt for the human row), each prompt index ``0 .. n - 1`` that many times,
every sample of the run's seed, no continuation longer than ``max_new_tokens``, and every
per-sample metric array (``per_sample``, ``meta["per_sample_*"]``) one value per sample.
Fields that records of this schema have always carried are required; fields added since
(code identities) are checked only where present, so older records still load.
"""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)
SAMPLE_FIELDS = {"prompt_index": int, "seed": int, "prompt_text": str, "prompt_ids": list,
                 "text": str, "token_ids": list, "reference_text": str, "info": dict}
TOP_FIELDS = {"key": str, "spec": dict, "row": dict, "protocol": dict, "environment": dict,
              "created": str, "timings": dict, "metrics": dict, "metric_runs": dict,
              "skipped_metrics": dict, "notes": list, "judges": dict, "decode_info": dict,
              "samples": list}


class Problem(Exception):
    """What is wrong with a record, in one line."""


def record_problem(rec: Any) -> str | None:
    """None for a well-formed record, else one line saying what is wrong (the first problem)."""
    try:
        _check(rec)
    except Problem as e:
        return str(e)
    return None


def _need(obj: dict, name: str, kind: Any, where: str, optional: bool = False) -> Any:
    if name not in obj:
        if optional:
            return None
        raise Problem(f"{where}{name} is missing")
    v = obj[name]
    bad = not isinstance(v, kind) or (kind is int and isinstance(v, bool)) or (
        kind == NUMBER and isinstance(v, bool))
    if bad:
        want = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise Problem(f"{where}{name} must be {want}, got {type(v).__name__}")
    return v


def _ints(values: list, where: str) -> None:
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in values):
        raise Problem(f"{where} must hold integers only")


def _check(rec: Any) -> None:
    if not isinstance(rec, dict):
        raise Problem(f"a record is a JSON object, got {type(rec).__name__}")
    for name, kind in TOP_FIELDS.items():
        _need(rec, name, kind, "")
    spec = _check_spec(rec["spec"])
    human = spec["model"].get("kind") == "human" or spec["model"].get("name") == "human"
    _check_samples(rec["samples"], spec, human)
    for name in ("model", "decoder"):
        _need(rec["row"], name, str, "row.")
    _need(_need(rec["environment"], "fingerprint", dict, "environment."), "id", str,
          "environment.fingerprint.")
    for name in ("generation_s", "scoring_s"):
        _need(rec["timings"], name, NUMBER, "timings.")
    for key, run in rec["metric_runs"].items():
        _check_metric_run(key, run)
    n = len(rec["samples"])
    for key, m in rec["metrics"].items():
        _check_metric(key, m, n)


def _check_spec(spec: dict) -> dict:
    w = "spec."
    suite = _need(spec, "suite", dict, w)
    _need(suite, "name", str, "spec.suite.")
    _need(suite, "version", int, "spec.suite.")
    prompts = _need(spec, "prompts", dict, w)
    _need(prompts, "hash", str, "spec.prompts.")
    if _need(prompts, "n", int, "spec.prompts.") < 1:
        raise Problem(f"spec.prompts.n must be at least 1, got {prompts['n']}")
    if _need(prompts, "samples_per_prompt", int, "spec.prompts.") < 1:
        raise Problem(f"spec.prompts.samples_per_prompt must be at least 1, got "
                      f"{prompts['samples_per_prompt']}")
    model = _need(spec, "model", dict, w)
    _need(model, "name", str, "spec.model.")
    _need(model, "code", dict, "spec.model.", optional=True)
    dec = _need(spec, "decoder", dict, w)
    for name in ("name", "label"):
        _need(dec, name, str, "spec.decoder.")
    _need(dec, "params", dict, "spec.decoder.")
    _need(dec, "defaults", dict, "spec.decoder.", optional=True)
    _need(dec, "code", dict, "spec.decoder.", optional=True)
    _need(dec, "seed_free", bool, "spec.decoder.", optional=True)
    for name in ("seed", "max_new_tokens", "batch_size"):
        _need(spec, name, int, w)
    for name in ("dtype", "device_type"):
        _need(spec, name, str, w)
    _need(spec, "timed", bool, w, optional=True)
    _need(spec, "tmbench", str, w, optional=True)
    return spec


def _check_samples(samples: list, spec: dict, human: bool) -> None:
    n, per = spec["prompts"]["n"], 1 if human else spec["prompts"]["samples_per_prompt"]
    if len(samples) != n * per:
        raise Problem(f"samples: {len(samples)} stored, expected {n * per} (spec.prompts.n = {n} "
                      f"prompts x {per} per prompt)")
    counts: dict[int, int] = {}
    for i, s in enumerate(samples):
        if not isinstance(s, dict):
            raise Problem(f"samples[{i}] must be an object, got {type(s).__name__}")
        for name, kind in SAMPLE_FIELDS.items():
            _need(s, name, kind, f"samples[{i}].")
        _ints(s["prompt_ids"], f"samples[{i}].prompt_ids")
        _ints(s["token_ids"], f"samples[{i}].token_ids")
        if s["seed"] != spec["seed"]:
            raise Problem(f"samples[{i}].seed is {s['seed']}, the run's seed is {spec['seed']}")
        if not human and len(s["token_ids"]) > spec["max_new_tokens"]:
            raise Problem(f"samples[{i}] has {len(s['token_ids'])} new tokens, more than "
                          f"max_new_tokens {spec['max_new_tokens']}")
        counts[s["prompt_index"]] = counts.get(s["prompt_index"], 0) + 1
    wrong = sorted(i for i in set(counts) | set(range(n)) if counts.get(i, 0) != per)
    if wrong:
        i = wrong[0]
        raise Problem(f"samples: prompt index {i} has {counts.get(i, 0)} samples, expected {per} "
                      f"(indices 0..{n - 1}, {per} each)")


def _check_metric_run(key: str, run: Any) -> None:
    w = f"metric_runs[{key!r}]."
    if not isinstance(run, dict):
        raise Problem(f"metric_runs[{key!r}] must be an object, got {type(run).__name__}")
    _need(run, "name", str, w)
    _need(run, "params", dict, w)
    if _need(run, "status", str, w) not in ("ok", "skipped"):
        raise Problem(f"{w}status must be 'ok' or 'skipped', got {run['status']!r}")
    if run["status"] == "skipped":
        _need(run, "reason", str, w)
    _need(run, "code", dict, w, optional=True)


def _check_metric(key: str, m: Any, n: int) -> None:
    w = f"metrics[{key!r}]."
    if not isinstance(m, dict):
        raise Problem(f"metrics[{key!r}] must be an object, got {type(m).__name__}")
    if "value" not in m:
        raise Problem(f"{w}value is missing")
    if m["value"] is not None:
        _need(m, "value", NUMBER, w)
    _need(m, "metric", str, w)
    _need(m, "metric_id", str, w, optional=True)
    if m.get("higher_is_better") is not None:
        _need(m, "higher_is_better", bool, w)
    meta = m.get("meta") or {}
    if not isinstance(meta, dict):
        raise Problem(f"{w}meta must be an object, got {type(meta).__name__}")
    arrays = {"per_sample": m.get("per_sample")}
    arrays |= {f"meta.{k}": v for k, v in meta.items() if k.startswith("per_sample_")}
    for name, values in arrays.items():
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != n:
            got = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
            raise Problem(f"{w}{name} has {got}, expected one per sample ({n})")
        if not all(v is None or isinstance(v, NUMBER) and not isinstance(v, bool) for v in values):
            raise Problem(f"{w}{name} must hold numbers (or null) only")
