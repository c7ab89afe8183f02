"""Agreement with K = 1 as a comparison of two rows: hand-computed cases, which records pair,
the leaderboard column, and the real decoder (alpha_max = 1 is vector-greedy at any K)."""

import copy
import math

import pytest
import torch

from helpers import Chars, tiny_tm
from tmbench.agreement import KEYS, agreement, with_k1_agreement
from tmbench.aggregate import tables_from_records
from tmbench.registry import DECODERS

DEFAULTS = {"tail_len": 16, "alpha_max": 0.75, "trace": False}


def record(tokens, tail_len, *, seed=0, alpha=0.75, trace=False, model="tm", name="maturation",
           label=None, key=None):
    params = {"tail_len": tail_len, "alpha_max": alpha, "trace": trace}
    samples = [{"prompt_index": i, "seed": seed, "prompt_text": "", "prompt_ids": [1],
                "text": "", "token_ids": t, "reference_text": "", "info": {}}
               for i, t in enumerate(tokens)]
    return {"key": key or f"{model}-{name}-{tail_len}-{alpha}-{seed}", "created": "",
            "spec": {"suite": {"name": "s", "version": 1},
                     "prompts": {"hash": "h", "n": len(tokens), "samples_per_prompt": 1},
                     "model": {"name": model, "content_hash": "w"},
                     "decoder": {"name": name, "label": label or f"K{tail_len}-a{alpha}",
                                 "params": params, "defaults": DEFAULTS},
                     "seed": seed, "max_new_tokens": 4, "batch_size": 2, "dtype": "float32",
                     "device_type": "cpu"},
            "samples": samples, "metrics": {}, "judges": {}, "environment": {}}


def test_agreement_by_hand():
    assert agreement([7, 9, 5, 6], [7, 8, 5, 6]) == (0.25, 0.75)
    assert agreement([7, 8, 5, 6], [7, 8, 5, 6]) == (1.0, 1.0)
    assert agreement([4, 4], [9, 4, 4, 4]) == (0.0, 0.5)
    assert agreement([1, 2, 3], [1, 2]) == (2 / 3, 2 / 3)  # the K=1 run stopped early (EOS)
    p, q = agreement([], [1])
    assert math.isnan(p) and math.isnan(q)


def test_pairs_by_seed_and_parameters_but_k():
    tm0 = record([[7, 9, 5, 6], [4, 4]], 16, trace=True)
    k1_0 = record([[7, 8, 5, 6], [9, 4, 4, 4]], 1)
    tm1 = record([[1, 1], [2, 2]], 16, seed=1)
    k1_1 = record([[1, 1], [2, 3]], 1, seed=1)
    other_alpha = record([[7, 8, 5, 6], [4, 4]], 16, alpha=0.5)
    other_model = record([[7, 8, 5, 6], [4, 4]], 16, model="tm2")
    ar = record([[7, 8, 5, 6], [4, 4]], 16, name="greedy")
    recs = [tm0, k1_0, tm1, k1_1, other_alpha, other_model, ar]
    before = copy.deepcopy(recs)
    out = with_k1_agreement(recs)
    assert recs == before  # the records read are not changed
    got = {r["key"]: r["metrics"] for r in out}
    assert got[tm0["key"]][KEYS[0]]["per_sample"] == [0.25, 0.0]
    assert got[tm0["key"]][KEYS[1]]["per_sample"] == [0.75, 0.5]
    assert got[tm0["key"]][KEYS[1]]["value"] == pytest.approx(0.625)
    assert got[tm0["key"]][KEYS[1]]["meta"]["k1_run"] == k1_0["key"]
    assert got[tm1["key"]][KEYS[1]]["per_sample"] == [1.0, 0.5]  # seed 1 pairs with seed 1
    for r in (k1_0, k1_1, other_alpha, other_model, ar):
        assert not set(KEYS) & set(got[r["key"]])


def test_a_records_own_scores_are_kept():
    tm = record([[7, 9]], 16)
    tm["metrics"] = {k: {"value": 0.5, "per_sample": [0.5], "metric": "dynamics"} for k in KEYS}
    (out, _) = with_k1_agreement([tm, record([[7, 8]], 1)])
    assert out["metrics"][KEYS[1]]["value"] == 0.5


def test_leaderboard_column_pools_seeds_per_prompt():
    recs = [record([[7, 9, 5, 6], [4, 4]], 16, label="tm"), record([[7, 8, 5, 6], [9, 4, 4, 4]], 1),
            record([[7, 8, 5, 6], [4, 4]], 16, seed=1, label="tm"),
            record([[7, 8, 5, 6], [9, 4, 4, 4]], 1, seed=1)]
    (table,) = tables_from_records(recs)
    row = next(r for r in table.rows if r.decoder == "tm")
    cell = row.cells["k1_agree[mode=position]"]
    # prompt 0: (0.75 + 1) / 2; prompt 1: (0.5 + 0.5) / 2; then the mean over prompts
    assert cell.per_prompt == {0: 0.875, 1: 0.5} and cell.mean == pytest.approx(0.6875)
    assert cell.n == 2 and cell.seeds == 2
    k1_row = next(r for r in table.rows if r.decoder != "tm")
    assert "k1_agree[mode=position]" not in k1_row.cells


def test_real_decoder_alpha1_agrees_with_k1():
    """alpha_max = 1 commits the argmax of the front prediction at any K (DESIGN 3.3): the
    K = 4 and K = 1 rows agree everywhere."""
    from tmbench.types import prompt_generator

    mat, m = DECODERS.get("maturation"), tiny_tm(tokenizer=Chars())
    prompts = [[5, 6, 7, 8], [9, 10]]

    def run(tail_len, alpha):
        gens = [prompt_generator(0, i) for i in range(len(prompts))]
        res = mat(m, prompts, max_new_tokens=6, generator=gens, tail_len=tail_len,
                  alpha_max=alpha)
        return record(res.tokens, tail_len, alpha=alpha)

    out = with_k1_agreement([run(4, 1.0), run(1, 1.0)])
    assert out[0]["metrics"][KEYS[1]]["per_sample"] == [1.0, 1.0]
    assert out[0]["metrics"][KEYS[0]]["value"] == 1.0
