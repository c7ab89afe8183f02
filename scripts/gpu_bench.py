"""tmbench decoding against transformers ``generate`` on one GPU, SmolLM2-135M's architecture.

The model is built from its config with random weights (no weight files, nothing downloaded):
a ``LlamaConfig`` with SmolLM2-135M's sizes. Two measurements, every round interleaved
(transformers then tmbench, AR then TM) so that a drifting load hits both sides alike:

1. bf16 tokens/s of tmbench greedy and nucleus (p = 0.95) against ``generate`` at batch 1, 32
   and 128, 64 new tokens, EOS off on both sides (both produce exactly 64 tokens per row);
   greedy is also checked token for token.
2. Token Maturation against AR greedy per committed token at batch 1 and 32 (K = 16), without
   and with guidance (scale 2: both passes in one forward of 2B rows), over the same random
   backbone: ``HFBackbone`` + ``MaturationModel`` under ``tied`` geometry with the LM's own
   embeddings; and against its floor, one tail forward against a cached prefix of prompt +
   new / 2 positions (:func:`tmbench.tm.cost.tail_forward`). MaturationModel feeds float32
   conditioning features to its MLPs, so this part runs float32 weights under bf16 autocast,
   AR included.

Writes ``gpu_bench.json`` and ``gpu_bench.md`` to ``--out`` (default: ``$OUT``, else
``gpu_bench_out``) after every case, so a run cut short still leaves its finished rows; cases
that would start after ``--budget-s`` seconds are recorded as skipped. ``--smoke`` runs tiny
sizes on the CPU in seconds (a test runs it). Usage:

    python scripts/gpu_bench.py                 # one GPU, under 8 minutes
    python scripts/gpu_bench.py --smoke --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import torch

SMOLLM2 = dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
               tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=100000.0,
               rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2)
TINY = dict(SMOLLM2, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=128, vocab_size=1024,
            max_position_embeddings=512)
FULL_RUN = dict(config=SMOLLM2, ar_batches=(1, 32, 128), tm_batches=(1, 32), new=64, prompt=32,
                tail=16, rounds=3)
FLOOR_REPS = 4
SMOKE_RUN = dict(config=TINY, ar_batches=(1, 4), tm_batches=(1, 4), new=8, prompt=8, tail=4,
                 rounds=1)


def build(cfg: dict, device: str):
    """(float32 LM, bf16 copy of it) with seeded random weights, in eval mode on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    lm.generation_config.eos_token_id = None  # exactly max_new_tokens on the transformers side
    half = copy.deepcopy(lm).to(torch.bfloat16)
    return lm.to(device), half.to(device)


