"""Plan-time validation, run keys, decoder selection, metric errors and rescoring."""

from pathlib import Path

import pytest

from helpers import argmax_tokens
from tmbench.registry import register_decoder, register_metric
from tmbench.results import read_record
from tmbench.runner import Runner
from tmbench.stages.record import key_part
from tmbench.stages.score import MetricError
from tmbench.suites import load_suite
from tmbench.types import Score, metric_key, model_kind

CALLS = {"gen": 0}


@register_decoder("plan_argmax")
@model_kind("ar")
def plan_argmax(model, prompts, *, max_new_tokens, generator, bias: float = 0.0):
    if max_new_tokens > 2:  # the plan's dry run decodes 2 tokens on a toy model
        CALLS["gen"] += 1
    return argmax_tokens(model, prompts, max_new_tokens, bias)


@register_metric("plan_len")
def plan_len(samples, *, ctx, scale: float = 1.0):
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    per = [scale * len(s.token_ids) for s in samples]
    return {metric_key("len", scale=scale): Score(sum(per) / len(per), per)}


@register_metric("plan_boom")
def plan_boom(samples, *, ctx):
    if ctx.decode_info.get("dry_run"):
        return {}
    raise RuntimeError("kaboom")


MISSING = {"installed": False}


@register_metric("plan_optional")
def plan_optional(samples, *, ctx):
    if not MISSING["installed"] and not ctx.decode_info.get("dry_run"):
        raise ImportError("needs the 'imaginary' package")
    return {"opt": Score(1.0, [1.0] * len(samples))}


BASE = """name: pl
version: 1
description: {desc}
dataset: {{source: bbc, split: test, n_prompts: 3, prompt_len: 6, reference_len: 12}}
max_new_tokens: {new}
batch_size: 2
seeds: [0]
models: [toy-random]
human_row: false
decoders:
{decoders}
metrics:
{metrics}
"""


def make(tmp_path, desc="a", new=4, decoders=None, metrics=None, name="s.yaml"):
    decoders = decoders or ["  - {name: plan_argmax, label: plain}",
                            "  - {name: plan_argmax, label: plain-b1, params: {bias: 1.0}}"]
    metrics = metrics or ["  - {name: plan_len}"]
    p = tmp_path / name
    p.write_text(BASE.format(desc=desc, new=new, decoders="\n".join(decoders),
                             metrics="\n".join(metrics)))
    return load_suite(str(p))


def run(suite, out, **kw):
    return Runner(suite, out, progress=False, log=lambda *a: None).run(**kw)


def records(root: Path):
    return sorted(root.glob("*/v*/*/record.json"))


def test_bad_second_decoder_fails_before_the_first_is_generated(tmp_path):
    s = make(tmp_path, decoders=["  - {name: plan_argmax, label: ok}",
                                 "  - {name: nucleus, label: bad, params: {p: 1.7}}"])
    CALLS["gen"] = 0
    with pytest.raises(ValueError, match=r"decoder 'bad': p must be a number in \(0, 1\], got 1.7"):
        run(s, tmp_path / "res")
    assert CALLS["gen"] == 0 and not records(tmp_path / "res")


def test_metric_param_typo_and_range_fail_at_plan_time(tmp_path):
    s = make(tmp_path, metrics=["  - {name: repetition, params: {nss: [2]}}"])
    with pytest.raises(ValueError, match=r"metric 'repetition': unknown parameter\(s\) \['nss'\]"):
        run(s, tmp_path / "res")
    s = make(tmp_path, metrics=["  - {name: plan_len, params: {scale: -1.0}}"])
    with pytest.raises(ValueError, match="metric 'plan_len': scale must be > 0"):
        run(s, tmp_path / "res")
    assert not records(tmp_path / "res")


