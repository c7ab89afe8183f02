"""Sweeps in suite decoder entries: one ordinary entry per point, the run keys of hand-written
entries, labels from the values, and a rerun that skips every point."""

import pytest

from tmbench.plan import plan_runs
from tmbench.runner import Runner
from tmbench.suites import load_suite
from tmbench.sweeps import expand_sweep, point_label

HEAD = """name: sw
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 8}
max_new_tokens: 3
batch_size: 2
models: [toy-random]
metrics: [{name: repetition, params: {ns: [2]}}]
decoders:
"""
SWEEP = HEAD + "  - {name: nucleus, sweep: {p: [0.5, 0.9], temperature: [0.7, 1.0]}}\n"
BY_HAND = HEAD + "".join(
    f"  - {{name: nucleus, label: h{i}, params: {{p: {p}, temperature: {t}}}}}\n"
    for i, (p, t) in enumerate([(0.5, 0.7), (0.5, 1.0), (0.9, 0.7), (0.9, 1.0)]))


def load(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return load_suite(str(p))


def test_two_parameters_give_the_cartesian_product_first_outermost():
    got = expand_sweep({"name": "nucleus", "params": {"repetition_penalty": 1.2},
                        "sweep": {"p": [0.5, 0.9], "temperature": [0.7, 1.0]}}, "s")
    assert [e["label"] for e in got] == ["nucleus-p0.5-temperature0.7", "nucleus-p0.5-temperature1.0",
                                         "nucleus-p0.9-temperature0.7", "nucleus-p0.9-temperature1.0"]
    assert got[1]["params"] == {"repetition_penalty": 1.2, "p": 0.5, "temperature": 1.0}
    assert all("sweep" not in e for e in got)
    assert expand_sweep({"name": "greedy"}, "s") == [{"name": "greedy"}]


def test_label_rule_and_templates():
    assert point_label("tm", {"alpha_max": 0.9, "tail_len": 16}) == "tm-alpha_max0.9-tail_len16"
    assert point_label("tm-a{alpha_max}-k{tail_len}", {"alpha_max": 1.0, "tail_len": 1}) == "tm-a1.0-k1"
    assert point_label("x", {"feed": "nearest", "trace": True}) == "x-feednearest-tracetrue"
    got = expand_sweep({"name": "maturation", "label": "tm-a{alpha_max}",
                        "sweep": {"alpha_max": [0.5, 0.75]}}, "s")
    assert [e["label"] for e in got] == ["tm-a0.5", "tm-a0.75"]


@pytest.mark.parametrize("entry,needle", [
    ({"name": "n", "sweep": {"p": []}}, "non-empty list"),
    ({"name": "n", "sweep": {"p": 0.9}}, "non-empty list"),
    ({"name": "n", "sweep": []}, "non-empty mapping"),
    ({"name": "n", "sweep": {"p": [0.9, 0.9]}}, "duplicates"),
    ({"name": "n", "sweep": {"p": [[0.9]]}}, "numbers, strings"),
    ({"name": "n", "params": {"p": 0.5}, "sweep": {"p": [0.9]}}, "both in params"),
    ({"name": "n", "label": "n-{q}", "sweep": {"p": [0.9]}}, "unknown: ['q']"),
    ({"name": "n", "label": "n-{p}", "sweep": {"p": [0.9], "t": [1.0]}}, "missing: ['t']"),
])
def test_malformed_sweeps_name_the_problem(entry, needle):
    with pytest.raises(ValueError, match="s.sweep") as e:
        expand_sweep(entry, "s")
    assert needle in str(e.value)


def test_sweep_plans_one_run_per_point_with_the_hand_written_run_keys(tmp_path):
    sweep, by_hand = load(tmp_path, SWEEP), load(tmp_path, BY_HAND, "h.yaml")
    assert [d.label for d in sweep.decoders] == ["nucleus-p0.5-temperature0.7",
                                                 "nucleus-p0.5-temperature1.0",
                                                 "nucleus-p0.9-temperature0.7",
                                                 "nucleus-p0.9-temperature1.0"]
    quiet = {"progress": False, "log": lambda *a: None}
    a = Runner(sweep, tmp_path / "a", **quiet).plan()
    b = Runner(by_hand, tmp_path / "b", **quiet).plan()
    keys = [r["key"] for r in a if r["key"]]
    assert len(keys) == 4 and len(set(keys)) == 4
    assert keys == [r["key"] for r in b if r["key"]]


def test_running_a_sweep_then_rerunning_skips_every_point(tmp_path):
    suite = load(tmp_path, SWEEP)
    quiet = {"progress": False, "log": lambda *a: None}
    first = Runner(suite, tmp_path / "runs", **quiet).run()
    assert len(first.done) == 5  # four points and the human row
    again = Runner(load(tmp_path, SWEEP), tmp_path / "runs", **quiet).run()
    assert not again.done and len(again.skipped) == 5


def test_a_point_that_repeats_an_entry_is_refused(tmp_path):
    text = SWEEP + "  - {name: nucleus, label: mine, params: {p: 0.9, temperature: 1.0}}\n"
    with pytest.raises(ValueError, match="'nucleus-p0.9-temperature1.0' and 'mine'|"
                                         "'mine' and 'nucleus-p0.9-temperature1.0'"):
        plan_runs(load(tmp_path, text), None, None, None, log=lambda *a: None)


def test_sweep_in_a_suite_names_the_entry(tmp_path):
    with pytest.raises(ValueError, match=r"decoders\[0\]\.sweep: p: has duplicates"):
        load(tmp_path, HEAD + "  - {name: nucleus, sweep: {p: [0.9, 0.9]}}\n")


def test_a_tm_decoding_field_sweeps_like_any_parameter(tmp_path):
    text = HEAD.replace("models: [toy-random]", "models: [toy-random, tm-smollm2]") + (
        '  - {name: maturation, label: "tm-a{alpha_max}-k{tail_len}", models: [tm-smollm2],\n'
        "     params: {feed: nearest}, sweep: {alpha_max: [0.5, 0.9], tail_len: [1, 4]}}\n")
    plans = plan_runs(load(tmp_path, text), None, None, None, log=lambda *a: None)
    got = {p.decoder.label: (p.params["alpha_max"], p.params["tail_len"], p.params["feed"])
           for p in plans}
    assert got == {"tm-a0.5-k1": (0.5, 1, "nearest"), "tm-a0.5-k4": (0.5, 4, "nearest"),
                   "tm-a0.9-k1": (0.9, 1, "nearest"), "tm-a0.9-k4": (0.9, 4, "nearest")}
    assert {p.model for p in plans} == {"tm-smollm2"}
