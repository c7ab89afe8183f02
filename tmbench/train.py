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
import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tmbench import checkpoint
from tmbench.distributed import dist_info, init_distributed
from tmbench.faults import fault_point
from tmbench.tm.model import MaturationModel, tail_mask

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


# ---- configuration ------------------------------------------------------------------------
@dataclass
class DataConfig:
    corpus: str = "bbc"  # bbc | fineweb (online only)
    block_size: int = 128  # tokens per training block
    tokenizer: dict = field(default_factory=lambda: {"kind": "bbc-bpe", "vocab_size": 8192})
    max_docs: int | None = None  # use only the first N documents of each split (tests)
    fineweb_docs: int = 20000  # documents streamed from FineWeb (train; valid takes 1/20 more)


@dataclass
class ObjectiveConfig:  # TM only (DESIGN 3.3)
    k_max: int = 16  # K drawn per batch from 1..k_max
    alpha_max_range: tuple = (0.25, 1.0)  # alpha_max jittered per batch
    sigma_embryo: float = 0.1  # embryo noise norm ~ sigma_embryo * R
    w_mse: float = 1.0
    infonce_weight: float = 1.0  # lambda
    negatives: Any = "all"  # "all" or a number N of shared uniform negatives
    stop_grad: bool = True  # MSE target sg(e): embeddings learn through InfoNCE
    p_uncond: float = 0.1  # guidance dropout: the tail sees only the tail
    weighting: str = "uniform"  # uniform | one_minus_alpha (the paper's)
    eval_alpha_max: float = 0.75  # alpha_max of the (deterministic) validation objective


@dataclass
class OptimConfig:
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 50
    steps: int = 600
    batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    name: str = "run"
    kind: str = "ar"  # ar | tm
    seed: int = 0
    init_from: str | None = None  # model folder, or smollm2-135m
    data: DataConfig = field(default_factory=DataConfig)
    backbone: dict = field(default_factory=lambda: {"kind": "gpt", "n_layer": 4, "n_head": 4,
                                                    "n_embd": 256, "block_size": 128})
    tm: dict = field(default_factory=dict)  # TMConfig fields (readout, film, radius, ...)
    # LoRA adapters (peft) over a frozen pretrained backbone: {kind: lora, r, lora_alpha,
    # target_modules, seed}; with it, the result is saved as a small delta over its base
    adapter: dict | None = None
    autocast: str | None = None  # bfloat16: autocast on the training device (CPU or CUDA)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval_every: int = 100
    eval_blocks: int = 64  # validation blocks during training
    final_eval_blocks: int | None = None  # validation blocks at the end (None = all)
    ckpt_every: int = 100
    log_every: int = 10


def _build(cls, d: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    bad = set(d) - set(known)
    if bad:
        raise ValueError(f"unknown field(s) {sorted(bad)} in {where}; accepted: {sorted(known)}")
    kw = {}
    for k, v in d.items():
        sub = {DataConfig: "data", ObjectiveConfig: "objective", OptimConfig: "optim"}
        typ = next((c for c, n in sub.items() if n == k and cls is TrainConfig), None)
        kw[k] = _build(typ, v or {}, f"{where}.{k}") if typ else v
    return cls(**kw)


def config_from_dict(d: dict) -> TrainConfig:
    cfg = _build(TrainConfig, d, "config")
    if cfg.kind not in ("ar", "tm"):
        raise ValueError(f"kind must be 'ar' or 'tm', got {cfg.kind!r}")
    neg = cfg.objective.negatives
    if neg != "all" and not (isinstance(neg, int) and neg > 0):
        raise ValueError(f"objective.negatives must be 'all' or a positive integer, got {neg!r}")
    if cfg.autocast not in (None, "bfloat16", "float16"):
        raise ValueError(f"autocast must be bfloat16, float16 or null, got {cfg.autocast!r}")
    if cfg.adapter is not None:
        from tmbench.models.delta import BASES, check_adapter

        check_adapter(cfg.adapter)
        if cfg.init_from not in BASES:
            raise ValueError(f"an adapter needs init_from one of {', '.join(BASES)} (the base "
                             f"the delta applies to), got {cfg.init_from!r}")
    if cfg.objective.weighting not in ("uniform", "one_minus_alpha"):
        raise ValueError("objective.weighting must be uniform or one_minus_alpha, "
                         f"got {cfg.objective.weighting!r}")
    return cfg


def load_config(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    """A config by name (tmbench/configs/<name>.yaml) or path, with ``a.b=value`` overrides."""
    import yaml

    p = Path(name_or_path)
    if not p.exists():
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"unknown training config {name_or_path!r}; known: {', '.join(known)} "
                         "(or a path to a .yaml file)")
    d = yaml.safe_load(p.read_text()) or {}
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"override must look like section.key=value, got {o!r}")
        key, val = o.split("=", 1)
        node = d
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(val)
    return config_from_dict(d)


