"""Work done once instead of per run: GGUF conversion per machine, warm-up per model and
decoder, the time to first token inside the full decode, one run for a seed-free decoder."""

import json

import pytest
import torch

from helpers import tiny_tm, write_tiny_gguf
from tmbench.leaderboard import build_tables
from tmbench.models import gguf as gguf_mod
from tmbench.models.gguf import MANIFEST, converted, load_gguf
from tmbench.plan import plan_runs
from tmbench.registry import DECODERS, register_decoder
from tmbench.results import read_record
from tmbench.runner import Runner
from tmbench.suites import load_suite
from tmbench.types import first_token, first_token_clock, is_seed_free, model_kind, seed_free

# ---- GGUF files converted once per machine ------------------------------------------------------


def _same_model(a, b) -> bool:
    sa, sb = (m if isinstance(m, dict) else m.state_dict() for m in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype
                                          for k in sa)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_converted_gguf_equals_the_direct_load_and_is_read_without_converting(
        tmp_path, monkeypatch, dtype):
    pytest.importorskip("accelerate", reason="accelerate is not installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = write_tiny_gguf(tmp_path)
    cache = tmp_path / "cache"
    lm, tok = load_gguf(path, dtype, cache=cache)
    folder = converted(path, cache=cache)
    assert folder.parent == cache / "converted" and (folder / MANIFEST).exists()
    direct = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                  dtype=getattr(torch, dtype))
    assert _same_model(lm, direct)
    ref_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = "The bank said profits rose."
    for special in (True, False):  # what is encoded, BOS included (not what the flags say)
        assert (tok(text, add_special_tokens=special).input_ids
                == ref_tok(text, add_special_tokens=special).input_ids)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        ref_tok.bos_token_id, ref_tok.eos_token_id, ref_tok.pad_token_id)
    ids = torch.tensor([ref_tok(text).input_ids])
    with torch.no_grad():
        assert torch.equal(lm(ids).logits, direct(ids).logits)

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_mod, "_convert", no_conversion)
    again, _ = load_gguf(path, dtype, cache=cache)  # read from the folder, nothing converted
    assert _same_model(again, direct)


@pytest.mark.parametrize("damage", ["garbled", "no manifest", "file missing"])
def test_a_damaged_conversion_is_reported_and_converted_again(tmp_path, damage):
    pytest.importorskip("accelerate", reason="accelerate is not installed")
    path, _ = write_tiny_gguf(tmp_path)
    cache = tmp_path / "cache"
    good, _ = load_gguf(path, cache=cache)
    # a copy: the loaded tensors may map the file this test garbles
    good = {k: v.clone() for k, v in good.state_dict().items()}
    folder = converted(path, cache=cache)
    weights = folder / "model.safetensors"
    if damage == "garbled":
        raw = bytearray(weights.read_bytes())
        raw[-1] ^= 0xFF
        weights.write_bytes(bytes(raw))
    elif damage == "no manifest":
        (folder / MANIFEST).unlink()
    else:
        weights.unlink()
    said = []
    again, _ = load_gguf(path, cache=cache, warn=said.append)
    assert len(said) == 1 and str(folder) in said[0] and "converting it again" in said[0]
    assert _same_model(good, again)
    files = json.loads((folder / MANIFEST).read_text())["files"]
    assert "model.safetensors" in files  # whole again, and checked on the next load
    said.clear()
    load_gguf(path, cache=cache, warn=said.append)
    assert not said


def test_an_unwritable_cache_converts_for_the_process_only(tmp_path, monkeypatch):
    pytest.importorskip("accelerate", reason="accelerate is not installed")
    path, _ = write_tiny_gguf(tmp_path)
    cache = tmp_path / "cache"
    real = gguf_mod._convert

    def refuse_cache(src, target):
        if str(target).startswith(str(cache)):
            raise PermissionError(13, "Permission denied", str(target))
        return real(src, target)

    monkeypatch.setattr(gguf_mod, "_convert", refuse_cache)
    said = []
    lm, _ = load_gguf(path, cache=cache, warn=said.append)
    assert len(said) == 1 and "TMBENCH_CACHE" in said[0]
    assert not (cache / "converted").exists() or not any((cache / "converted").iterdir())
    assert lm.config.vocab_size > 0


