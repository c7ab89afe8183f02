"""Leaderboard rows, cells and rendering on hand-made run records (no models are loaded)."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from tmbench.leaderboard import build_tables, headline, to_markdown, write_leaderboards
from tmbench.results import SCHEMA_VERSION, run_dir, run_key, write_record

TMBENCH = Path(__file__).resolve().parents[1] / "tmbench"


def score(value, per_sample=None, meta=None, hib=None, metric="test"):
    return {"value": value, "per_sample": per_sample, "higher_is_better": hib, "meta": meta or {},
            "metric": metric}


def make_record(metrics, *, model="m1", weights="w1", decoder="nucleus", label="nucleus-0.95",
                params=None, defaults=None, seed=0, n=4, max_new_tokens=8, batch_size=4,
                order=None, judges=None, metric_runs=None, dtype="float32"):
    """A minimal record; ``metrics(order, seed)`` gives its scores for samples in ``order``."""
    order = list(range(n)) if order is None else order
    decoder_spec = {"name": decoder, "label": label, "params": params or {"p": 0.95}}
    if defaults is not None:
        decoder_spec["defaults"] = defaults
    spec = {"suite": {"name": "t", "version": 1}, "prompts": {"hash": f"set{n}", "n": n, "samples_per_prompt": 1},
            "model": {"name": model, "kind": "ar", "content_hash": weights}, "decoder": decoder_spec,
            "seed": seed, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
            "dtype": dtype, "device_type": "cpu"}
    samples = [{"prompt_index": i, "seed": seed, "prompt_text": f"prompt {i}", "prompt_ids": [],
                "text": f"text {i}", "token_ids": [], "reference_text": f"ref {i}", "info": {}} for i in order]
    # every field a record carries (tmbench.schema checks them on reading)
    return {"spec": spec, "metrics": metrics(order, seed), "samples": samples,
            "metric_runs": metric_runs or {},
            "judges": judges or {"j": {"name": "j", "content_hash": "jh"}}, "created": f"2026-01-01T00:00:0{seed}Z",
            "environment": {"fingerprint": {"id": "fp"}},
            "protocol": {"rng": "one torch.Generator per prompt, seeded from seed and prompt position"},
            "row": {"model": model, "decoder": label}, "timings": {"generation_s": 0.0, "scoring_s": 0.0},
            "skipped_metrics": {}, "notes": [], "decode_info": {}}


def write(root, *records):
    for rec in records:
        key = run_key(rec["spec"])
        write_record(run_dir(root, "t", 1, key) / "record.json",
                     {"schema_version": SCHEMA_VERSION, "key": key, **rec})
    return root


def per_prompt(fn, key="len"):
    """Scores whose per-sample value is ``fn(prompt_index, seed)``; the record value is a
    deliberately different number (a pooled figure must not be averaged into the cell)."""
    return lambda order, seed: {key: score(-1.0, [fn(i, seed) for i in order])}


def table(root, **kw):
    return build_tables(root, warn=lambda m: pytest.fail(m), **kw)[0]


def by_decoder(t):
    return {r.decoder: r for r in t.rows}


def test_rows_pool_only_comparable_records(tmp_path):
    ones = per_prompt(lambda i, s: 1.0)
    root = write(tmp_path,
                 make_record(ones, n=16, seed=0), make_record(ones, n=16, seed=1),
                 make_record(per_prompt(lambda i, s: 2.0), n=4, seed=0),
                 make_record(ones, n=16, seed=0, max_new_tokens=32),
                 make_record(ones, n=16, seed=0, weights="w2"),
                 make_record(ones, n=16, seed=2, judges={"j": {"name": "j", "content_hash": "other"}}))
    rows = by_decoder(table(root))
    assert set(rows) == {"nucleus-0.95", "nucleus-0.95 (n=4)", "nucleus-0.95 (max_new_tokens=32)",
                         "nucleus-0.95 (weights=w2)", "nucleus-0.95 (judge j=other)"}
    main = rows["nucleus-0.95"]
    assert main.seeds == [0, 1] and main.cells["len"].n == 16 and main.cells["len"].mean == 1.0
    small = rows["nucleus-0.95 (n=4)"]
    assert small.cells["len"].n == 4 and small.cells["len"].mean == 2.0
    md = to_markdown(table(root))
    assert "| m1 | nucleus-0.95 (n=4) | " in md and "| 4 | 8 |" in md  # n and max_new_tokens columns


def test_records_scored_with_other_metric_params_are_a_separate_row(tmp_path):
    """The same run scored with another judge window (a number-changing parameter) never pools
    with the others; a speed-only parameter (batch_tokens) does not split the row."""
    def runs(window, batch_tokens=2048):
        params = {"judge": "j", "window": window, "stride": 512, "batch_tokens": batch_tokens}
        return {f"gen_ppl[window={window}]": {"name": "gen_ppl", "params": params, "status": "ok"}}

    root = write(tmp_path,
                 make_record(per_prompt(lambda i, s: 5.0), seed=0, metric_runs=runs(1024)),
                 make_record(per_prompt(lambda i, s: 5.0), seed=1, metric_runs=runs(1024, 64)),
                 make_record(per_prompt(lambda i, s: 9.0), seed=2, metric_runs=runs(64)))
    rows = by_decoder(table(root))
    assert set(rows) == {"nucleus-0.95", "nucleus-0.95 (gen_ppl window=64)"}
    assert rows["nucleus-0.95"].seeds == [0, 1] and rows["nucleus-0.95"].cells["len"].mean == 5.0
    assert rows["nucleus-0.95 (gen_ppl window=64)"].cells["len"].mean == 9.0


def test_a_row_in_another_dtype_says_so_and_judge_dtype_splits(tmp_path):
    ones = per_prompt(lambda i, s: 1.0)
    bf16_judge = {"j": {"name": "j", "content_hash": "jh", "dtype": "bfloat16"}}
    root = write(tmp_path, make_record(ones, seed=0), make_record(ones, seed=1, judges=bf16_judge),
                 make_record(ones, label="greedy", decoder="greedy", params={}),
                 make_record(ones, label="best-of-4", decoder="best_of_n", params={"n": 4},
                             dtype="bfloat16"))
    assert set(by_decoder(table(root))) == {"nucleus-0.95", "nucleus-0.95 (judge j dtype=bfloat16)", "greedy",
                                            "best-of-4 (dtype=bfloat16)"}


def test_cell_mean_and_interval_come_from_per_prompt_means(tmp_path):
    values = {0: [1, 2, 3, 4], 1: [3, 4, 5, 6]}  # by seed, by prompt
    root = write(tmp_path, make_record(per_prompt(lambda i, s: values[s][i]), seed=0),
                 make_record(per_prompt(lambda i, s: values[s][i]), seed=1, order=[3, 1, 0, 2]))
    cell = table(root).rows[0].cells["len"]
    assert cell.per_prompt == {0: 2.0, 1: 3.0, 2: 4.0, 3: 5.0}  # aligned by prompt_index, not position
    assert cell.mean == 3.5 and cell.lo <= 3.5 <= cell.hi and cell.n == 4 and cell.seeds == 2


def test_interval_does_not_depend_on_other_rows(tmp_path):
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(2, 12))

    def rec(model):
        return make_record(per_prompt(lambda i, s: float(vals[s][i])), model=model, n=12)

    alone = table(write(tmp_path / "a", rec("b-model"))).rows[0].cells["len"]
    t = table(write(tmp_path / "b", rec("a-model"), rec("b-model")))
    with_other = {r.model: r for r in t.rows}["b-model"].cells["len"]
    assert (alone.lo, alone.hi) == (with_other.lo, with_other.hi)


def test_pooled_perplexity_is_the_token_weighted_ratio(tmp_path):
    nll = {0: [2.0, 4.0, 6.0, 8.0], 1: [1.0, 1.0, 1.0, 1.0]}
    tokens = {0: [1, 2, 3, 4], 1: [1, 1, 1, 1]}

    def metrics(order, seed):
        a, b = [nll[seed][i] for i in order], [tokens[seed][i] for i in order]
        per = [math.exp(x / y) for x, y in zip(a, b)]
        meta = {"per_sample_nll": a, "per_sample_tokens": b}
        return {"gen_ppl[agg=pooled,judge=j]": score(math.exp(sum(a) / sum(b)), per, meta),
                "gen_ppl[agg=sample-mean,judge=j]": score(float(np.mean(per)), per, meta)}

    root = write(tmp_path, make_record(metrics, seed=0), make_record(metrics, seed=1, order=[2, 0, 3, 1]))
    cells = table(root).rows[0].cells
    cell = cells["gen_ppl[agg=pooled,judge=j]"]
    assert cell.kind == "ratio" and cell.mean == pytest.approx(math.exp(24 / 14))
    assert cell.lo < cell.mean < cell.hi
    # a key that names its own aggregation keeps it: mean of per-prompt means of exp(NLL_i / T_i)
    mean = cells["gen_ppl[agg=sample-mean,judge=j]"]
    expect = np.mean([(math.exp(nll[0][i] / tokens[0][i]) + math.e) / 2 for i in range(4)])
    assert mean.kind == "prompt" and mean.mean == pytest.approx(expect)


def test_corpus_level_metric_shows_mean_and_seed_spread(tmp_path):
    def metrics(order, seed):
        return {"distinct[n=2,scope=corpus,unit=word]": score(0.5 + 0.2 * seed, None, hib=True)}

    root = write(tmp_path, make_record(metrics, seed=0), make_record(metrics, seed=1))
    t = table(root)
    cell = t.rows[0].cells["distinct[n=2,scope=corpus,unit=word]"]
    assert cell.mean == pytest.approx(0.6) and cell.spread == pytest.approx(0.2 / math.sqrt(2))
    assert "0.600 ± 0.141" in to_markdown(t)


def test_headline_columns_select_by_family_and_preferred_params():
    new = ["rep[n=2,unit=wordpunct]", "rep[n=2,unit=word]", "rep[n=2,unit=token]",
           "self_bleu[level=corpus,n=4,refs=all,unit=wordpunct]",
           "self_bleu[level=sentence,n=4,refs=all,unit=wordpunct]",
           "self_bleu[level=sentence,n=4,refs=prompt,unit=wordpunct]",
           "heldout_ppl[corpus=bbc-test,unit=token]", "heldout_ppl[corpus=bbc-test,unit=wordpunct]",
           "heldout_ppl[corpus=bbc-test,unit=byte]", "bits_per_byte[corpus=bbc-test]",
           "gen_ppl[judge=j]", "gen_ppl[agg=pooled,judge=j]", "gen_ppl[judge=k]"]
    assert headline(new) == ["rep[n=2,unit=wordpunct]", "self_bleu[level=sentence,n=4,refs=all,unit=wordpunct]",
                             "gen_ppl[agg=pooled,judge=j]", "gen_ppl[judge=k]",
                             "heldout_ppl[corpus=bbc-test,unit=wordpunct]", "bits_per_byte[corpus=bbc-test]"]
    old = ["heldout_ppl[corpus=c,unit=token]", "heldout_ppl[corpus=c,unit=word]", "rep[n=2,unit=word]"]
    assert headline(old) == ["rep[n=2,unit=word]", "heldout_ppl[corpus=c,unit=word]"]


def test_a_suite_chooses_its_headline_by_key_or_short_name_at_most_12():
    cols = ["rep[n=2,unit=wordpunct]", "compression_ratio[scope=corpus]", "my_plugin[x=1]",
            "gen_ppl[agg=pooled,judge=j]", "gen_ppl[agg=pooled,judge=k]", "mauve[c=5,featurizer=f]"]
    # a short name, a full key, a plugin's key; "gen-ppl" names both judges' columns
    assert headline(cols, ["compression", "my_plugin[x=1]", "gen-ppl", "Rep-2"]) == [
        "compression_ratio[scope=corpus]", "my_plugin[x=1]", "gen_ppl[agg=pooled,judge=j]",
        "gen_ppl[agg=pooled,judge=k]", "rep[n=2,unit=wordpunct]"]
    assert headline(cols, ["gen-ppl (judge=k)"]) == ["gen_ppl[agg=pooled,judge=k]"]
    assert headline(cols, ["nothing-here"]) == headline(cols)  # nothing matches: the default
    many = [f"plugin_{i}" for i in range(30)]  # no default column: the table's first 12
    assert headline(many) == many[:12] and headline(many, many[::-1]) == many[::-1][:12]


def test_short_names_are_unique_and_the_glossary_names_the_full_keys(tmp_path):
    from tmbench.glossary import short_names
    from tmbench.render import to_csv

    names = short_names(["rep[n=2,unit=wordpunct]", "rep[n=2,unit=token]", "mauve[c=5,featurizer=f]",
                         "self_bleu[level=sentence,n=4,refs=all,unit=wordpunct]",
                         "coherence[def=judge-logprob,judge=j]", "bits_per_byte[corpus=c]",
                         "heldout_ppl[corpus=c,unit=word]", "loop[n=3,unit=wordpunct]",
                         "distinct[n=2,scope=corpus,unit=wordpunct]", "gen_ppl[agg=pooled,judge=j]",
                         "gen_ppl[agg=pooled,judge=k]", "plugin[a=1]"])
    assert list(names.values()) == ["Rep-2", "Rep-2 (tok)", "MAUVE", "Self-BLEU", "coherence (judge)",
                                    "bits/byte", "held-out ppl", "Loop", "Dist-2", "gen-ppl (judge=j)",
                                    "gen-ppl (judge=k)", "plugin[a=1]"]

    def metrics(order, seed):
        return {"rep[n=2,unit=word]": score(0.1, [0.1 + i for i in order], hib=False),
                "my_plugin[x=1]": score(0.5, [0.5] * len(order), {"definition": "a plugin's own words"})}

    root = write(tmp_path / "runs", make_record(metrics, seed=0))
    t = table(root)
    assert "my_plugin[x=1]" not in to_markdown(t).split("Columns:")[0]  # not a default column
    t.facts["headline"] = ["Rep-2", "my_plugin[x=1]"]  # what a suite's headline: sets
    md = to_markdown(t)
    head = next(line for line in md.splitlines() if line.startswith("| model"))
    assert "| Rep-2 ↓ |" in head and "| my_plugin[x=1] |" in head and "rep[n=2" not in head
    assert "- **Rep-2 ↓**: " in md and "lower is better" in md and "`rep[n=2,unit=word]`" in md
    assert "- **my_plugin[x=1]**: a plugin's own words; no better direction; `my_plugin[x=1]`" in md
    csv_head, first = to_csv(t).splitlines()[:2]
    assert "metric,metric_name,direction" in csv_head and '"rep[n=2,unit=word]",Rep-2,↓' in first
    page = next(p for p in write_leaderboards(root, tmp_path / "lb") if p.suffix == ".html").read_text()
    assert 'title="rep[n=2,unit=word]: 1 - unique / total 2-grams' in page and ">Rep-2 ↓</th>" in page


def test_mauve_cells_show_n_spread_and_reliability(tmp_path):
    def mauve(meta):
        return lambda order, seed: {"mauve[c=5,featurizer=f]": score(0.85, None, meta, hib=True, metric="mauve")}

    root = write(tmp_path,
                 make_record(mauve({"n": 16, "buckets": 2, "std": 0.05, "min": 0.8, "max": 0.9}), label="small"),
                 make_record(mauve({"n": 800, "reliable": True, "std": 0.01, "min": 0.84, "max": 0.86}), label="big"),
                 make_record(mauve({"n": 800, "reliable": False}), label="flagged"),
                 make_record(mauve({"n_p_human": 600, "n_q_model": 700}), label="old-meta"))
    t = table(root)
    md = to_markdown(t)
    rows = by_decoder(t)
    text = {d: md.split(f"| m1 | {d} |", 1)[1].split("\n", 1)[0] for d in rows}
    assert "0.850 (n=16, k-means sd 0.050) †" in text["small"]
    assert "(n=800, k-means sd 0.010)" in text["big"] and "†" not in text["big"]
    assert "†" in text["flagged"] and "n=600" in text["old-meta"] and "†" not in text["old-meta"]
    assert "\n`†` unreliable" in md


def test_self_judged_cells_are_marked(tmp_path):
    def metrics(self_judged):  # judge identity only (an old record), and meta that says so
        return lambda order, seed: {
            "gen_ppl[judge=m1]": score(5.0, [5.0] * len(order)),
            "coherence[def=judge-logprob,judge=m1]": score(-1.0, [-1.0] * len(order),
                                                            {"self_judged": self_judged})}

    same = {"m1": {"name": "m1", "content_hash": "w1"}}
    root = write(tmp_path, make_record(metrics(True), judges=same),
                 make_record(metrics(False), model="m2", weights="w2", judges=same))
    t = table(root)
    rows = {r.model: r for r in t.rows}
    assert all("self_judged" in c.flags for c in rows["m1"].cells.values())
    assert not any(c.flags for c in rows["m2"].cells.values())
    md = to_markdown(t)
    assert md.split("| m1 |", 1)[1].split("\n")[0].count("§") == 2
    assert "`§` self-judged" in md


def test_caption_names_common_random_numbers_and_row_sizes(tmp_path):
    md = to_markdown(table(write(tmp_path, make_record(per_prompt(lambda i, s: 1.0)))))
    assert "common random numbers" in md and "nucleus-0.95 and typical-0.95" in md
    head = next(line for line in md.splitlines() if line.startswith("| model"))
    assert head.startswith("| model | decoder | params | seeds | n | max_new_tokens |")


def test_params_are_rendered_from_the_recorded_defaults(tmp_path):
    one = per_prompt(lambda i, s: 1.0)
    params = {"p": 0.95, "temperature": 1.0}
    root = write(tmp_path,
                 make_record(one, label="a", params=params, defaults={"p": 0.9, "temperature": 1.0}),
                 make_record(one, label="b", params=params),  # no defaults recorded: show all
                 make_record(one, label="c", decoder="not_installed_plugin", params=params))
    md = to_markdown(table(root))
    assert "| m1 | a | p=0.95 |" in md
    assert "| m1 | b | p=0.95, temperature=1.0 |" in md
    assert "| m1 | c | p=0.95, temperature=1.0 |" in md


def test_paired_comparison_only_against_the_same_setup(tmp_path):
    vals = per_prompt(lambda i, s: float(i))
    root = write(tmp_path, make_record(vals, decoder="greedy", label="greedy", n=16),
                 make_record(vals, n=4), make_record(vals, n=16))
    rows = by_decoder(table(root))
    assert rows["nucleus-0.95"].reference == "m1 / greedy"
    assert rows["nucleus-0.95 (n=4)"].reference is None and not rows["nucleus-0.95 (n=4)"].paired


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_table_modules_import_one_way():
    """results -> cells -> aggregate -> render -> leaderboard / report, with no import back up (also not
    inside functions), and no live registry."""
    order = ["tmbench.results", "tmbench.cells", "tmbench.aggregate", "tmbench.render",
             "tmbench.leaderboard", "tmbench.report"]
    for i, mod in enumerate(order):
        got = {m for m in _imports(TMBENCH / f"{mod.split('.')[1]}.py") if m.startswith("tmbench.")}
        later = set(order[i + 1:]) | ({"tmbench.leaderboard"} if mod == "tmbench.report" else set())
        assert not got & later, f"{mod} imports {sorted(got & later)}"
        assert "tmbench.registry" not in got, f"{mod} reads the live registry"


def test_html_table_is_explorable_and_self_contained(tmp_path):
    def metrics(order, seed):
        return {"rep[n=2,unit=word]": score(0.1, [0.1 + i for i in order], hib=False),
                "seq_rep[n=2,unit=word]": score(0.2, [0.2] * len(order), hib=False)}

    root = write(tmp_path / "runs", make_record(metrics, seed=0), make_record(metrics, seed=1))
    page = next(p for p in write_leaderboards(root, tmp_path / "lb") if p.suffix == ".html").read_text()
    assert "<script>" in page and "src=" not in page and "http" not in page
    assert 'data-col="rep[n=2,unit=word]"' in page and 'data-filter="model"' in page
    assert 'data-filter="decoder"' in page and "data-toggle" in page
    assert 'class="x"' in page  # the non-headline column, hidden until toggled
    assert 'title="mean of 4 per-prompt means (2 seeds averaged per prompt); 95% bootstrap CI' in page


def test_time_rows_sum_runs_per_machine_and_total():
    from tmbench.render import time_html, time_markdown, time_rows

    def rec(fp, model, dec, gen, sc, load=None):
        t = {"generation_s": gen, "scoring_s": sc} | ({} if load is None else {"load_s": load})
        return {"environment": {"fingerprint": {"id": fp}}, "timings": t,
                "spec": {"model": {"name": model}, "decoder": {"label": dec}}}

    rows = time_rows([rec("m1", "a", "greedy", 10.0, 2.0, 1.0), rec("m1", "a", "greedy", 30.0, 6.0, 0.0),
                      rec("m1", "b", "nucleus", 20.0, 10.0), rec("m2", "a", "greedy", 5.0, 5.0, 0.5)])
    by = {(r["machine"], r["model"], r["decoder"]): r for r in rows}
    a = by[("m1", "a", "greedy")]
    assert (a["runs"], a["generation_s"], a["scoring_s"], a["load_s"], a["share"]) == (2, 40.0, 8.0, 1.0, 0.2)
    assert by[("m1", "b", "nucleus")]["load_s"] is None  # an older record: load inside scoring
    tot = by[("m1", "all", "")]
    assert (tot["runs"], tot["generation_s"], tot["scoring_s"], tot["load_s"]) == (3, 60.0, 18.0, None)
    assert tot["share"] == 0.3
    assert by[("m2", "all", "")]["share"] == 1.0
    md = time_markdown(rows)
    assert "| m1 | a | greedy | 2 | 40.0 | 8.0 | 1.0 | 0.200 |" in md
    assert "| m1 | b | nucleus | 1 | 20.0 | 10.0 | - | 0.500 |" in md
    assert "| m1 | **all** |  | 3 | 60.0 | 18.0 | - | 0.300 |" in md
    assert "<td>m2</td><td>a</td><td>greedy</td><td>1</td><td>5.0</td><td>5.0</td><td>0.5</td><td>1.000</td>" in time_html(rows)


def test_twin_differences_pair_a_tm_row_with_the_twins_greedy(tmp_path):
    """Each TM row minus ar-smollm2 greedy, prompt by prompt: a constant per-prompt gap of
    0.25 on seq-rep-2 gives a difference of exactly 0.25 with a zero-width interval."""
    from tmbench.leaderboard import twin_differences

    key = "seq_rep[n=2,unit=wordpunct]"
    base = per_prompt(lambda i, s: 0.1 * i, key)
    more = per_prompt(lambda i, s: 0.1 * i + 0.25, key)
    root = write(tmp_path, make_record(base, model="ar-smollm2", decoder="greedy",
                                       label="greedy", n=8),
                 make_record(more, model="tm-smollm2", weights="w2", decoder="maturation",
                             label="tm-a0.9", params={"alpha_max": 0.9}, n=8))
    t = table(root)
    lines = twin_differences(t, [r for r in t.rows if r.model == "tm-smollm2"])
    row = [line for line in lines if line.startswith("| tm-smollm2 |")]
    assert row == ["| tm-smollm2 | tm-a0.9 | 0.250* [0.250, 0.250] | – | – | – | – |"]
    assert twin_differences(t, [r for r in t.rows if r.model == "ar-smollm2"]) == []


def test_a_tm_row_whose_tail_fails_a_health_threshold_is_marked(tmp_path):
    from tmbench.render import UNHEALTHY, tail_failures

    def health(copy, readable, norm):
        return lambda order, seed: {
            "tail_copy_rate": score(copy, [copy] * len(order), metric="dynamics", hib=False),
            "tail_readability": score(readable, [readable] * len(order), metric="dynamics", hib=True),
            "tail_norm_ratio": score(norm, [norm] * len(order), metric="dynamics")}

    root = write(tmp_path,
                 make_record(health(0.95, 0.02, 16.0), decoder="maturation", label="collapsed",
                             params={"alpha_max": 0.5}),
                 make_record(health(0.30, 0.50, 2.0), decoder="maturation", label="healthy",
                             params={"alpha_max": 0.9}),  # each threshold met at its edge
                 make_record(per_prompt(lambda i, s: 1.0)))  # no tail measured: nothing to say
    t = table(root)
    rows = by_decoder(t)
    assert tail_failures(rows["collapsed"]) == ["tail_readability", "tail_copy_rate", "tail_norm_ratio"]
    assert tail_failures(rows["healthy"]) == [] and tail_failures(rows["nucleus-0.95"]) == []
    md = to_markdown(t)
    assert f"| collapsed {UNHEALTHY} |" in md and "| healthy |" in md
    assert f"`{UNHEALTHY}` unhealthy tail" in md and "tail_copy_rate <= 0.3" in md
    # a table with healthy or unmeasured tails only carries neither mark nor note
    one = write(tmp_path / "b", make_record(health(0.1, 0.9, 1.0), decoder="maturation", label="ok"))
    assert UNHEALTHY not in to_markdown(table(one))


def test_readme_block_shows_only_each_suites_latest_version(tmp_path):
    """Older versions keep their own files; the README shows the version a user would run."""
    from tmbench.leaderboard import readme_block
    from tmbench.runner import Runner
    from tmbench.suites import load_suite

    text = """name: vv
version: {v}
dataset: {{source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}}
max_new_tokens: 3
seeds: [0]
models: [toy-random]
decoders: [{{name: greedy}}]
metrics: [{{name: repetition, params: {{ns: [2], units: [token]}}}}]
"""
    for v in (1, 2):
        p = tmp_path / f"vv{v}.yaml"
        p.write_text(text.format(v=v))
        Runner(load_suite(str(p)), tmp_path / "out", progress=False,
               log=lambda *a: None).run(models=["toy-random"])
    assert {t.version for t in build_tables(tmp_path / "out", "vv")} == {1, 2}
    block = readme_block(tmp_path / "out", "vv")
    assert "### vv v2" in block and "### vv v1" not in block
