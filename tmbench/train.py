"""Training for both model kinds: TM (DESIGN 3.3) and its AR twin (cross-entropy).

Both kinds share the data pipeline, optimizer (AdamW, linear warmup + cosine), seed and
budget, so a TM model and an AR model trained from one config are a fair pair. Every random
draw of step ``s`` (the batch, K, alpha_max, the embryo noise, the guidance dropout) comes from
a generator seeded with (seed, s): the data position *is* the step, and a run resumed from its
last checkpoint (weights, optimizer, step) equals an uninterrupted one bit for bit.

    tmbench train tiny --kind ar --out runs/ar-tiny
    tmbench train tiny --kind tm --init-from runs/ar-tiny/final --out runs/tm-tiny
    python -m tmbench.train test --out /tmp/t --steps 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from tmbench import checkpoint
from tmbench.distributed import barrier, dist_info, init_distributed, mean_over_ranks
from tmbench.faults import fault_point
from tmbench.training import checkpoints
from tmbench.training.build import build_for_training
from tmbench.training.config import TrainConfig, jsonable, load_config
from tmbench.training.data import TokenData, step_generator
from tmbench.training.evaluate import evaluate
from tmbench.training.objective import Objective
from tmbench.training.optim import configure_optimizer, lr_at


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, device: str = "cpu",
          stop_at: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train to ``cfg.optim.steps`` (or stop after step ``stop_at``, as if interrupted);
    writes ``out/ckpt`` every ``ckpt_every`` steps, ``out/final`` at the end, ``out/log.jsonl``.
    Returns the last validation numbers."""
    out = Path(out)
    device = init_distributed(device)  # no-op unless launched by torchrun
    rank, world = dist_info()
    _check_out(cfg, out, resume, world)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = _build(cfg, out, resume, rank)
    model.to(device)
    data = TokenData(cfg.data, tok)
    optimizer = configure_optimizer(model, cfg.optim)
    step = checkpoints.resume(model, optimizer, out, cfg) if resume else 0
    objective = _objective(model, cfg, world)
    log = _open_log(cfg, out, step, rank)
    step, last_eval = _run_steps(cfg, out, model, objective, optimizer, data, step, log,
                                 device=device, stop_at=stop_at, progress=progress)
    if log is not None:
        log.close()
    barrier()
    if rank != 0:
        return {}
    return _finish(cfg, out, model, step, last_eval)


def _check_out(cfg: TrainConfig, out: Path, resume: bool, world: int) -> None:
    """Refuse a run that cannot start: a global batch the ``world`` processes cannot split
    evenly, or an ``out`` that holds a run we were not asked to resume."""
    if cfg.optim.batch_size % world:
        raise ValueError(f"optim.batch_size {cfg.optim.batch_size} must be divisible by the number "
                         f"of processes ({world}); the global batch is split evenly across them")
    if out.exists() and (out / "ckpt").exists() and not resume:
        raise ValueError(f"{out} already holds a training run; pass --resume to continue it or "
                         "choose another --out")


def _build(cfg: TrainConfig, out: Path, resume: bool, rank: int):
    """The model to train (with the config's adapter applied) and its tokenizer; rank 0 keeps a
    tokenizer built for this run in ``out/tokenizer.json``."""
    from tmbench.data.tokenizers import BPETokenizer

    tok = None
    # a resumed run reuses the tokenizer it started with rather than building one again
    if resume and (out / "tokenizer.json").exists() and not cfg.init_from:
        tok = BPETokenizer.from_file(out / "tokenizer.json", cfg.data.tokenizer.get("kind", "bpe"))
    model, tok = build_for_training(cfg, tok)
    if cfg.adapter is not None:
        from tmbench.models.delta import apply_adapter

        apply_adapter(model, cfg.adapter)
    if not cfg.init_from and isinstance(tok, BPETokenizer) and rank == 0:
        tok.save(out / "tokenizer.json")
    return model, tok


def _objective(model, cfg: TrainConfig, world: int):
    """The training objective of ``model``, wrapped in DDP when ``world`` processes train."""
    objective = Objective(model, cfg)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        objective = DDP(objective)  # averages gradients across ranks during backward
    return objective


def _open_log(cfg: TrainConfig, out: Path, step: int, rank: int) -> TextIO | None:
    """``out/log.jsonl`` open for appending, cut back to the lines of steps up to ``step``, and
    the config written to ``out/config.json``; on rank 0 only (None elsewhere)."""
    if rank != 0:
        return None
    log_path = out / "log.jsonl"
    if log_path.exists():  # drop lines of steps after the checkpoint we resume from
        keep = [l for l in log_path.read_text().splitlines()
                if json.loads(l).get("step", 0) <= step]
        checkpoint.write_text("".join(k + "\n" for k in keep), log_path)
    checkpoint.write_json(jsonable(cfg), out / "config.json")
    return open(log_path, "a")


