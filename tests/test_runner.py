from pathlib import Path

import pytest
import torch

from helpers import argmax_tokens
from tmbench.leaderboard import build_tables, to_markdown, write_leaderboards
from tmbench.params import resolve_params
from tmbench.registry import register_decoder, register_metric
from tmbench.results import read_record
from tmbench.runner import Runner
from tmbench.suites import load_suite
from tmbench.types import Score, metric_key, model_kind


@register_decoder("test_argmax")
@model_kind("ar")
def argmax_decoder(model, prompts, *, max_new_tokens, generator, bias: float = 0.0):
    return argmax_tokens(model, prompts, max_new_tokens, bias)


@register_decoder("test_sample")
@model_kind("ar")
def sample_decoder(model, prompts, *, max_new_tokens, generator):
    out = model.prefill(prompts)
    toks = [[] for _ in prompts]
    for _ in range(max_new_tokens):
        probs = out.logits.softmax(-1)
        nxt = torch.cat([torch.multinomial(probs[b:b + 1], 1, generator=g)[:, 0]
                         for b, g in enumerate(generator)])
        for b, t in enumerate(nxt.tolist()):
            toks[b].append(t)
        out = model.step(out.state, nxt)
    return toks


@register_metric("test_len")
def len_metric(samples, *, ctx, unit: str = "token"):
    per = [float(len(s.token_ids) if unit == "token" else len(s.text.split())) for s in samples]
    return {metric_key("len", unit=unit): Score(sum(per) / len(per), per, None, {"unit": unit})}


SUITE = """name: rt
version: 3
dataset: {source: bbc, split: test, n_prompts: 3, prompt_len: 6, reference_len: 12}
max_new_tokens: 5
batch_size: 2
seeds: [0, 1]
models: [toy-random]
decoders:
  - {name: test_argmax, seeds: [0]}
  - {name: test_sample, label: sample}
metrics: [{name: test_len, params: {unit: word}}]
"""


@pytest.fixture
def suite(tmp_path):
    p = tmp_path / "rt.yaml"
    p.write_text(SUITE)
    return load_suite(str(p))


def records(root: Path):
    return sorted(root.glob("*/v*/*/record.json"))


def test_run_writes_records_and_resumes(tmp_path, suite):
    out = tmp_path / "res"
    s1 = Runner(suite, out, progress=False, log=lambda *a: None).run()
    # human row + argmax (1 seed) + sample (2 seeds)
    assert len(s1.done) == 4 and not s1.skipped
    recs = [read_record(p) for p in records(out)]
    rows = {(r["row"]["model"], r["row"]["decoder"], r["spec"]["seed"]) for r in recs}
    assert ("human", "reference", 0) in rows and ("toy-random", "sample", 1) in rows
    rec = next(r for r in recs if r["row"]["decoder"] == "test_argmax")
    assert rec["spec"]["decoder"]["params"] == {"bias": 0.0}
    assert len(rec["samples"]) == 3 and all(len(s["token_ids"]) == 5 for s in rec["samples"])
    assert rec["environment"]["fingerprint"]["id"] and rec["protocol"]["continuation"]
    s2 = Runner(suite, out, progress=False, log=lambda *a: None).run()
    assert not s2.done and len(s2.skipped) == 4


def test_model_human_selects_the_human_row(tmp_path, suite):
    out = tmp_path / "res"
    quiet = dict(progress=False, log=lambda *a: None)
    s1 = Runner(suite, out, **quiet).run(models=["human"])
    assert len(s1.done) == 1 and [r["row"]["model"] for r in map(read_record, records(out))] \
        == ["human"]
    # a model filter alone leaves the human row out; with `human` beside it, both run
    Runner(suite, out, **quiet).run(models=["toy-random"], decoders=["sample"], seeds=[0])
    assert len(records(out)) == 2
    s3 = Runner(suite, out, **quiet).run(models=["toy-random", "human"], seeds=[1])
    assert len(s3.done) == 2 and len(s3.skipped) == 1  # argmax and sample at seed 1; human
    assert {read_record(p / "record.json")["row"]["model"] for p in s3.skipped} == {"human"}