def prompts(n: int, length: int, vocab: int) -> list[list[int]]:
    """Random ids, lengths length/2 .. length so that batches are left-padded."""
    g = torch.Generator().manual_seed(n)
    lens = torch.randint(max(1, length // 2), length + 1, (n,), generator=g).tolist()
    return [torch.randint(3, vocab, (m,), generator=g).tolist() for m in lens]


def padded(ps: list[list[int]], pad: int, device: str):
    S = max(map(len, ps))
    ids = torch.full((len(ps), S), pad)
    mask = torch.zeros(len(ps), S, dtype=torch.long)
    for b, p in enumerate(ps):
        ids[b, S - len(p):], mask[b, S - len(p):] = torch.tensor(p), 1
    return ids.to(device), mask.to(device)


def timed(fn, device: str):
    """(seconds, result) of one call, with the device's queue drained on both ends."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def interleaved(fns: dict, rounds: int, device: str):
    """One warm-up call of each, then ``rounds`` rounds calling each in turn: min seconds and
    the last result per name."""
    best, last = {k: float("inf") for k in fns}, {}
    for r in range(rounds + 1):
        for k, fn in fns.items():
            s, last[k] = timed(fn, device)
            if r:
                best[k] = min(best[k], s)
    return best, last


def ar_case(half, decoder: str, B: int, run: dict, device: str) -> dict:
    """tmbench against ``generate`` for one decoder and batch (bf16 weights on both sides)."""
    from tmbench.decoders.greedy import greedy
    from tmbench.decoders.sampling import nucleus
    from tmbench.models.hf import HFModel

    model = HFModel(half, None, "smollm2-arch-random")
    model.eos_token_id = None
    ps = prompts(B, run["prompt"], model.vocab_size)
    ids, mask = padded(ps, 2, device)
    new = run["new"]
    sampling = dict(do_sample=True, top_p=0.95, top_k=0, temperature=1.0)

    def ours():
        if decoder == "greedy":
            return greedy(model, ps, max_new_tokens=new, generator=None)
        g = torch.Generator(device=device).manual_seed(0)
        return nucleus(model, ps, max_new_tokens=new, p=0.95, generator=g)

    def theirs():
        torch.manual_seed(0)
        kw = dict(do_sample=False) if decoder == "greedy" else sampling
        out = half.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                            pad_token_id=2, **kw)
        return out[:, ids.shape[1]:].tolist()

    best, last = interleaved({"transformers": theirs, "tmbench": ours}, run["rounds"], device)
    assert all(len(r) == new for r in last["tmbench"] + last["transformers"])
    return {"decoder": decoder, "batch": B, "dtype": "bfloat16", "new_tokens": new,
            "tmbench_tokens_per_s": B * new / best["tmbench"],
            "transformers_tokens_per_s": B * new / best["transformers"],
            "speedup": best["transformers"] / best["tmbench"],
            "same_tokens": last["tmbench"] == last["transformers"] if decoder == "greedy" else None}


def tm_case(lm, B: int, guidance: float, run: dict, device: str) -> dict:
    """Maturation (K = run["tail"]) against tmbench AR greedy per committed token and against
    its floor (one tail forward), float32 weights under bf16 autocast on all three."""
    from tmbench.backbones.hf_adapter import HFBackbone
    from tmbench.decoders.greedy import greedy
    from tmbench.models.hf import HFModel
    from tmbench.tm.cost import tail_forward
    from tmbench.tm.decode import maturation
    from tmbench.tm.model import MaturationModel, TMConfig

    ar = HFModel(lm, None, "smollm2-arch-random")
    ar.eos_token_id = None
    bb = HFBackbone(lm)  # the same modules as the AR model
    cfg = TMConfig(geometry="tied", logit_scale=1.0, vocab_size=ar.vocab_size, k_max=run["tail"])
    tm = MaturationModel(bb, cfg).to(device).eval()
    with torch.no_grad():
        tm.emb.copy_(bb.input_embeddings())
    ps, new = prompts(B, run["prompt"], ar.vocab_size), run["new"]
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16)

    def with_autocast(fn):
        def call():
            with autocast:
                return fn()
        return call

    with autocast:
        one = tail_forward(tm, B, run["tail"], run["prompt"] + new // 2, guided=guidance != 1.0)

    def floor():  # FLOOR_REPS forwards per call: one is too short to time alone
        for _ in range(FLOOR_REPS):
            one()

    fns = {"ar": with_autocast(lambda: greedy(ar, ps, max_new_tokens=new, generator=None)),
           "tm": with_autocast(lambda: maturation(tm, ps, max_new_tokens=new, tail_len=run["tail"],
                                                  guidance=guidance,
                                                  generator=torch.Generator().manual_seed(0))),
           "floor": with_autocast(floor)}
    best, _ = interleaved(fns, run["rounds"], device)
    steps = new + run["tail"] - 1  # the first K - 1 steps commit nothing
    floor_ms = 1e3 * best["floor"] / FLOOR_REPS
    return {"batch": B, "tail_len": run["tail"], "guidance": guidance, "new_tokens": new,
            "dtype": "bf16 autocast",
            "ar_ms_per_token": 1e3 * best["ar"] / new, "tm_ms_per_token": 1e3 * best["tm"] / new,
            "tm_over_ar": best["tm"] / best["ar"],
            "tm_over_ar_steady_state": best["tm"] / best["ar"] * new / steps,
            "floor_ms": floor_ms, "tm_over_floor": 1e3 * best["tm"] / steps / floor_ms}


def markdown(rec: dict) -> str:
    lines = [f"# tmbench vs transformers generate: {rec['device']}", "",
             f"SmolLM2-135M architecture ({'tiny smoke sizes' if rec['smoke'] else 'full sizes'}), "
             f"random weights; torch {rec['torch']}, transformers {rec['transformers']}. "
             "Min over interleaved rounds.", "",
             "| decoder | batch | dtype | tmbench tok/s | transformers tok/s | speedup | same tokens |",
             "|---|---|---|---|---|---|---|"]
    for r in rec["ar"]:
        if "skipped" in r:
            lines.append(f"| {r['decoder']} | {r['batch']} | | skipped: {r['skipped']} | | | |")
            continue
        same = {True: "yes", False: "NO", None: "–"}[r["same_tokens"]]
        lines.append(f"| {r['decoder']} | {r['batch']} | {r['dtype']} | "
                     f"{r['tmbench_tokens_per_s']:.1f} | {r['transformers_tokens_per_s']:.1f} | "
                     f"{r['speedup']:.3f}x | {same} |")
    lines += ["", "| batch | K | guidance | dtype | AR greedy ms/token | TM ms/token | TM / AR | "
              "TM / AR without warm-up | floor ms | TM step / floor |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rec["tm"]:
        if "skipped" in r:
            lines.append(f"| {r['batch']} | | {r['guidance']:g} | skipped: {r['skipped']} "
                         "| | | | | | |")
            continue
        lines.append(f"| {r['batch']} | {r['tail_len']} | {r['guidance']:g} | {r['dtype']} | "
                     f"{r['ar_ms_per_token']:.2f} | {r['tm_ms_per_token']:.2f} | "
                     f"{r['tm_over_ar']:.2f}x | {r['tm_over_ar_steady_state']:.2f}x | "
                     f"{r['floor_ms']:.2f} | {r['tm_over_floor']:.2f}x |")
    return "\n".join(lines) + "\n"


def save(rec: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_bench.json").write_text(json.dumps(rec, indent=2) + "\n")
    (out / "gpu_bench.md").write_text(markdown(rec))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_bench_out",
                    help="folder for gpu_bench.json and gpu_bench.md (default: $OUT)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, in seconds")
    ap.add_argument("--device", default=None, help="default: cuda if available (cpu with --smoke)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no case after this many seconds (default 420)")
    args = ap.parse_args(argv)
    run = SMOKE_RUN if args.smoke else FULL_RUN
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device; use --smoke for the CPU")
    import transformers

    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor()
    rec = {"device": f"{device} ({name or platform.machine()})", "smoke": args.smoke,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "threads": torch.get_num_threads(), "config": run["config"],
           "run": {k: v for k, v in run.items() if k != "config"}, "ar": [], "tm": []}
    lm, half = build(run["config"], device)
    cases = [("ar", (d, B)) for B in run["ar_batches"] for d in ("greedy", "nucleus")]
    cases += [("tm", (B, g)) for B in run["tm_batches"] for g in (1.0, 2.0)]
    for kind, key in cases:
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            row = dict(zip(("decoder", "batch") if kind == "ar" else ("batch", "guidance"), key))
            rec[kind].append(row | {"skipped": f"budget ({elapsed:.0f} s elapsed)"})
        elif kind == "ar":
            rec["ar"].append(ar_case(half, *key, run, device))
        else:
            rec["tm"].append(tm_case(lm, *key, run, device))
        rec["elapsed_s"] = time.perf_counter() - start
        save(rec, Path(args.out))
        print(json.dumps(rec[kind][-1]), flush=True)
    print(markdown(rec))
    return rec


if __name__ == "__main__":
    main()
