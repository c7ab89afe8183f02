"""Baseline decoders on a tiny random Llama: parity with transformers ``generate`` (greedy,
beam), determinism, seed independence of argmax decoders, lengths, EOS, batch consistency,
penalties, parameter errors."""

import copy
import itertools

import pytest
import torch

from helpers import hf_generate, left_pad, tiny_llama
from tmbench.decoders import beam as beam_mod
from tmbench.decoders import contrastive as contrastive_mod
from tmbench.decoders import greedy as greedy_mod
from tmbench.decoders import sampling
from tmbench.models.hf import HFModel
from tmbench.registry import DECODERS

torch.set_num_threads(1)

V, PAD = 97, 0
greedy, beam, contrastive = greedy_mod.greedy, beam_mod.beam, contrastive_mod.contrastive
SAMPLERS = {
    "sample": (sampling.sample, {}),
    "top_k": (sampling.top_k, {"k": 10}),
    "nucleus": (sampling.nucleus, {"p": 0.9}),
    "typical": (sampling.typical, {"p": 0.9}),
    "min_p": (sampling.min_p, {"p": 0.5}),
    "epsilon": (sampling.epsilon, {"epsilon": 0.01}),
    "eta": (sampling.eta, {"eta": 0.01}),
}
ARGMAX = {
    "greedy": (greedy, {}),
    "beam": (beam, {"num_beams": 3}),
    "contrastive": (contrastive, {"k": 4, "alpha": 0.6}),
}
ALL = {**SAMPLERS, **ARGMAX}


@pytest.fixture(scope="module")
def hf():
    return tiny_llama(V, PAD)


def wrap(hf, eos=None) -> HFModel:
    model = HFModel(hf, None, "tiny")
    model.eos_token_id = eos
    return model


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, V, (n,), generator=g).tolist() for n in (5, 9, 2, 7)]


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- parity with transformers ------------------------------------------------------------

@pytest.mark.parametrize("eos", [2, 62, 14])
def test_greedy_equals_generate(hf, prompts, eos):
    ours = greedy(wrap(hf, eos), prompts, max_new_tokens=16, generator=gen(0))
    assert ours == hf_generate(hf, prompts, eos, max_new_tokens=16)


def test_greedy_repetition_penalty_equals_generate(hf):
    # equal lengths: transformers also penalises the left-pad id, which tmbench ignores
    g = torch.Generator().manual_seed(7)
    prompts = [torch.randint(3, V, (6,), generator=g).tolist() for _ in range(3)]
    ours = greedy(wrap(hf, 2), prompts, max_new_tokens=16, generator=gen(0),
                  repetition_penalty=1.3)
    assert ours == hf_generate(hf, prompts, 2, max_new_tokens=16, repetition_penalty=1.3)


BEAM_CASES = [
    # (eos, num_beams, length_penalty, early_stopping); eos 62/14 are frequent, so beams end
    *[(62, nb, lp, es) for nb, lp, es in
      itertools.product([2, 4], [1.0, 0.0, 2.0], [False, True, "never"])],
    (14, 3, 1.0, False), (14, 3, -1.0, True), (2, 4, 1.0, False), (24, 5, 0.5, "never"),
]


@pytest.mark.parametrize("eos,num_beams,length_penalty,early_stopping", BEAM_CASES)
def test_beam_equals_generate(hf, prompts, eos, num_beams, length_penalty, early_stopping):
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping)
    ours = beam(wrap(hf, eos), prompts, max_new_tokens=12, generator=gen(0), **kw)
    assert ours == hf_generate(hf, prompts, eos, max_new_tokens=12, **kw)


@pytest.mark.parametrize("scale,num_beams", [(3.0, 2), (10.0, 4)])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0])
@pytest.mark.parametrize("early_stopping", [False, True, "never"])
def test_beam_equals_generate_when_eos_is_likely(hf, prompts, scale, num_beams, length_penalty,
                                                 early_stopping):
    """A larger EOS row in the LM head makes every prompt fill its hypotheses early, so the
    stop heuristics end the search before max_new_tokens."""
    eosy = copy.deepcopy(hf)
    eosy.lm_head.weight.data[62] *= scale
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping)
    ours = beam(wrap(eosy, 62), prompts, max_new_tokens=12, generator=gen(0), **kw)
    assert ours == hf_generate(eosy, prompts, 62, max_new_tokens=12, **kw)


def test_beam_repetition_penalty_equals_generate(hf):
    g = torch.Generator().manual_seed(8)
    prompts = [torch.randint(3, V, (5,), generator=g).tolist() for _ in range(3)]
    kw = dict(num_beams=3, length_penalty=1.0, early_stopping=False, repetition_penalty=1.5)
    ours = beam(wrap(hf, 62), prompts, max_new_tokens=12, generator=gen(0), **kw)
    assert ours == hf_generate(hf, prompts, 62, max_new_tokens=12, **kw)


# ---- properties of every decoder ---------------------------------------------------------