def test_same_seed_same_tokens_different_seed_differs(tmp_path, suite):
    out = tmp_path / "res"
    Runner(suite, out, progress=False, log=lambda *a: None).run(decoders=["sample"])
    recs = {r["spec"]["seed"]: r for r in map(read_record, records(out))}
    out2 = tmp_path / "res2"
    Runner(suite, out2, progress=False, log=lambda *a: None).run(decoders=["sample"], seeds=[1])
    again = read_record(records(out2)[0])
    assert [s["token_ids"] for s in again["samples"]] == [s["token_ids"] for s in recs[1]["samples"]]
    assert [s["token_ids"] for s in recs[0]["samples"]] != [s["token_ids"] for s in recs[1]["samples"]]


def test_partial_batches_are_reused_and_torn_lines_dropped(tmp_path, suite):
    out = tmp_path / "res"
    r = Runner(suite, out, progress=False, log=lambda *a: None)
    r.run(decoders=["test_argmax"])
    rec_path = records(out)[0]
    full = read_record(rec_path)
    # Simulate a kill after the first batch: record gone, partial holds batch 0 plus a torn line.
    folder = rec_path.parent
    from tmbench.results import append_partial

    append_partial(folder / "partial.jsonl", {"start": 0, "tokens": [s["token_ids"] for s in full["samples"][:2]],
                                              "wall_s": 0.0, "ttft_s": None, "info": {}, "batch_info": {}})
    with open(folder / "partial.jsonl", "a") as f:
        f.write('{"start": 2, "tokens": [[1, 2')  # torn write
    rec_path.unlink()
    msgs = []
    Runner(suite, out, progress=False, log=msgs.append).run(decoders=["test_argmax"])
    again = read_record(rec_path)
    assert [s["token_ids"] for s in again["samples"]] == [s["token_ids"] for s in full["samples"]]
    assert any("damaged batch line" in m for m in msgs)
    assert not (folder / "partial.jsonl").exists()


def test_corrupt_record_is_reported_and_regenerated(tmp_path, suite):
    out = tmp_path / "res"
    Runner(suite, out, progress=False, log=lambda *a: None).run(decoders=["test_argmax"])
    p = records(out)[0]
    p.write_text(p.read_text()[:100])
    msgs = []
    s = Runner(suite, out, progress=False, log=msgs.append).run(decoders=["test_argmax"])
    assert len(s.done) == 1 and any("regenerating" in m for m in msgs)
    read_record(p)


def test_bad_decoder_params_fail_before_writing(tmp_path, suite):
    from tmbench.plan import plan_runs

    bad = suite.__class__(**{**suite.__dict__, "decoders": (
        suite.decoders[0].__class__("test_argmax", "x", {"bias": "high"}),)})
    with pytest.raises(ValueError, match="parameter 'bias' must be float"):
        Runner(bad, tmp_path / "res", progress=False).run()
    assert not (tmp_path / "res").exists()
    with pytest.raises(ValueError, match="unknown parameter"):
        resolve_params(argmax_decoder, {"temp": 1}, "x")
    with pytest.raises(ValueError, match="unknown model"):
        plan_runs(suite, ["toy-randon"], None, None)


def test_leaderboard_tables(tmp_path, suite):
    out = tmp_path / "res"
    Runner(suite, out, progress=False, log=lambda *a: None).run()
    tables = build_tables(out)
    assert len(tables) == 1
    t = tables[0]
    assert t.suite == "rt" and t.version == 3
    names = [r.name for r in t.rows]
    assert names[0] == "human / reference" and "toy-random / sample" in names
    md = to_markdown(t)
    assert "rt v3" in md and "toy-random" in md
    paths = write_leaderboards(out, tmp_path / "lb")
    assert {p.suffix for p in paths} == {".md", ".csv", ".html"}


