"""`tmbench lm-eval`: lm-evaluation-harness tasks on any tmbench model, TM included.

The model (any model spec: a registered name, hf:, gguf:, path:) is wrapped by
:class:`tmbench.lm_eval_adapter.TmbenchLM` and evaluated by ``lm_eval.simple_evaluate`` with
lm-eval's default seeds, so few-shot examples are those the ``lm_eval`` command picks. Tasks are
lm-eval task, group or tag names, or paths to local task YAML files (their folders are indexed
too, so ``include:`` of sibling files works). The output is lm-eval's own results JSON, with one
extra top-level key ``tmbench`` (the model spec, its identity and the adapter settings).
Everything that can be checked without loading the model (the spec, the task names) is checked
first.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from tmbench.versions import dist_version

YAML_SUFFIXES = (".yaml", ".yml")


def split_tasks(tasks: list[str] | str) -> list[str]:
    """'a,b' and ['a', 'b,c'] -> ['a', 'b', 'c'] (empty items dropped)."""
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    return [t.strip() for item in items for t in item.split(",") if t.strip()]


def resolve_tasks(tasks: list[str] | str):
    """Task names or YAML paths -> (task list for lm-eval, TaskManager). Unknown names and
    missing files fail here, before any model is loaded."""
    from lm_eval.tasks import TaskManager

    items = split_tasks(tasks)
    if not items:
        raise ValueError("no tasks given; pass --tasks NAME[,NAME...] (lm-eval task names or "
                         "paths to task .yaml files)")
    paths, names = [], []
    for t in items:
        if t.endswith(YAML_SUFFIXES) or Path(t).is_file():
            p = Path(t).expanduser()
            if not p.is_file():
                raise ValueError(f"task file {t} does not exist")
            paths.append(p.resolve())
        else:
            names.append(t)
    folders = sorted({str(p.parent) for p in paths})
    tm = TaskManager(include_path=folders or None, include_defaults=bool(names))
    known = set(tm.all_tasks)
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown lm-eval task {n!r}{hint} List them with `lm_eval ls "
                             "tasks`, or pass a path to a task .yaml file")
    return [str(p) for p in paths] + names, tm


def evaluate(model_spec: Any, tasks: list[str] | str, *, device: str = "cpu",
             dtype: str = "float32", limit: float | None = None, batch_size: int = 1,
             num_fewshot: int | None = None, max_length: int | None = None,
             bootstrap_iters: int = 100_000, log: Any = None) -> dict:
    """Run lm-eval ``tasks`` on the model ``model_spec``; returns lm-eval's results dict (with
    ``samples``) plus the ``tmbench`` key."""
    from lm_eval import simple_evaluate

    from tmbench.lm_eval_adapter import TmbenchLM
    from tmbench.model_specs import load_model_spec, validate_model_spec
    from tmbench.scoring import context_length

    log = log or (lambda *a: None)
    spec = validate_model_spec(model_spec)
    task_list, tm = resolve_tasks(tasks)
    log(f"loading model {spec} ...")
    model = load_model_spec(spec, device=device, dtype=dtype)
    ml = max_length or (min(context_length(model) - 1, 2048) if context_length(model) else None)
    # --batch-size N: windows of at most N full-length sequences per forward
    lm = TmbenchLM(model, max_length=max_length,
                   batch_tokens=max(1, batch_size) * ((ml or 2048) + 1))
    log(f"evaluating {', '.join(task_list)} ...")
    try:
        res = simple_evaluate(model=lm, tasks=task_list, task_manager=tm, limit=limit,
                              num_fewshot=num_fewshot, bootstrap_iters=bootstrap_iters,
                              log_samples=True, batch_size=batch_size, device=device)
    except (KeyError, FileNotFoundError, ConnectionError) as e:
        raise ValueError(f"lm-eval could not load the tasks {task_list}: "
                         f"{type(e).__name__}: {str(e)[:300]}") from None
    res["tmbench"] = {"model_spec": str(spec), "adapter": lm.identity(),
                      "tmbench": dist_version("tmbench"), "lm_eval": dist_version("lm_eval")}
    return res


def results_json(res: dict) -> str:
    """lm-eval's results JSON (as its ``--output_path`` writes it): without the per-sample
    logs, with ``task_hashes`` over them."""
    from lm_eval.utils import handle_non_serializable, hash_string

    out = {k: v for k, v in res.items() if k != "samples"}
    out["task_hashes"] = {
        task: hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"]
                                  for s in samples))
        for task, samples in (res.get("samples") or {}).items()}
    return json.dumps(out, indent=2, default=handle_non_serializable, ensure_ascii=False)


def write_results(res: dict, output: str | Path, log_samples: bool = False) -> list[Path]:
    """``output`` ending in .json is the results file; otherwise a folder that gets
    results.json (and samples_<model>_<task>.jsonl with ``log_samples``, the model spec made
    filesystem-safe by :func:`safe_name`, so models evaluated into one folder keep theirs)."""
    from lm_eval.utils import handle_non_serializable

    from tmbench.checkpoint import write_text

    output = Path(output)
    path = output if output.suffix == ".json" else output / "results.json"
    write_text(results_json(res) + "\n", path)
    written = [path]
    if log_samples:
        model = safe_name(str((res.get("tmbench") or {}).get("model_spec", "model")))
        for task, samples in (res.get("samples") or {}).items():
            p = path.parent / f"samples_{model}_{safe_name(task)}.jsonl"
            write_text("".join(json.dumps(s, default=handle_non_serializable,
                                          ensure_ascii=False) + "\n" for s in samples), p)
            written.append(p)
    return written


def safe_name(s: str, limit: int = 100) -> str:
    """A file-name part for a model spec or task: runs of characters other than letters,
    digits and ``._=,+-`` become ``__`` (``hf:org/m[dtype=bfloat16]`` ->
    ``hf__org__m__dtype=bfloat16``); longer than ``limit``, it is cut and ends in a hash of the
    whole string, so two specs never share a name."""
    import hashlib
    import re

    out = re.sub(r"[^A-Za-z0-9._=,+-]+", "__", s).strip("_.") or "model"
    if len(out) > limit:
        out = out[:limit - 9] + "-" + hashlib.sha256(s.encode()).hexdigest()[:8]
    return out



# ---- CLI ---------------------------------------------------------------------------------------
def _limit(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        x = -1.0
    if x <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number (N examples, or a fraction "
                                         f"< 1), got {v!r}")
    return int(x) if x >= 1 and x == int(x) else x


def add_lm_eval_cli(subparsers) -> argparse.ArgumentParser:
    from tmbench.argtypes import non_negative as _seed, positive as _positive

    e = subparsers.add_parser("lm-eval", help="run lm-evaluation-harness tasks on any model")
    e.add_argument("--model", required=True,
                   help="model spec: a name, hf:<hub name or folder>, gguf:<file>, path:<folder>")
    e.add_argument("--tasks", required=True, action="append",
                   help="lm-eval task names or task .yaml paths, comma-separated (repeatable)")
    e.add_argument("--limit", type=_limit, help="only the first N examples per task")
    e.add_argument("--batch-size", type=_positive, default=1,
                   help="sequences of full context length per forward (default 1)")
    e.add_argument("--num-fewshot", type=_seed, help="few-shot examples (default: the task's)")
    e.add_argument("--max-length", type=_positive, help="context window (default: model's - 1)")
    e.add_argument("--bootstrap-iters", type=_seed, default=100_000,
                   help="bootstrap iterations for standard errors (0 = none)")
    e.add_argument("--output", help="results file (.json) or folder for results.json")
    e.add_argument("--log-samples", action="store_true",
                   help="also write per-sample logs (samples_<model>_<task>.jsonl beside the "
                        "results)")
    e.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    e.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    e.add_argument("--json", action="store_true", help="print the results JSON")
    e.set_defaults(handler=run_lm_eval_cli)
    return e


def run_lm_eval_cli(args) -> int:
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {args.device!r} requested but CUDA is not available; "
                         "accepted: cpu")
    log = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    res = evaluate(args.model, args.tasks, device=args.device, dtype=args.dtype,
                   limit=args.limit, batch_size=args.batch_size, num_fewshot=args.num_fewshot,
                   max_length=args.max_length, bootstrap_iters=args.bootstrap_iters, log=log)
    written = write_results(res, args.output, args.log_samples) if args.output else []
    if args.json:
        print(results_json(res))
        return 0
    from lm_eval.utils import make_table

    print(f"model {res['tmbench']['model_spec']} "
          f"(content hash {res['tmbench']['adapter']['model'].get('content_hash')})")
    print(make_table(res))
    if res.get("groups"):
        print(make_table(res, "groups"))
    for p in written:
        print(f"wrote {p}")
    return 0