def _emit(log: TextIO | None, rec: dict[str, Any]) -> None:
    """Append ``rec`` to the log as one JSON line (nothing without a log: ranks other than 0)."""
    if log is not None:
        log.write(json.dumps(rec) + "\n")
        log.flush()


def _autocast_dtype(cfg: TrainConfig, device: str) -> torch.dtype | None:
    """The dtype to train under autocast on ``device``, None for no autocast."""
    amp = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.autocast or "")
    if amp is None and torch.device(device).type == "cuda":
        amp = torch.bfloat16  # GPU training always ran under bf16 autocast
    return amp


def _run_steps(cfg: TrainConfig, out: Path, model, objective, optimizer, data: TokenData,
               step: int, log: TextIO | None, *, device: str, stop_at: int | None,
               progress: bool) -> tuple[int, dict[str, Any]]:
    """Optimizer steps from ``step`` until ``optim.steps`` (or ``stop_at``), logging, evaluating
    and checkpointing on the way. Returns the step reached and the last validation numbers."""
    from tqdm import tqdm

    o = cfg.optim
    rank, world = dist_info()
    per_rank = o.batch_size // world
    rows = slice(rank * per_rank, (rank + 1) * per_rank)  # this rank's share of each batch
    amp = _autocast_dtype(cfg, device)
    last_eval: dict[str, Any] = {}
    bar = tqdm(total=o.steps, initial=step, disable=not progress or rank != 0, mininterval=1.0,
               dynamic_ncols=True, file=sys.stderr)
    t0, tokens = time.time(), 0
    while step < o.steps and (stop_at is None or step < stop_at):
        lr = lr_at(step, o)
        for g in optimizer.param_groups:
            g["lr"] = lr
        agg, n = _train_step(cfg, model, objective, optimizer, data, step, rows, device, amp)
        step, tokens = step + 1, tokens + n
        tps = tokens / max(1e-9, time.time() - t0)
        bar.update(1)
        bar.set_postfix(loss=f"{agg['loss']:.3f}", tok_s=f"{tps:,.0f}")
        if step % cfg.log_every == 0 or step == o.steps:
            _emit(log, {"step": step, "lr": lr, "tokens_per_s": round(tps, 1),
                        **{k: round(v, 5) for k, v in agg.items()}})
        if (step % cfg.eval_every == 0 or step == o.steps) and rank == 0:
            last_eval = _validate(cfg, model, data, step, log, bar)
        if (step % cfg.ckpt_every == 0 or step == o.steps or step == stop_at) and rank == 0:
            checkpoints.save(model, optimizer, step, cfg, out)
            fault_point("checkpoint")
    bar.close()
    return step, last_eval


def _train_step(cfg: TrainConfig, model, objective, optimizer, data: TokenData, step: int,
                rows: slice, device: str, amp: torch.dtype | None) -> tuple[dict[str, float], int]:
    """Optimizer step ``step``: ``grad_accum`` micro-batches, each a [batch_size, block_size]
    global batch of which this rank trains on ``rows``, then clipping, the update and the TM
    renorm. Returns the loss parts averaged over micro-batches and ranks, and the tokens read."""
    o = cfg.optim
    agg: dict[str, float] = {}
    tokens = 0
    for micro in range(o.grad_accum):
        gen = step_generator(cfg.seed, step, micro)
        x = data.batch(gen, o.batch_size).to(device)
        with torch.autocast(torch.device(device).type, dtype=amp or torch.bfloat16,
                            enabled=amp is not None):
            r = objective(x, gen, rows)
        (r["loss"] / o.grad_accum).backward()
        for k, v in mean_over_ranks(r).items():
            agg[k] = agg.get(k, 0.0) + float(v) / o.grad_accum
        tokens += x.numel()
    if o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cfg.kind == "tm" and model.emb.requires_grad:
        model.renorm_()
    return agg, tokens


def _validate(cfg: TrainConfig, model, data: TokenData, step: int, log: TextIO | None,
              bar) -> dict[str, Any]:
    """Validation numbers after ``step`` (on ``final_eval_blocks`` at the last step), logged
    and shown under the progress bar."""
    n_blocks = cfg.final_eval_blocks if step == cfg.optim.steps else cfg.eval_blocks
    numbers = evaluate(model, data, cfg, n_blocks)
    _emit(log, {"step": step, "split": "valid", **numbers})
    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()),
              file=sys.stderr)
    return numbers