@register_decoder("test_oom")
@model_kind("ar")
def oom_decoder(model, prompts, *, max_new_tokens, generator):
    if len(prompts) > 1:
        raise MemoryError("simulated")
    return argmax_decoder(model, prompts, max_new_tokens=max_new_tokens, generator=generator)


def test_out_of_memory_backs_off_and_records_it(tmp_path, suite):
    msgs = []
    Runner(suite, tmp_path / "res", progress=False, log=msgs.append).run(decoders=["test_oom"])
    rec = read_record(records(tmp_path / "res")[0])
    assert len(rec["samples"]) == 3
    assert rec["timings"]["memory_backoff"][0] == {"start": 0, "from": 2, "to": 1, "error": "MemoryError"}
    ref_out = tmp_path / "ref"
    Runner(suite, ref_out, progress=False, log=lambda *a: None).run(decoders=["test_argmax"])
    ref = read_record(records(ref_out)[0])
    assert [s["token_ids"] for s in rec["samples"]] == [s["token_ids"] for s in ref["samples"]]


def test_nan_logits_stop_the_run_naming_model_step_and_prompt(tmp_path, suite):
    from tmbench.models.base import NonFiniteError
    from tmbench.registry import MODELS

    toy = MODELS.get("toy-random")

    @register_model_for_test("toy-nan")
    def load_nan(device="cpu", dtype="float32"):
        m = toy(device, dtype)
        with torch.no_grad():
            m.model.lm_head.weight[5] = float("nan")
        m.name = "toy-nan"
        return m

    with pytest.raises(NonFiniteError, match=r"model 'toy-nan' produced NaN/inf in the prefill logits.*prompt indices 0\.\.1"):
        Runner(suite, tmp_path / "res", progress=False, log=lambda *a: None).run(
            models=["toy-nan"], decoders=["test_argmax"])
    assert not list((tmp_path / "res").glob("*/v*/*/record.json"))


def register_model_for_test(name):
    from tmbench.registry import register_model

    return register_model(name)


def test_sampled_tokens_do_not_depend_on_batch_size(tmp_path, suite):
    toks = []
    for bs in (1, 3):
        s = suite.__class__(**{**suite.__dict__, "batch_sizes": (bs,)})
        out = tmp_path / f"b{bs}"
        Runner(s, out, progress=False, log=lambda *a: None).run(decoders=["nucleus"], seeds=[5])
        toks.append([x["token_ids"] for x in read_record(records(out)[0])["samples"]])
    assert toks[0] == toks[1]


@register_metric("test_judge_len")
def judge_len_metric(samples, *, ctx, judge: str = "test-slow-judge"):
    j = ctx.load_model(judge)
    return {metric_key("judge_len", judge=judge): Score(float(len(j.tokenizer.encode(samples[0].text))))}


def test_judge_loading_is_not_counted_as_scoring(tmp_path):
    """A judge loaded while scoring is the metric's load_s (and the record's timings load_s),
    not its scoring_s; loaded once per session, so the next run's scoring has no load time."""
    import time

    from tmbench.models.toy import load_toy

    @register_model_for_test("test-slow-judge")
    def slow_judge(device="cpu", dtype="float32"):
        time.sleep(0.5)
        return load_toy(device=device, dtype=dtype)

    p = tmp_path / "j.yaml"
    p.write_text(SUITE.replace("models: [toy-random]", "models: [toy-random]\nhuman_row: false")
                 .replace("metrics: [{name: test_len, params: {unit: word}}]",
                          "metrics: [{name: test_judge_len}, "
                          "{name: test_judge_len, params: {judge: toy-random}}]")
                 .replace("  - {name: test_sample, label: sample}\n", ""))
    out = tmp_path / "res"
    Runner(load_suite(str(p)), out, progress=False, log=lambda *a: None).run(seeds=[0, 1])
    recs = sorted((read_record(f) for f in records(out)), key=lambda r: r["spec"]["seed"])
    slow_id = "test_judge_len[judge=test-slow-judge]"
    first, second = (r["metric_runs"][slow_id] for r in recs)
    assert first["load_s"] >= 0.5 and first["scoring_s"] < first["load_s"]
    assert second["load_s"] == 0.0
    # the second metric of a run loads its judge through the same context
    assert all(len(r["metrics"]) == 2 for r in recs)
    runs = recs[0]["metric_runs"].values()
    assert recs[0]["timings"]["load_s"] == sum(m["load_s"] for m in runs)
    assert recs[0]["timings"]["scoring_s"] == sum(m["scoring_s"] for m in runs)