@pytest.mark.parametrize("name", list(ALL))
def test_lengths_and_no_eos(hf, prompts, name):
    fn, kw = ALL[name]
    out = fn(wrap(hf, None), prompts, max_new_tokens=7, generator=gen(0), **kw)
    assert len(out) == len(prompts)
    assert all(len(r) == 7 and all(0 <= t < V for t in r) for r in out)


@pytest.mark.parametrize("name", list(ALL))
def test_eos_stops_rows(hf, prompts, name):
    """Setting EOS to a token the decoder emits cuts each row just after its first EOS
    (beam search is checked for shape only: EOS changes which beams win)."""
    fn, kw = ALL[name]
    free = fn(wrap(hf, None), prompts, max_new_tokens=10, generator=gen(3), **kw)
    eos = free[0][3]
    out = fn(wrap(hf, eos), prompts, max_new_tokens=10, generator=gen(3), **kw)
    assert out[0][-1] == eos and len(out[0]) <= 4
    for row, ref in zip(out, free):
        assert eos not in row[:-1]
        assert row[-1] == eos or len(row) == 10
        if name != "beam":
            assert row == (ref[: ref.index(eos) + 1] if eos in ref else ref)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampling_is_deterministic_per_seed(hf, prompts, name):
    fn, kw = SAMPLERS[name]
    model = wrap(hf, 2)
    a = fn(model, prompts, max_new_tokens=8, generator=gen(11), **kw)
    b = fn(model, prompts, max_new_tokens=8, generator=gen(11), **kw)
    assert a == b
    c = fn(model, prompts, max_new_tokens=8, generator=gen(12), **kw)
    assert c != a


@pytest.mark.parametrize("name", list(ARGMAX))
def test_argmax_decoders_ignore_the_seed(hf, prompts, name):
    fn, kw = ARGMAX[name]
    model = wrap(hf, 2)
    a = fn(model, prompts, max_new_tokens=8, generator=gen(1), **kw)
    assert fn(model, prompts, max_new_tokens=8, generator=gen(2), **kw) == a
    assert fn(model, prompts, max_new_tokens=8, generator=None, **kw) == a


@pytest.mark.parametrize("name", list(ARGMAX))
def test_batched_equals_one_by_one(hf, prompts, name):
    fn, kw = ARGMAX[name]
    model = wrap(hf, 62)
    batched = fn(model, prompts, max_new_tokens=10, generator=None, **kw)
    single = [fn(model, [p], max_new_tokens=10, generator=None, **kw)[0] for p in prompts]
    assert batched == single


def test_per_prompt_generators_make_rows_independent(hf, prompts):
    model = wrap(hf, 2)
    batched = sampling.nucleus(model, prompts, max_new_tokens=8, p=0.9,
                               generator=[gen(100 + i) for i in range(len(prompts))])
    single = [sampling.nucleus(model, [p], max_new_tokens=8, p=0.9, generator=[gen(100 + i)])[0]
              for i, p in enumerate(prompts)]
    assert batched == single
    with pytest.raises(ValueError, match="one per prompt"):
        sampling.sample(model, prompts, max_new_tokens=2, generator=[gen(0)])
    with pytest.raises(ValueError, match="sampling decoders need generator"):
        sampling.sample(model, prompts, max_new_tokens=2, generator=None)


def test_one_generator_rows_ignore_other_rows_contents(hf, prompts):
    """With one generator, row b's tokens depend on its position, not on the other prompts."""
    model = wrap(hf, 62)
    a = sampling.sample(model, prompts, max_new_tokens=8, generator=gen(9))
    other = [prompts[0], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50], prompts[2], [7]]
    b = sampling.sample(model, other, max_new_tokens=8, generator=gen(9))
    assert (a[0], a[2]) == (b[0], b[2]) and a[1] != b[1]


def test_degenerate_truncation_is_greedy(hf, prompts):
    model = wrap(hf, 2)
    ref = greedy(model, prompts, max_new_tokens=8, generator=None)
    assert sampling.top_k(model, prompts, max_new_tokens=8, generator=gen(5), k=1) == ref
    assert sampling.min_p(model, prompts, max_new_tokens=8, generator=gen(5), p=1.0) == ref
    assert contrastive(model, prompts, max_new_tokens=8, generator=None, alpha=0.0) == ref
    assert contrastive(model, prompts, max_new_tokens=8, generator=None, k=1, alpha=0.9) == ref


def test_sample_follows_the_model_distribution(hf):
    """First-token frequencies over 4000 draws match softmax(logits) (4 sigma)."""
    model = wrap(hf, None)
    prompt = [5, 17, 33]
    probs = model.prefill([prompt]).logits[0].softmax(-1)
    out = sampling.sample(model, [prompt] * 4000, max_new_tokens=1, generator=gen(0),
                          temperature=0.5)
    freq = torch.bincount(torch.tensor([r[0] for r in out]), minlength=V) / 4000
    target = (model.prefill([prompt]).logits[0] / 0.5).softmax(-1)
    assert not torch.allclose(target, probs)
    assert ((freq - target).abs() <= 4 * (target * (1 - target) / 4000).sqrt() + 1e-3).all()


