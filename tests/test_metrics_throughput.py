"""The throughput metric's roofline share on a hand-computed batch, the throughput table's
roofline column and its glossary, and the time-spent table's column of wall time outside
generation and scoring."""

import pytest

from tmbench.aggregate import tables_from_records
from tmbench.metrics.throughput import model_shape, throughput
from tmbench.models.toy import load_toy
from tmbench.render import time_html, time_markdown, time_rows, to_markdown
from tmbench.types import MetricContext, Sample

approx = lambda x: pytest.approx(x, rel=1e-12)  # noqa: E731


def test_model_shape_of_the_toy_llama():
    """hidden 32, 4 heads (head_dim 8), 2 kv heads, 2 layers, MLP 64, vocab 257, untied:
    embeddings 2 x 257 x 32 = 16,448; per layer q 1,024 + k 512 + v 512 + o 1,024 + MLP
    3 x 32 x 64 = 6,144 + 2 norms of 32 = 9,280; final norm 32: 35,040 float32 weights."""
    s = model_shape(load_toy())
    assert s == {"params": 35_040, "weight_bytes": 140_160, "dtype": "float32", "elem_bytes": 4,
                 "layers": 2, "q_dim": 32, "kv_dim": 16}
    assert model_shape(object()) is None  # no torch parameters: no roofline


def _ctx(model, peaks):
    batch = {"start": 0, "size": 2, "steps": 5, "new_tokens": 10, "wall_s": 0.5, "ttft_s": 0.1,
             "batch_info": {}}
    fp = {"id": "fp"} | ({"peaks": peaks} if peaks else {})
    timing = {"batches": [batch], "fingerprint": fp, "peak_memory": {"bytes": 0, "kind": "k"}}
    return MetricContext(model, None, lambda n: None, decode_info={"timing": timing})


def _samples():
    return [Sample(i, 0, "p", list(range(n)), "t", [3] * 5, "r") for i, n in enumerate((10, 12))]


def test_roofline_share_of_a_hand_computed_batch():
    """Two rows, prompts of 10 and 12 tokens (padded to P = 12), 5 steps: steps 2..5 take
    0.5 - 0.1 = 0.4 s at the mean context 12 + 5/2 = 14.5. The toy caches 2 x 2 layers x 16 x
    4 bytes = 256 bytes per position. One step: 2 x 35,040 x 2 + 4 x 2 x 32 x 14.5 x 2 =
    147,584 FLOPs and 140,160 + 2 x 14.5 x 256 = 147,584 bytes (1 FLOP/byte, under the ridge
    1e8 / 1e7 = 10): 4 x 147,584 / 0.4 = 1,475,840 bytes/s over 1e7 = 0.147584, bandwidth.
    Prefill: 2 x 35,040 x 24 + 4 x 2 x 32 x 2 x 12 x 13 / 2 = 1,721,856 FLOPs over 140,160 +
    24 x 256 = 146,304 bytes (11.8 FLOP/byte, over the ridge) in 0.1 s: 0.1721856 of 1e8, compute."""
    model = load_toy()
    out = throughput(_samples(), ctx=_ctx(model, {"flops": {"float32": 1e8}, "bandwidth": 1e7}))
    dec, pre = out["roofline_share[phase=decode]"], out["roofline_share[phase=prefill]"]
    r = dec.meta["roofline"]
    assert (r["flops"], r["bytes"], r["seconds"]) == (4 * 147_584, 4 * 147_584, approx(0.4))
    assert dec.value == approx(0.147584) and dec.meta["bound"] == "bandwidth"
    assert dec.higher_is_better is True and dec.meta["reliable"] is True
    assert (pre.meta["roofline"]["flops"], pre.meta["roofline"]["bytes"]) == (1_721_856, 146_304)
    assert pre.value == approx(0.1721856) and pre.meta["bound"] == "compute"
    # the model's size and dtype are in every throughput score's meta
    assert out["tokens_per_s"].meta["model"]["params"] == 35_040
    # ten times less bandwidth: the same steps would need 1.47 of it, marked unreliable
    slow = throughput(_samples(), ctx=_ctx(model, {"flops": {"float32": 1e7}, "bandwidth": 1e6}))
    assert slow["roofline_share[phase=decode]"].value == approx(1.47584)
    assert slow["roofline_share[phase=decode]"].meta["reliable"] is False
    # no peaks in the fingerprint (an old record), or none for the model's dtype: no share
    assert not any(k.startswith("roofline") for k in throughput(_samples(), ctx=_ctx(model, None)))
    bf16 = {"flops": {"bfloat16": 1e8}, "bandwidth": 1e7}
    assert not any(k.startswith("roofline") for k in throughput(_samples(), ctx=_ctx(model, bf16)))


PEAKS = {"flops": {"float32": 1.2e11, "bfloat16": 3.4e11}, "bandwidth": 2.5e10}