def test_judges_score_in_float32_whatever_the_generation_dtype(tmp_path):
    """A bfloat16 run is generated in bfloat16 but judged by the float32 judge, so its judge
    scores compare with every other row's (a bfloat16 judge is a model of its own name)."""
    p = tmp_path / "j.yaml"
    p.write_text("""name: jd
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}
max_new_tokens: 3
batch_size: 2
seeds: [0]
models: [toy-random]
human_row: false
decoders: [{name: test_argmax}]
metrics: [{name: gen_ppl, params: {judge: toy-random}}]
""")
    Runner(load_suite(str(p)), tmp_path / "res", dtype="bfloat16", progress=False,
           log=lambda *a: None).run()
    (rec_path,) = (tmp_path / "res").glob("*/v*/*/record.json")
    rec = read_record(rec_path)
    assert rec["spec"]["dtype"] == "bfloat16"
    assert rec["judges"]["toy-random"]["dtype"] == "float32"


CUT = {"batches": 0, "after": None}


@register_decoder("test_cut")
@model_kind("ar")
def cut_decoder(model, prompts, *, max_new_tokens, generator):
    """test_sample, but the batch after CUT["after"] finished ones raises KeyboardInterrupt (a
    run stopped mid-way; the plan's two-token dry run is not a batch)."""
    if max_new_tokens > 2:
        if CUT["batches"] == CUT["after"]:
            raise KeyboardInterrupt
        CUT["batches"] += 1
    return sample_decoder(model, prompts, max_new_tokens=max_new_tokens, generator=generator)


@pytest.mark.parametrize("before,cut,after", [(4, 2, 8), (8, 1, 3), (5, 2, 7)])
def test_resume_at_another_batch_size_generates_exactly_the_missing_prompts(
        tmp_path, before, cut, after):
    """Untimed suites leave the batch size out of the run key, so a run stopped at one batch
    size resumes at another: only the prompts the partial file lacks are generated, and the
    record equals a clean run's, every prompt once and in order."""
    p = tmp_path / "r.yaml"
    p.write_text(SUITE.replace("n_prompts: 3", "n_prompts: 12").replace(
        "models: [toy-random]", "models: [toy-random]\nhuman_row: false"))
    base = load_suite(str(p))

    def run(bs, out, after=None):
        CUT.update(batches=0, after=after)
        s = base.__class__(**{**base.__dict__, "batch_sizes": (bs,)})
        Runner(s, out, progress=False, log=lambda *a: None).run(decoders=["test_cut"], seeds=[1])
        return read_record(records(out)[0])

    with pytest.raises(KeyboardInterrupt):
        run(before, tmp_path / "res", after=cut)
    (folder,) = (tmp_path / "res").glob("*/v*/*")
    assert not (folder / "record.json").exists() and (folder / "partial.jsonl").exists()
    got, clean = run(after, tmp_path / "res"), run(after, tmp_path / "clean")
    assert [s["prompt_index"] for s in got["samples"]] == list(range(12))
    assert got["samples"] == clean["samples"] and got["metrics"] == clean["metrics"]
    assert sorted(b["start"] for b in got["timings"]["batches"]) == \
        [b["start"] for b in got["timings"]["batches"]]
    assert sum(b["size"] for b in got["timings"]["batches"]) == 12