@pytest.mark.parametrize("name", ["greedy", "nucleus", "beam", "contrastive"])
@pytest.mark.parametrize("penalty", [{"repetition_penalty": 3.0}, {"frequency_penalty": 2.0},
                                     {"presence_penalty": 2.0}])
def test_penalties_change_outputs(hf, prompts, name, penalty):
    fn, kw = ALL[name]
    model = wrap(hf, None)
    plain = fn(model, prompts, max_new_tokens=16, generator=gen(4), **kw)
    pen = fn(model, prompts, max_new_tokens=16, generator=gen(4), **kw, **penalty)
    assert pen != plain
    if name == "greedy" and "repetition_penalty" not in penalty:
        # a strong per-occurrence penalty removes the loops this tiny model falls into
        assert all(len(set(r)) == len(r) for r in pen)


# ---- parameter errors --------------------------------------------------------------------

BAD = [
    (sampling.nucleus, {"p": 1.5}, r"p must be a number in \(0, 1\], got 1.5"),
    (sampling.nucleus, {"p": 0.0}, r"p must be a number in \(0, 1\], got 0.0"),
    (sampling.top_k, {"k": 0}, r"k must be an integer >= 1, got 0"),
    (sampling.top_k, {"k": 2.5}, r"k must be an integer >= 1, got 2.5"),
    (sampling.typical, {"p": 1.0}, r"p must be a number in \(0, 1\), got 1.0"),
    (sampling.min_p, {"p": -0.1}, r"p must be a number in \[0, 1\], got -0.1"),
    (sampling.epsilon, {"epsilon": 0}, r"epsilon must be a number in \(0, 1\), got 0"),
    (sampling.eta, {"eta": 1.0}, r"eta must be a number in \(0, 1\), got 1.0"),
    (sampling.sample, {"temperature": 0.0}, r"temperature must be a finite number > 0, got 0.0"),
    (sampling.sample, {"temperature": float("nan")}, r"temperature must be a finite number > 0"),
    (greedy, {"repetition_penalty": 0.0}, r"repetition_penalty must be a finite number > 0"),
    (greedy, {"frequency_penalty": float("inf")}, r"frequency_penalty must be a finite number"),
    (greedy, {"presence_penalty": "x"}, r"presence_penalty must be a finite number, got 'x'"),
    (greedy, {"max_new_tokens": 0}, r"max_new_tokens must be an integer >= 1, got 0"),
    (beam, {"num_beams": 0}, r"num_beams must be an integer >= 1, got 0"),
    (beam, {"early_stopping": "sometimes"}, r"early_stopping must be True, False or 'never'"),
    (beam, {"length_penalty": float("nan")}, r"length_penalty must be a finite number"),
    (contrastive, {"alpha": 1.5}, r"alpha must be a number in \[0, 1\], got 1.5"),
    (contrastive, {"k": 0}, r"k must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("fn,kw,match", BAD)
def test_bad_parameters_raise(hf, fn, kw, match):
    kw = {"max_new_tokens": 4, **kw}
    with pytest.raises(ValueError, match=match):
        fn(wrap(hf, 2), [[5, 6]], generator=gen(0), **kw)


def test_empty_prompts_raise(hf):
    with pytest.raises(ValueError, match="prompts"):
        greedy(wrap(hf, 2), [[5], []], max_new_tokens=2, generator=None)


def test_registry_names_resolve_to_ar_decoders():
    for name in [*ALL]:
        fn = DECODERS.get(name)
        assert fn is ALL[name][0] and fn.model_kind == "ar"


# ---- the hot path's shortcuts --------------------------------------------------------------

def test_argmax_takes_the_first_of_tied_maxima():
    from tmbench.decoders import _loop

    x = torch.randint(0, 3, (64, 500), generator=gen(0)).float()  # many tied maxima per row
    assert torch.equal(_loop.argmax(x), x.argmax(-1))


def test_check_finite_is_exact():
    from tmbench.models.base import NonFiniteError, check_finite

    huge = torch.full((2, 8), 3.0e38)  # finite, but the sum overflows: the exact test decides
    check_finite(huge, "m", "here")
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.zeros(3, 8)
        x[1, 5] = bad
        with pytest.raises(NonFiniteError, match=r"model 'm' produced NaN/inf here in batch rows \[1\]"):
            check_finite(x, "m", "here")


def test_forward_last_is_the_last_position_of_forward(hf, prompts):
    """The LM head on the last position only (logits_to_keep=1) gives that position's logits."""
    from tmbench.models.base import ARModel

    model = wrap(hf)
    ids, mask = left_pad(prompts)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full, hidden, _ = model.forward(ids, mask, pos, None)
        last, hidden_last, _ = model.forward_last(ids, mask, pos, None)
        generic, _, _ = ARModel.forward_last(model, ids, mask, pos, None)
    assert last.shape == (len(prompts), 1, V) and torch.equal(hidden_last, hidden)
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-5)
    assert torch.equal(generic, full[:, -1:])