def _record(model, seed, roofline=True):
    fp = {"id": "fp1"} | ({"peaks": PEAKS} if roofline else {})
    metrics = {"tokens_per_s": {"value": 100.0 + seed, "per_sample": None, "higher_is_better": True,
                                "meta": {}, "metric": "throughput"}}
    if roofline:
        bound = "bandwidth" if model == "a" else "compute"
        metrics["roofline_share[phase=decode]"] = {
            "value": 0.25 if model == "a" else 1.5, "per_sample": None, "higher_is_better": True,
            "meta": {"bound": bound, "reliable": model == "a"}, "metric": "throughput"}
    spec = {"suite": {"name": "t", "version": 1}, "prompts": {"hash": "h", "n": 2, "samples_per_prompt": 1},
            "model": {"name": model, "kind": "ar", "content_hash": model}, "seed": seed,
            "decoder": {"name": "greedy", "label": "greedy", "params": {}}, "max_new_tokens": 4,
            "batch_size": 1, "dtype": "float32", "device_type": "cpu"}
    return {"spec": spec, "metrics": metrics, "key": f"{model}{seed}", "created": f"2026-01-0{seed + 1}",
            "samples": [{"prompt_index": i, "seed": seed, "token_ids": [1]} for i in range(2)],
            "environment": {"fingerprint": fp}, "judges": {}, "metric_runs": {}}


def test_the_throughput_table_shows_the_roofline_share_and_explains_it():
    tables = tables_from_records([_record("a", 0), _record("a", 1), _record("b", 0)])
    t = next(t for t in tables if t.fingerprint)
    md = to_markdown(t)
    head = next(line for line in md.splitlines() if line.startswith("| model"))
    assert "roofline ↑" in head  # the short name; the glossary gives the full key
    assert "`roofline_share[phase=decode]`" in md.split("Columns:", 1)[1]
    assert "| a | greedy b1 | defaults | 2 | 2 | 4 | 100.5 ± 0.707 | 0.250 (bandwidth) |" in md
    assert "| 1.500 (compute) † |" in md  # an impossible share is marked
    note = md.split("`roofline_share`:", 1)[1]
    assert "ridge point" in note and "120 GFLOP/s float32, 340 GFLOP/s bfloat16; 25 GB/s" in note
    # records from before the peaks were measured: the table as it was, no column, no note
    old = next(t for t in tables_from_records([_record("a", 0, roofline=False)]) if t.fingerprint)
    assert "roofline" not in to_markdown(old)


def test_the_time_table_gives_wall_time_outside_generation_and_scoring():
    def rec(model, gen, sc, load, wall=None):
        t = {"generation_s": gen, "scoring_s": sc, "load_s": load} | ({} if wall is None else {"wall_s": wall})
        return {"environment": {"fingerprint": {"id": "m1"}}, "timings": t,
                "spec": {"model": {"name": model}, "decoder": {"label": "greedy"}}}

    # other = wall - generation - scoring - load: 20 - 10 - 4 - 1 = 5 and 12 - 8 - 2 - 0 = 2
    rows = time_rows([rec("a", 10.0, 4.0, 1.0, 20.0), rec("a", 8.0, 2.0, 0.0, 12.0),
                      rec("b", 5.0, 1.0, 0.0)])
    by = {r["model"]: r for r in rows}
    assert by["a"]["other_s"] == 7.0 and by["b"]["other_s"] is None and by["all"]["other_s"] is None
    md = time_markdown(rows)
    assert "| machine | model | decoder | runs | generation s | scoring s | load s | other s | score/gen |" in md
    assert "| m1 | a | greedy | 2 | 18.0 | 6.0 | 1.0 | 7.0 | 0.333 |" in md
    assert "| m1 | b | greedy | 1 | 5.0 | 1.0 | 0.0 | - | 0.200 |" in md
    assert "other s: each run's wall time" in md
    assert "<th>other s</th>" in time_html(rows) and "<td>7.0</td>" in time_html(rows)
    # no record with a wall time (the committed ones): no column
    old = time_rows([rec("b", 5.0, 1.0, 0.0)])
    assert "other s" not in time_markdown(old) and "other s" not in time_html(old)


THROUGHPUT_SUITE = """name: tp
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}
max_new_tokens: 4
batch_sizes: [2]
seeds: [0]
models: [toy-random]
decoders: [{name: greedy}]
metrics: [{name: throughput}]
human_row: false
"""


@pytest.mark.slow
def test_a_throughput_run_records_peaks_shares_and_its_wall_time(tmp_path, monkeypatch):
    """End to end on the toy model, with the peaks measurement stubbed (cached in a temporary
    tmbench cache): the fingerprint holds the peaks, the record the roofline shares and its
    wall time, and the leaderboard shows both new columns."""
    from tmbench import peaks
    from tmbench.leaderboard import write_leaderboards
    from tmbench.results import read_record
    from tmbench.runner import Runner
    from tmbench.suites import load_suite

    monkeypatch.setenv("TMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(peaks, "measure", lambda device: {
        "flops_float32": 1e11, "flops_bfloat16": None, "flops_float16": None,
        "copy_bandwidth": 1e10, "read_bandwidth": 1e10})
    (tmp_path / "tp.yaml").write_text(THROUGHPUT_SUITE)
    out = tmp_path / "res"
    Runner(load_suite(str(tmp_path / "tp.yaml")), out, progress=False, log=lambda *a: None).run()
    rec = read_record(next(out.glob("*/v*/*/record.json")))
    assert rec["environment"]["fingerprint"]["peaks"]["bandwidth"] == 1e10
    share = rec["metrics"]["roofline_share[phase=decode]"]
    assert share["meta"]["bound"] in ("bandwidth", "compute") and share["value"] > 0
    t = rec["timings"]
    assert t["wall_s"] >= t["generation_s"] + t["scoring_s"] + t["load_s"]
    md = "".join(p.read_text() for p in write_leaderboards(out, tmp_path / "lb") if p.suffix == ".md")
    assert "roofline_share[phase=decode] ↑" in md and "| other s |" in md