# ---- the time to first token inside the full decode ---------------------------------------------


def test_first_token_clock_times_the_first_call_only_and_nested_blocks_keep_theirs():
    with first_token_clock() as got:
        first_token()
        first_token()
        with first_token_clock() as inner:
            first_token()
    assert len(got) == 1 and got[0] >= 0 and len(inner) == 1
    first_token()  # outside any clock: nothing happens


def test_builtin_decoders_mark_their_first_token(tmp_path):
    """Greedy, sampling, contrastive and maturation say when their first token is final; beam
    (which may still change it) and best-of-n (whose candidates are not its output) do not."""
    from tmbench.models.toy import load_toy

    ar = load_toy()
    prompts = [[5, 6, 7], [8, 9]]
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    marks = {}
    for name, params in [("greedy", {}), ("nucleus", {"p": 0.9}), ("contrastive", {}),
                         ("no_repeat_greedy", {}), ("beam", {}),
                         ("best_of_n", {"n": 2})]:
        with first_token_clock() as got:
            DECODERS.get(name)(ar, prompts, max_new_tokens=4, generator=gens, **params)
        marks[name] = len(got)
    tm = tiny_tm()
    with first_token_clock() as got:
        DECODERS.get("maturation")(tm, prompts, max_new_tokens=3, generator=gens, tail_len=3)
    marks["maturation"] = len(got)
    assert marks == {"greedy": 1, "nucleus": 1, "contrastive": 1, "no_repeat_greedy": 1,
                     "beam": 0, "best_of_n": 0, "maturation": 1}


CALLS: list[tuple[int, int]] = []


@register_decoder("test_counted")
@model_kind("ar")
def counted_decoder(model, prompts, *, max_new_tokens, generator, mark: bool = True):
    """Greedy that logs (batch size, max_new_tokens) of every call; marks its first token
    unless ``mark`` is false."""
    CALLS.append((len(prompts), max_new_tokens))
    out = model.prefill(prompts)
    toks = [[] for _ in prompts]
    for t in range(max_new_tokens):
        nxt = out.logits.argmax(-1)
        for b, x in enumerate(nxt.tolist()):
            toks[b].append(x)
        if t == 0 and mark:
            first_token()
        out = model.step(out.state, nxt)
    return toks


TIMED = """name: timed
version: 1
dataset: {{source: bbc, split: test, n_prompts: 4, prompt_len: 6, reference_len: 12}}
max_new_tokens: 6
batch_size: 2
seeds: [0, 1]
models: [toy-random]
decoders:
  - {{name: test_counted, label: a, params: {{mark: {mark}}}}}
  - {{name: test_counted, label: b, params: {{mark: {mark}}}, seeds: [2]}}
metrics: [{{name: throughput}}]
"""


@pytest.mark.parametrize("mark", [True, False])
def test_timed_runs_warm_up_once_and_read_ttft_inside_the_decode(tmp_path, mark):
    p = tmp_path / "timed.yaml"
    p.write_text(TIMED.format(mark=str(mark).lower()))
    CALLS.clear()
    Runner(load_suite(str(p)), tmp_path / "out", progress=False, log=lambda *a: None).run(
        models=["toy-random"])
    # 3 runs (a at seeds 0 and 1, b at seed 2) of 2 batches each; one warm-up of 4 tokens for
    # the model, decoder and batch size; a decoder that does not mark pays a 1-token decode
    full = [c for c in CALLS if c[1] == 6]
    assert len(full) == 6 and CALLS.count((2, 4)) == 1
    assert CALLS.count((2, 1)) == (0 if mark else 6)
    recs = [read_record(f) for f in (tmp_path / "out").glob("timed/v1/*/record.json")]
    batches = [b for r in recs for b in r["timings"]["batches"]]
    assert len(batches) == 6
    assert all(0 < b["ttft_s"] <= b["wall_s"] for b in batches) if mark else all(
        b["ttft_s"] > 0 for b in batches)