def _finish(cfg: TrainConfig, out: Path, model, step: int,
            last_eval: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's end of a run: ``out/final`` written once the last step is done (a resumed
    finished run keeps its own), or the finished run's numbers read back from it. Returns the
    last validation numbers."""
    if step >= cfg.optim.steps and (last_eval or not (out / "final").exists()):
        _save_final(cfg, out, model, step, last_eval)
    elif (out / "final").exists():  # resumed a finished run: report its numbers
        last_eval = {k: v for k, v in checkpoint.read_json(out / "final" / "config.json")
                     .get("trained", {}).items() if k.startswith("val_")}
    return last_eval


def _save_final(cfg: TrainConfig, out: Path, model, step: int, last_eval: dict[str, Any]) -> None:
    """Write the trained model to ``out/final`` (only the adapter's delta with an adapter), with
    what trained it and its last validation numbers."""
    from tmbench.models.shipped import save_model_dir

    o = cfg.optim
    trained = {"steps": step, "seed": cfg.seed, "init_from": cfg.init_from,
               "tokens": step * o.batch_size * o.grad_accum * cfg.data.block_size,
               "rescheduled": checkpoints.rescheduled(out), **last_eval}
    if cfg.adapter is not None:
        from tmbench.models.delta import save_delta

        save_delta(model, out / "final", base=cfg.init_from, adapter=cfg.adapter,
                   trained=trained, dtype=None)
    else:
        save_model_dir(model, out / "final", extra={"trained": trained})


# ---- command line -----------------------------------------------------------------------------
def add_train_cli(subparsers) -> argparse.ArgumentParser:
    t = subparsers.add_parser("train", help="train a TM or AR model from a config",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    from tmbench.training.config import CONFIG_DIR

    names = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
    t.add_argument("config", help=f"config name ({names}: tmbench/configs/) or path to a .yaml")
    t.add_argument("--out", help="run folder (default runs/train/<name>-<kind>)")
    t.add_argument("--kind", choices=["ar", "tm"], help="model kind (overrides the config)")
    t.add_argument("--init-from", help="model folder or smollm2-135m (overrides the config)")
    t.add_argument("--resume", action="store_true", help="continue from out/ckpt")
    t.add_argument("--steps", type=int, help="total optimizer steps (overrides optim.steps)")
    t.add_argument("--stop-at", type=int, help="stop after this step with a checkpoint")
    t.add_argument("--seed", type=int, help="overrides the config seed")
    t.add_argument("--name", help="model name (overrides the config)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set objective.negatives=256")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (bf16 autocast on GPU)")
    t.add_argument("--dtype", choices=["bfloat16", "float16", "float32"],
                   help="autocast dtype (overrides the config's autocast; float32 = off)")
    t.add_argument("--export", help="after training, also write the model here")
    t.add_argument("--export-dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(handler=run_train_cli)
    return t


def run_train_cli(args) -> int:
    from tmbench.models.shipped import load_model_dir, save_model_dir

    sets = list(args.set)
    for flag, key in ((args.kind, "kind"), (args.init_from, "init_from"),
                      (args.steps, "optim.steps"),
                      (args.seed, "seed"), (args.name, "name"),
                      (None if args.dtype is None else
                       ("null" if args.dtype == "float32" else args.dtype), "autocast")):
        if flag is not None:
            sets.append(f"{key}={flag}")
    cfg = load_config(args.config, sets)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/train/{cfg.name}-{cfg.kind}")
    res = train(cfg, out, resume=args.resume, device=args.device, stop_at=args.stop_at,
                progress=not args.no_progress)
    print(json.dumps({"out": str(out), **res}, indent=2))
    if args.export and (out / "final").exists() and cfg.adapter is not None:
        from tmbench.models.delta import export_delta

        export_delta(out / "final", args.export, getattr(torch, args.export_dtype))
        print(f"exported {cfg.name} to {args.export} ({args.export_dtype})")
    elif args.export and (out / "final").exists():
        m = load_model_dir(out / "final", name=cfg.name)
        trained = checkpoint.read_json(out / "final" / "config.json").get("trained", {})
        save_model_dir(m, args.export, dtype=getattr(torch, args.export_dtype),
                       extra={"trained": trained})
        print(f"exported {cfg.name} to {args.export} ({args.export_dtype})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tmbench.train")
    sub = p.add_subparsers(dest="cmd")
    add_train_cli(sub)
    args = p.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.handler(args)
    except ValueError as e:
        print(f"tmbench train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