# ---- data -----------------------------------------------------------------------------------
class TokenData:
    """Train and valid token streams (documents joined by EOS) and the blocks drawn from them."""

    def __init__(self, cfg: DataConfig, tokenizer):
        texts = self._texts(cfg)
        eos = tokenizer.eos_token_id
        self.streams = {}
        for split, docs in texts.items():
            enc = (tokenizer.encode_batch(docs) if hasattr(tokenizer, "encode_batch")
                   else [tokenizer.encode(t) for t in docs])
            ids = [i for e in enc for i in (*e, eos)]
            self.streams[split] = torch.tensor(ids, dtype=torch.long)
        self.T = cfg.block_size

    @staticmethod
    def _texts(cfg: DataConfig) -> dict[str, list[str]]:
        if cfg.corpus == "bbc":
            from tmbench.data.bbc import load_bbc

            train = [a.text for a in load_bbc("train")][: cfg.max_docs]
            valid = [a.text for a in load_bbc("valid")][: cfg.max_docs]
            return {"train": train, "valid": valid}
        if cfg.corpus == "fineweb":
            try:
                from datasets import load_dataset

                ds = load_dataset("HuggingFaceFW/fineweb", name="sample-10BT", split="train",
                                  streaming=True)
                docs = [r["text"] for _, r in zip(range(cfg.fineweb_docs * 21 // 20), ds)]
            except Exception as e:
                raise ValueError(f"corpus 'fineweb' streams from the Hugging Face hub, which is "
                                 f"not reachable here ({type(e).__name__}); use corpus 'bbc'") from None
            n = cfg.fineweb_docs
            return {"train": docs[:n], "valid": docs[n:]}
        raise ValueError(f"unknown corpus {cfg.corpus!r}; accepted: bbc, fineweb")

    def batch(self, gen: torch.Generator, B: int) -> torch.Tensor:
        """(B, T) random blocks of the train stream."""
        s = self.streams["train"]
        starts = torch.randint(0, len(s) - self.T, (B,), generator=gen)
        return torch.stack([s[i:i + self.T] for i in starts.tolist()])

    def valid_blocks(self, n: int | None = None) -> torch.Tensor:
        """(N, T) consecutive non-overlapping blocks of the valid stream (the first n)."""
        s = self.streams["valid"]
        N = len(s) // self.T
        return s[: N * self.T].view(N, self.T)[:n]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


# ---- objectives ------------------------------------------------------------------------------
def ar_loss(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    logits = model.logits(x[:, :-1])  # (B, T-1, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
    return {"loss": loss}


def tm_loss(model: MaturationModel, x: torch.Tensor, obj: ObjectiveConfig, gen: torch.Generator,
            K: int | None = None, alpha_max: float | None = None, p_uncond: float | None = None,
            rows: slice | None = None):
    """DESIGN 3.3 on a block x (B, T): the last K positions form a corrupted tail.
    Returns the loss and its parts; ``tail_*`` are over tail slots only. ``rows``: draw every
    random quantity for the whole batch, then keep these rows (a data-parallel rank's share),
    so that any number of ranks sees exactly the draws of a single process."""
    B, T = x.shape
    dev, R, d = x.device, model.radius, model.d
    K = K or int(torch.randint(1, min(obj.k_max, T - 1) + 1, (1,), generator=gen))
    lo, hi = obj.alpha_max_range
    a_max = alpha_max if alpha_max is not None else lo + (hi - lo) * float(torch.rand(1, generator=gen))
    p_u = obj.p_uncond if p_uncond is None else p_uncond
    noise = torch.randn(B, K, d, generator=gen) * (obj.sigma_embryo * R / math.sqrt(d))
    uncond = torch.rand(B, generator=gen) < p_u  # (B,) guidance dropout
    if rows is not None:
        x, noise, uncond = x[rows], noise[rows], uncond[rows]
        B = x.shape[0]

    e = model.emb[x]  # (B, T, d)
    alpha = torch.ones(B, T, device=dev)
    alpha[:, T - K:] = model.alpha_profile(K, a_max)  # front .. newest
    tail = torch.zeros(B, T, dtype=torch.bool, device=dev)
    tail[:, T - K:] = True
    at = alpha[:, T - K:, None]
    z = torch.cat([e[:, : T - K], at * e[:, T - K:] + (1 - at) * noise.to(dev, e.dtype)], 1)
    mask = None
    if bool(uncond.any()):
        mask = tail_mask(torch.ones(B, T, device=dev), T, tail_start=T - K, tail_only=uncond.to(dev))
    kk = torch.full((B,), K, dtype=torch.long, device=dev)
    pos = torch.arange(T, device=dev)[None].expand(B, T)
    out, _ = model(z, alpha, tail, kk, pos, mask)  # (B, T, d)

    if model.config.readout == "next":  # slot t read at t - 1; every position
        pred, tgt, a_t, is_tail = out[:, :-1], x[:, 1:], alpha[:, 1:], tail[:, 1:]
    else:  # self: slot t read at t; tail slots only
        pred, tgt, a_t, is_tail = out[:, T - K:], x[:, T - K:], alpha[:, T - K:], tail[:, T - K:]
    pred = pred.float()
    target = model.emb[tgt].float()  # (B, P, d)
    if obj.stop_grad:
        target = target.detach()
    mse = ((pred - target) ** 2).sum(-1) / R**2  # (B, P)
    if obj.negatives == "all":  # InfoNCE over the vocabulary = CE of the induced distribution
        logits = model.induced_logits(pred)  # (B, P, V)
        nce = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), reduction="none").view_as(mse)
    else:  # N uniform negatives shared by the batch, the positive masked out
        neg = torch.randint(0, model.vocab_size, (int(obj.negatives),), generator=gen).to(dev)
        tied = model.config.geometry == "tied"  # inner products instead of cosines
        pn = pred if tied else F.normalize(pred, dim=-1)
        en = model.emb.float() if tied else F.normalize(model.emb.float(), dim=-1)
        pos_l = model.logit_scale * (pn * en[tgt]).sum(-1, keepdim=True)  # (B, P, 1)
        neg_l = model.logit_scale * pn @ en[neg].T  # (B, P, N)
        neg_l = neg_l.masked_fill(neg[None, None] == tgt[..., None], float("-inf"))
        nce = -torch.log_softmax(torch.cat([pos_l, neg_l], -1), -1)[..., 0]
    w = torch.ones_like(mse) if obj.weighting == "uniform" else (1 - a_t)
    per = obj.w_mse * mse + obj.infonce_weight * nce
    loss = (w * per).sum() / w.sum().clamp(min=1e-8)
    tw = is_tail.float()
    return {"loss": loss, "mse": mse.mean().detach(), "nce": nce.mean().detach(),
            "tail_nce": ((nce * tw).sum() / tw.sum()).detach(),
            "tail_mse": ((mse * tw).sum() / tw.sum()).detach(), "K": torch.tensor(K)}


# ---- models ------------------------------------------------------------------------------------
def _source(init_from: str):
    """(backbone, input embeddings (V, C), tokenizer, source model) of an ``init_from``."""
    if init_from == "smollm2-135m":
        from tmbench.backbones.hf_adapter import HFBackbone
        from tmbench.models.hf import load_smollm2

        hf = load_smollm2()
        bb = HFBackbone(hf.model)  # dequantised to float32 by load_smollm2
        return bb, bb.input_embeddings().detach().clone(), hf.tokenizer, None
    from tmbench.models.shipped import load_model_dir

    src = load_model_dir(init_from)
    E = src.wte if src.kind == "ar" else src.emb
    return src.backbone, E.detach().clone(), src.tokenizer, src


def build_for_training(cfg: TrainConfig, tokenizer=None):
    """The model to train (and its tokenizer), from scratch or from ``init_from``."""
    from tmbench.data.tokenizers import load_tokenizer
    from tmbench.models.shipped import build_backbone, build_model

    if cfg.init_from:
        backbone, E, tok, src = _source(cfg.init_from)
        if src is not None and src.kind == "tm" and cfg.kind == "tm":
            src.name = cfg.name
            return src.train(), tok
        if src is not None and src.kind == "tm":
            raise ValueError("init_from a TM model works only for kind 'tm'")
        tm = dict(cfg.tm)
        tied = tm.get("geometry") == "tied"
        if tied and cfg.kind == "tm" and tm.get("radius") is None:
            tm["radius"] = round(float(E.norm(dim=-1).mean()), 4)  # embryo noise scale
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = build_model(cfg.kind, backbone, E.shape[0], tm, tok, cfg.name)
        with torch.no_grad():
            if cfg.kind == "ar":
                model.wte.copy_(E)
            elif tied:  # the AR parent's own embeddings, as they are (DESIGN 3.3, third round)
                model.emb.copy_(E)
            else:  # DESIGN 3.3 "init that worked"
                model.emb.copy_(E)
                model.renorm_()
                model.input_scale.fill_(float(E.norm(dim=-1).mean()) / model.radius)
        return model.train(), tok
    tok = tokenizer or load_tokenizer(cfg.data.tokenizer)
    with torch.random.fork_rng(devices=[]):  # initial weights from the config seed only
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.kind, build_backbone(cfg.backbone), tok.vocab_size, cfg.tm, tok,
                            cfg.name)
    return model.train(), tok


def configure_optimizer(model, opt: OptimConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices except the TM embedding (it lives on a sphere)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and name != "emb" else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opt.lr, betas=tuple(opt.betas))


def lr_at(step: int, opt: OptimConfig) -> float:
    """Linear warmup to lr, then cosine to min_lr at ``opt.steps``."""
    if step < opt.warmup:
        return opt.lr * (step + 1) / opt.warmup
    t = min(1.0, (step - opt.warmup) / max(1, opt.steps - opt.warmup))
    return opt.min_lr + 0.5 * (opt.lr - opt.min_lr) * (1 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate(model, data: TokenData, cfg: TrainConfig, n_blocks: int | None) -> dict[str, float]:
    """AR: validation CE and perplexity. TM: the induced distribution's CE and perplexity on
    clean history (DESIGN 3.5), plus the TM objective at K = k_max and eval_alpha_max."""
    was = model.training
    model.eval()
    blocks = data.valid_blocks(n_blocks).to(model.device)
    bs = cfg.optim.batch_size
    tot, n = 0.0, 0
    parts: dict[str, float] = {}
    for i in range(0, len(blocks), bs):
        x = blocks[i:i + bs]
        if model.kind == "ar":
            tot += float(ar_loss(model, x)["loss"]) * len(x)
        else:
            if model.config.readout == "next":
                lp = model.clean_logprobs(x)
            else:
                lp = torch.stack(model.token_logprobs(x.tolist()))
            tot += -float(lp.mean()) * len(x)
            o = cfg.objective
            r = tm_loss(model, x, o, step_generator(cfg.seed, i, 9), K=min(o.k_max, x.shape[1] - 1),
                        alpha_max=o.eval_alpha_max, p_uncond=0.0)
            for k in ("loss", "tail_nce", "tail_mse"):
                parts[f"val_tm_{k}"] = parts.get(f"val_tm_{k}", 0.0) + float(r[k]) * len(x)
        n += len(x)
    model.train(was)
    key = "val_loss" if model.kind == "ar" else "val_induced_ce"
    out = {key: tot / n, "val_ppl": math.exp(tot / n), "val_blocks": n}
    out.update({k: v / n for k, v in parts.items()})
    return out


# ---- data parallel ----------------------------------------------------------------------------
def _mean_over_ranks(r: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """Loss parts averaged over ranks, for logging (gradients are averaged by DDP)."""
    vals = torch.stack([v.detach().float().reshape(()) for v in r.values()])
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(vals)
        vals /= world
    return dict(zip(r.keys(), vals.tolist()))
class _Objective(torch.nn.Module):
    """The training loss as a module, so DistributedDataParallel can hook its forward. Every
    rank draws the whole global batch from the step's generator and keeps its own rows."""

    def __init__(self, model, cfg: "TrainConfig"):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x: torch.Tensor, gen: torch.Generator, rows: slice) -> dict[str, torch.Tensor]:
        if self.cfg.kind == "ar":
            return ar_loss(self.model, x[rows])
        return tm_loss(self.model, x, self.cfg.objective, gen, rows=rows)


# ---- the loop -----------------------------------------------------------------------------------
def _save(model, optimizer, step: int, cfg: TrainConfig, out: Path) -> None:
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
    prev = out / "ckpt" / "state.json"
    resched = checkpoint.read_json(prev).get("rescheduled", []) if prev.exists() else []
    checkpoint.write_json({"step": step, "optimizer": rest, "config": _jsonable(cfg),
                           "rng": "every draw of step s comes from a generator seeded by (seed, s)",
                           "rescheduled": resched}, tmp / "state.json")
    checkpoint.replace_dir(tmp, out / "ckpt")


def _jsonable(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=list))


def _resume(model, optimizer, out: Path, cfg: TrainConfig) -> int:
    ck = out / "ckpt"
    if not ck.exists() and (out / ".ckpt.old").exists():  # crashed between the two renames
        ck = out / ".ckpt.old"
    if not ck.exists():
        return 0
    state = checkpoint.read_json(ck / "state.json")
    old, new = state["config"], _jsonable(cfg)
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


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, device: str = "cpu",
          stop_at: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train to ``cfg.optim.steps`` (or stop after step ``stop_at``, as if interrupted);
    writes ``out/ckpt`` every ``ckpt_every`` steps, ``out/final`` at the end, ``out/log.jsonl``.
    Returns the last validation numbers."""
    from tqdm import tqdm

    from tmbench.data.tokenizers import BPETokenizer
    from tmbench.models.shipped import save_model_dir

    out = Path(out)
    device = init_distributed(device)  # no-op unless launched by torchrun
    rank, world = dist_info()
    if cfg.optim.batch_size % world:
        raise ValueError(f"optim.batch_size {cfg.optim.batch_size} must be divisible by the number "
                         f"of processes ({world}); the global batch is split evenly across them")
    if out.exists() and (out / "ckpt").exists() and not resume:
        raise ValueError(f"{out} already holds a training run; pass --resume to continue it or "
                         "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tok = None
    if resume and (out / "tokenizer.json").exists() and not cfg.init_from:
        tok = BPETokenizer.from_file(out / "tokenizer.json", cfg.data.tokenizer.get("kind", "bpe"))
    model, tok = build_for_training(cfg, tok)
    if cfg.adapter is not None:
        from tmbench.models.delta import apply_adapter

        apply_adapter(model, cfg.adapter)
    if not cfg.init_from and isinstance(tok, BPETokenizer) and rank == 0:
        tok.save(out / "tokenizer.json")
    model.to(device)
    data = TokenData(cfg.data, tok)
    optimizer = configure_optimizer(model, cfg.optim)
    step = _resume(model, optimizer, out, cfg) if resume else 0
    objective = _Objective(model, cfg)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        objective = DDP(objective)  # averages gradients across ranks during backward
    per_rank = cfg.optim.batch_size // world
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    log_path = out / "log.jsonl"
    if rank == 0:
        if log_path.exists():  # drop lines of steps after the checkpoint we resume from
            keep = [l for l in log_path.read_text().splitlines() if json.loads(l).get("step", 0) <= step]
            checkpoint.write_text("".join(k + "\n" for k in keep), log_path)
        checkpoint.write_json(_jsonable(cfg), out / "config.json")
    log = open(log_path, "a") if rank == 0 else None

    def emit(rec):
        if log is not None:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    o, B = cfg.optim, cfg.optim.batch_size
    dev_type = torch.device(device).type
    amp = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.autocast or "")
    if amp is None and dev_type == "cuda":
        amp = torch.bfloat16  # GPU training always ran under bf16 autocast
    last_eval: dict[str, Any] = {}
    bar = tqdm(total=o.steps, initial=step, disable=not progress or rank != 0, mininterval=1.0,
               dynamic_ncols=True, file=sys.stderr)
    t0, tokens = time.time(), 0
    while step < o.steps and (stop_at is None or step < stop_at):
        lr = lr_at(step, o)
        for g in optimizer.param_groups:
            g["lr"] = lr
        agg: dict[str, float] = {}
        for micro in range(o.grad_accum):
            gen = step_generator(cfg.seed, step, micro)
            x = data.batch(gen, B).to(device)
            with torch.autocast(dev_type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                r = objective(x, gen, rows)
            (r["loss"] / o.grad_accum).backward()
            for k, v in _mean_over_ranks(r, world).items():
                agg[k] = agg.get(k, 0.0) + float(v) / o.grad_accum
            tokens += x.numel()
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cfg.kind == "tm" and model.emb.requires_grad:
            model.renorm_()
        step += 1
        tps = tokens / max(1e-9, time.time() - t0)
        bar.update(1)
        bar.set_postfix(loss=f"{agg['loss']:.3f}", tok_s=f"{tps:,.0f}")
        if step % cfg.log_every == 0 or step == o.steps:
            emit({"step": step, "lr": lr, "tokens_per_s": round(tps, 1),
                  **{k: round(v, 5) for k, v in agg.items()}})
        if (step % cfg.eval_every == 0 or step == o.steps) and rank == 0:
            last_eval = evaluate(model, data, cfg,
                                 cfg.final_eval_blocks if step == o.steps else cfg.eval_blocks)
            emit({"step": step, "split": "valid", **last_eval})
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in last_eval.items()),
                      file=sys.stderr)
        if (step % cfg.ckpt_every == 0 or step == o.steps or step == stop_at) and rank == 0:
            _save(model, optimizer, step, cfg, out)
            fault_point("checkpoint")
    bar.close()
    if log is not None:
        log.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if rank != 0:
            return {}
    if step >= o.steps and (last_eval or not (out / "final").exists()):
        prev = out / "ckpt" / "state.json"
        trained = {"steps": step, "seed": cfg.seed, "init_from": cfg.init_from,
                   "tokens": step * B * o.grad_accum * cfg.data.block_size,
                   "rescheduled": (checkpoint.read_json(prev).get("rescheduled", [])
                                   if prev.exists() else []), **last_eval}
        if cfg.adapter is not None:
            from tmbench.models.delta import save_delta

            save_delta(model, out / "final", base=cfg.init_from, adapter=cfg.adapter,
                       trained=trained, dtype=None)
        else:
            save_model_dir(model, out / "final", extra={"trained": trained})
    elif (out / "final").exists():  # resumed a finished run: report its numbers
        last_eval = {k: v for k, v in checkpoint.read_json(out / "final" / "config.json")
                     .get("trained", {}).items() if k.startswith("val_")}
    return last_eval


# ---- command line ---------------------------------------------------------------------------------
def add_train_cli(subparsers) -> argparse.ArgumentParser:
    t = subparsers.add_parser("train", help="train a TM or AR model from a config",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", help="config name (test, tiny, gpt2-medium) or path to a .yaml")
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
    for flag, key in ((args.kind, "kind"), (args.init_from, "init_from"), (args.steps, "optim.steps"),
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