# ---- seed-free decoders run once ------------------------------------------------------------------


@pytest.mark.parametrize("name,params", [
    ("greedy", {}), ("greedy", {"repetition_penalty": 1.3}), ("beam", {"num_beams": 2}),
    ("contrastive", {}), ("no_repeat_greedy", {})])
def test_seed_free_ar_decoders_give_the_same_tokens_under_any_generator(name, params):
    from tmbench.models.toy import load_toy
    from tmbench.params import resolve_params

    fn = DECODERS.get(name)
    assert is_seed_free(fn, resolve_params(fn, params, name))
    model, prompts = load_toy(), [[5, 6, 7], [8, 9, 10, 11]]
    outs = [fn(model, prompts, max_new_tokens=6,
               generator=[torch.Generator().manual_seed(s * 10 + b) for b in range(2)], **params)
            for s in range(3)]
    assert outs[0] == outs[1] == outs[2]


def test_maturation_is_seed_free_only_when_it_draws_nothing():
    from tmbench.params import resolve_params

    fn = DECODERS.get("maturation")
    free = {"embryo": "zeros"}
    assert is_seed_free(fn, resolve_params(fn, free, "m"))
    for draws in ({}, {"embryo": "zeros", "sigma_dyn": 0.1},
                  {"embryo": "zeros", "sample_commit": True}):
        assert not is_seed_free(fn, resolve_params(fn, draws, "m"))
    tm, prompts = tiny_tm(), [[5, 6, 7], [8, 9]]
    outs = [fn(tm, prompts, max_new_tokens=4, embryo="zeros", tail_len=3,
               generator=[torch.Generator().manual_seed(s * 10 + b) for b in range(2)]).tokens
            for s in range(2)]
    assert outs[0] == outs[1]
    for sampler in ("nucleus", "top_k", "sample", "best_of_n"):
        assert not is_seed_free(DECODERS.get(sampler), {})


SEEDED = """name: seeded
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}
max_new_tokens: 3
batch_size: 2
seeds: [0, 1, 2]
models: [toy-random]
decoders:
  - {name: greedy}
  - {name: nucleus, params: {p: 0.9}}
metrics: [{name: repetition, params: {ns: [2], units: [token]}}]
"""


def test_a_seed_free_decoder_is_planned_once_and_its_row_says_any(tmp_path):
    p = tmp_path / "seeded.yaml"
    p.write_text(SEEDED)
    suite = load_suite(str(p))
    said = []
    runs = plan_runs(suite, None, None, None, log=said.append)
    assert [(r.decoder.label, r.seed, r.seed_free) for r in runs] == [
        ("greedy", 0, True), ("nucleus", 0, False), ("nucleus", 1, False), ("nucleus", 2, False)]
    assert any("greedy" in s and "stands for seeds [0, 1, 2]" in s for s in said)
    out = tmp_path / "out"
    Runner(suite, out, progress=False, log=lambda *a: None).run(models=["toy-random"])
    recs = [read_record(f) for f in out.glob("seeded/v1/*/record.json")]
    assert sorted(r["spec"]["decoder"].get("seed_free", False) for r in recs) == [
        False, False, False, True]
    (table,) = build_tables(out, "seeded")
    rows = {r.decoder: r for r in table.rows}
    assert rows["greedy"].seeds_shown == "any" and rows["nucleus"].seeds_shown == "3"


def test_seed_free_marks_a_plugin_decoder():
    @seed_free(when=lambda params: params.get("k") == 1)
    def top1(model, prompts, *, max_new_tokens, generator, k: int = 2):
        return [[0] * max_new_tokens for _ in prompts]

    assert is_seed_free(top1, {"k": 1}) and not is_seed_free(top1, {"k": 2})
    assert not is_seed_free(lambda *a, **k: None, {})
