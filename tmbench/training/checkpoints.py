"""The training checkpoint ``out/ckpt``: model (or, with an adapter, only its trainable
tensors), optimizer state, step and config, written through :mod:`tmbench.checkpoint` (atomic,
no pickles) and swapped in whole. Resuming accepts one config change: the total of steps."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tmbench import checkpoint
from tmbench.training.config import TrainConfig, jsonable


def rescheduled(out: Path) -> list[dict]:
    """The changes of the step total recorded in ``out``'s checkpoint (none without one)."""
    prev = out / "ckpt" / "state.json"
    return checkpoint.read_json(prev).get("rescheduled", []) if prev.exists() else []


def save(model, optimizer, step: int, cfg: TrainConfig, out: Path) -> None:
    """Write ``out/ckpt`` after ``step`` optimizer steps (built beside it, then swapped in)."""
    from tmbench.models.shipped import save_model_dir

    tmp = out / ".ckpt.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.adapter is not None:  # the frozen base is rebuilt from its file on resume
        from tmbench.models.delta import trainable_state

        (tmp / "model").mkdir(parents=True)
        checkpoint.save_tensors({k: v.contiguous() for k, v in trainable_state(model).items()},
                                tmp / "model" / "model.safetensors")
    else:
        save_model_dir(model, tmp / "model")
    tensors, rest = checkpoint.optimizer_to_tensors(optimizer)
    checkpoint.save_tensors(tensors, tmp / "optimizer.safetensors")
    checkpoint.write_json({"step": step, "optimizer": rest, "config": jsonable(cfg),
                           "rng": "every draw of step s comes from a generator seeded by (seed, s)",
                           "rescheduled": rescheduled(out)}, tmp / "state.json")
    checkpoint.replace_dir(tmp, out / "ckpt")


def resume(model, optimizer, out: Path, cfg: TrainConfig) -> int:
    """Load ``out``'s checkpoint into ``model`` and ``optimizer``; the step to continue from
    (0 without a checkpoint)."""
    ck = out / "ckpt"
    if not ck.exists() and (out / ".ckpt.old").exists():  # crashed between the two renames
        ck = out / ".ckpt.old"
    if not ck.exists():
        return 0
    state = checkpoint.read_json(ck / "state.json")
    old, new = state["config"], jsonable(cfg)
    # the one change a resume accepts: the total of optimizer steps (the cosine schedule is
    # re-planned from the checkpoint's step on, and the change is logged and recorded)
    same_but_steps = ({**old, "optim": {**old["optim"], "steps": None}}
                      == {**new, "optim": {**new["optim"], "steps": None}})
    if old != new and not same_but_steps:
        diff = sorted(k for k in old if old[k] != new.get(k))
        raise ValueError(f"cannot resume {out}: its checkpoint was made with another config "
                         f"(differs in {', '.join(diff)}); use a new --out or the same settings "
                         "(only --steps may change on resume)")
    if old != new:
        note = {"at_step": int(state["step"]), "from_steps": old["optim"]["steps"],
                "to_steps": new["optim"]["steps"]}
        resched = state.get("rescheduled", []) + [note]
        checkpoint.write_json({**state, "config": new, "rescheduled": resched}, ck / "state.json")
    sd = checkpoint.load_tensors(ck / "model" / "model.safetensors")
    if cfg.adapter is not None:  # only the trainable tensors were saved
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in sd.items():
                params[k].copy_(v)
    else:
        model.load_state_dict(sd)
    checkpoint.optimizer_from_tensors(
        optimizer, checkpoint.load_tensors(ck / "optimizer.safetensors"), state["optimizer"])
    return int(state["step"])