def test_unknown_judge_or_featurizer_fails_at_plan_time(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for line in ["  - {name: gen_ppl, params: {judge: no-such-judge-xyz}}",
                 "  - {name: coherence, params: {defs: [embed-cos], featurizer: no-such-model-xyz}}"]:
        s = make(tmp_path, metrics=[line])
        with pytest.raises(ValueError, match="no-such-"):
            run(s, tmp_path / "res")
        assert not records(tmp_path / "res")


def test_cli_plan_error_is_one_line_exit_2(tmp_path, capsys):
    from tmbench.cli import main

    s = make(tmp_path, metrics=["  - {name: repetition, params: {nss: [2]}}"])
    assert main(["run", "--suite", s.path, "--out", str(tmp_path / "res"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nss" in err[0]
    assert not records(tmp_path / "res")


def test_context_overflow_is_refused_at_plan_time(tmp_path):
    s = make(tmp_path, new=600)  # toy-random has 512 positions
    with pytest.raises(ValueError, match="more than the model's context of 512"):
        run(s, tmp_path / "res")
    assert not records(tmp_path / "res")


def test_decoder_selection_by_label_then_name(tmp_path):
    s = make(tmp_path)
    msgs = []
    Runner(s, tmp_path / "a", progress=False, log=msgs.append).run(decoders=["plain"])
    assert [read_record(p)["row"]["decoder"] for p in records(tmp_path / "a")] == ["plain"]
    assert any("selected plain (by label)" in m for m in msgs)
    msgs.clear()
    Runner(s, tmp_path / "b", progress=False, log=msgs.append).run(decoders=["plan_argmax"])
    assert sorted(read_record(p)["row"]["decoder"] for p in records(tmp_path / "b")) == ["plain", "plain-b1"]
    assert any("by decoder name" in m for m in msgs)


def test_run_key_ignores_suite_edits_but_not_decoder_defaults(tmp_path):
    out = tmp_path / "res"
    run(make(tmp_path, desc="first"), out)
    keys = {p.parent.name for p in records(out)}
    s2 = make(tmp_path, desc="edited description",
              decoders=["  - {name: plan_argmax, label: plain}",
                        "  - {name: plan_argmax, label: plain-b1, params: {bias: 1.0}}",
                        "  - {name: plan_argmax, label: plain-b2, params: {bias: 2.0}}"])
    CALLS["gen"] = 0
    summary = run(s2, out)
    assert len(summary.skipped) == 2 and len(summary.done) == 1
    assert {p.parent.name for p in records(out)} > keys
    rec = read_record(records(out)[0])
    assert rec["spec"]["decoder"]["defaults"] == {"bias": 0.0}
    # a changed default is a changed resolved spec, hence a new key
    spec = dict(rec["spec"], decoder=dict(rec["spec"]["decoder"], params={"bias": 0.5}))
    from tmbench.results import run_key

    assert run_key(key_part(spec)) != rec["key"]


def test_metric_params_recorded_resolved_and_new_metric_scores_stored_samples(tmp_path):
    out = tmp_path / "res"
    run(make(tmp_path), out)
    rec = read_record(records(out)[0])
    assert rec["metric_runs"]["plan_len[scale=1]"]["params"] == {"scale": 1.0}
    CALLS["gen"] = 0
    s2 = make(tmp_path, metrics=["  - {name: plan_len}", "  - {name: plan_len, params: {scale: 2}}"])
    summary = run(s2, out)
    assert CALLS["gen"] == 0 and len(summary.rescored) == 2
    rec2 = read_record(records(out)[0])
    assert rec2["metrics"]["len[scale=2]"]["value"] == 2 * rec2["metrics"]["len[scale=1]"]["value"]
    assert [s["token_ids"] for s in rec2["samples"]] == [s["token_ids"] for s in rec["samples"]]


def test_scores_of_a_metric_the_suite_no_longer_has_are_dropped(tmp_path):
    out = tmp_path / "res"
    both = ["  - {name: plan_len}", "  - {name: plan_len, params: {scale: 2}}"]
    run(make(tmp_path, metrics=both), out)
    CALLS["gen"] = 0
    summary = run(make(tmp_path, metrics=["  - {name: plan_len, params: {scale: 2}}"]), out)
    assert CALLS["gen"] == 0 and len(summary.rescored) == 2
    rec = read_record(records(out)[0])
    assert set(rec["metric_runs"]) == {"plan_len[scale=2]"} and set(rec["metrics"]) == {"len[scale=2]"}
    assert len(run(make(tmp_path, metrics=both[1:]), out).skipped) == 2


def test_metric_that_raises_is_an_error_naming_metric_and_run(tmp_path):
    s = make(tmp_path, decoders=["  - {name: plan_argmax, label: plain}"],
             metrics=["  - {name: plan_boom}"])
    with pytest.raises(MetricError, match=r"metric plan_boom failed on run toy-random/plain seed 0: RuntimeError: kaboom"):
        run(s, tmp_path / "res")
    assert not records(tmp_path / "res")
    # the generated batches are kept: fixing the metric does not regenerate
    assert list((tmp_path / "res").glob("*/v*/*/partial.jsonl"))


def test_missing_optional_dependency_skips_then_completes(tmp_path):
    out = tmp_path / "res"
    s = make(tmp_path, decoders=["  - {name: plan_argmax, label: plain}"],
             metrics=["  - {name: plan_len}", "  - {name: plan_optional}"])
    MISSING["installed"] = False
    run(s, out)
    rec = read_record(records(out)[0])
    assert rec["metric_runs"]["plan_optional"]["status"] == "skipped" and "opt" not in rec["metrics"]
    MISSING["installed"] = True
    CALLS["gen"] = 0
    summary = run(s, out)
    rec = read_record(records(out)[0])
    assert CALLS["gen"] == 0 and len(summary.rescored) == 1
    assert rec["metric_runs"]["plan_optional"]["status"] == "ok" and rec["metrics"]["opt"]["value"] == 1.0
    assert len(run(s, out).skipped) == 1


def test_tm_window_slides_only_when_the_forwarded_tail_overflows():
    import torch

    from tmbench.backbones.gpt import GPT, GPTConfig
    from tmbench.tm.decode import _Window
    from tmbench.tm.model import MaturationModel, TMConfig

    torch.manual_seed(0)
    m = MaturationModel(GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=32)),
                        TMConfig(vocab_size=50, k_max=4)).eval()
    # readout next: pending + K - 1 forwarded slots; 29 committed + 4 - 1 = 32 positions fit
    w = _Window(m, [list(range(1, 30))], K=4)
    assert w.starts == [0]
    w = _Window(m, [list(range(1, 31))], K=4)
    assert w.starts[0] > 0


def test_every_builtin_decoder_dry_runs_with_its_defaults():
    """The plan-time dry run builds a tiny model of each decoder's kind (AR and TM)."""
    from tmbench.plan import defaults_of, dry_run
    from tmbench.registry import DECODERS

    for name in DECODERS.names():
        if DECODERS.source(name) != "builtin":
            continue  # decoders other test files register
        fn = DECODERS.get(name)
        params = defaults_of(fn)
        if name == "best_of_n":
            params = params | {"base": "nucleus", "base_params": {"p": 0.9}}
        dry_run(fn, params, name)
    with pytest.raises(ValueError, match="decoder 'tm': alpha_max must be a number in"):
        dry_run(DECODERS.get("maturation"), {"alpha_max": 1.7}, "tm")


def test_dry_run_lists_checked_runs_and_writes_nothing(tmp_path, capsys):
    from tmbench.cli import main

    s = make(tmp_path)
    args = ["run", "--suite", s.path, "--out", str(tmp_path / "res"), "--no-progress", "--dry-run"]
    CALLS["gen"] = 0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 run(s) planned and checked, 2 to generate" in out and "plain-b1" in out
    assert CALLS["gen"] == 0 and not (tmp_path / "res").exists()
    run(s, tmp_path / "res", decoders=["plain"])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 to generate" in out and "stored" in out
    bad = make(tmp_path, decoders=["  - {name: nucleus, label: bad, params: {p: 1.7}}"], name="b.yaml")
    assert main(["run", "--suite", bad.path, "--out", str(tmp_path / "r2"), "--dry-run"]) == 2


def test_unreachable_dataset_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    from tmbench.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = tmp_path / "h.yaml"
    p.write_text(BASE.format(desc="a", new=4, decoders="  - {name: plan_argmax}",
                             metrics="  - {name: plan_len}").replace(
        "{source: bbc, split: test,", "{source: hf, path: no-such-org/no-such-dataset, split: test,"))
    assert main(["run", "--suite", str(p), "--out", str(tmp_path / "res"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-org/no-such-dataset" in err[0] and "Offline" in err[0]
    assert not (tmp_path / "res").exists()


def test_tm_overflow_is_refused_at_plan_time_like_ar():
    """One context policy: a TM run whose prompt + new tokens + forwarded tail exceed the
    context is refused (the tail counts K - 1 slots under readout `next`)."""
    from helpers import Chars, tiny_tm
    from tmbench.plan import check_context, positions_needed

    tm = tiny_tm(tokenizer=Chars())  # 64 positions
    assert positions_needed(tm, 20, 30, {"tail_len": 16}) == 20 + 30 - 1 + 15
    check_context(tm, "tiny-tm", "tm", 20, 30, {"tail_len": 16})  # 64 positions: fits
    with pytest.raises(ValueError, match="needs 65 positions, more than the model's context of 64"):
        check_context(tm, "tiny-tm", "tm", 20, 30, {"tail_len": 17})


@pytest.mark.slow
def test_full_suite_plans_on_every_model_it_names(monkeypatch):
    """tasks/full.yaml (256 new tokens) fits every model it names; its WikiText prompts need the
    hub, so BBC test documents stand in for them here."""
    import functools

    import tmbench.data.prompts as prompts_mod
    from tmbench.data.bbc import load_bbc
    from tmbench.model_specs import load_model_spec
    from tmbench.plan import plan_suite

    monkeypatch.setattr(prompts_mod, "load_documents",
                        lambda spec: [(a.id, a.text) for a in load_bbc("test")])
    suite = load_suite("full")
    plan = plan_suite(suite, functools.cache(load_model_spec), limit=64, log=lambda *a: None)
    assert {p.model for p in plan.runs} == set(suite.models)
