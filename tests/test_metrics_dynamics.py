"""Dynamics on synthetic maturation traces and on the real decoder's trace."""

import pytest

from helpers import Chars, ctx, sample, tiny_tm
from tmbench.metrics.dynamics import dynamics


class TM:
    kind = "tm"


def _trace(ent20, disp, cos):
    return {"entropy": {"20.0": ent20, "1.0": [[9.0] * len(r) for r in ent20]},
            "displacement": disp, "cos_final": cos, "top": [[1, 2, 3, 4, 5]] * len(ent20)}


def _samples():
    a = _trace([[3.0, 2.0, 1.0], [5.0, 4.0, 3.0]], [[0.5, 0.2, 0.1]] * 2, [[0.1, 0.5, 0.9]] * 2)
    b = _trace([[2.0, 2.0, 2.0]], [[0.3, 0.3, 0.0]], [[0.2, 0.4, 1.0]])
    return [sample("x y", [7, 8], info={"trace": a, "agree_front_argmax": 1.0}),
            sample("z", [9], prompt_index=1, info={"trace": b, "agree_front_argmax": 0.5})]


def test_trace_curves_and_scalars():
    out = dynamics(_samples(), ctx=ctx(model=TM()))
    fin = out["entropy_final[scale=20]"]
    assert fin.per_sample == [2.0, 2.0] and fin.value == 2.0  # (1 + 3) / 2 and 2
    assert out["entropy_first[scale=20]"].per_sample == [4.0, 2.0]
    assert out["entropy_final[scale=1]"].value == 9.0
    # mean over the three committed tokens at each update index
    assert fin.meta["curve"]["mean"] == pytest.approx([10 / 3, 8 / 3, 2.0])
    assert fin.meta["curve"]["n"] == [3, 3, 3]
    assert out["displacement_final"].per_sample == pytest.approx([0.1, 0.0])
    assert out["cos_final_last"].per_sample == pytest.approx([0.9, 1.0])
    assert out["cos_final_first"].meta["curve"]["mean"] == pytest.approx([0.4 / 3, 1.4 / 3, 2.8 / 3])
    assert out["agree_front_argmax"].value == 0.75


def test_non_tm_runs_and_human_row_return_nothing():
    class AR:
        kind = "ar"

    assert dynamics(_samples(), ctx=ctx(model=AR())) == {}
    assert dynamics(_samples(), ctx=ctx(model=None)) == {}


def test_missing_trace_is_noted():
    c = ctx(model=TM())
    out = dynamics([sample("a", [1])], ctx=c)
    assert out == {} and "no maturation trace" in c.notes[0]


def test_real_maturation_decoder_end_to_end():
    """A tiny random TM model through the real decoder: trace keys parse, and TmbenchLM
    scores the TM model by its induced distribution."""
    mat = pytest.importorskip("tmbench.tm.decode", reason="maturation decoder missing")
    import torch

    from tmbench.lm_eval_adapter import TmbenchLM
    from tmbench.types import Sample

    m = tiny_tm(tokenizer=Chars())
    prompts = [[5, 6, 7, 8], [9, 10]]
    params = {"tail_len": 4, "alpha_max": 1.0, "trace": True}
    res = mat.maturation(m, prompts, max_new_tokens=6, generator=torch.Generator().manual_seed(0), **params)
    ss = [Sample(i, 0, "", p, "", t, "", {k: v[i] for k, v in res.info.items()})
          for i, (p, t) in enumerate(zip(prompts, res.tokens))]
    out = dynamics(ss, ctx=ctx(model=m, decode_info={"params": params, "max_new_tokens": 6}))
    assert {"entropy_final[scale=20]", "entropy_final[scale=1]", "displacement_final",
            "cos_final_last", "agree_front_argmax"} <= set(out)
    assert len(out["entropy_final[scale=20]"].meta["curve"]["mean"]) == 4
    lm = TmbenchLM(m, prefix_token_id=0)
    assert lm.max_length == 63
    from lm_eval.api.instance import Instance

    (ll,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("some text",), 0)])
    assert ll < 0
    (text,) = lm.generate_until([Instance("generate_until", {}, ("ab", {"until": ["zzz"], "max_gen_toks": 3}), 0)])
    assert isinstance(text, str) and len(text) == 3  # Chars decodes one letter per token
