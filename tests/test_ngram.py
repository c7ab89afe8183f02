"""The Witten-Bell bigram model: probabilities by hand, the AR contract, decoders on it."""

import math

import pytest
import torch

from helpers import Tok
from tmbench.models.ngram import BigramModel
from tmbench.registry import DECODERS, MODELS


V = 6
DOCS = [[1, 2, 1, 3], [1, 2, 4]]  # bigrams 1-2 (x2), 2-1, 1-3, 2-4; N = 7 tokens


@pytest.fixture
def model():
    return BigramModel(DOCS, V, Tok(), "bigram-test")


def test_probabilities_by_hand(model):
    p1 = [(c + 1) / (7 + V) for c in (0, 3, 2, 1, 1, 0)]  # unigram counts 0, 3, 2, 1, 1, 0
    got = model.probs(torch.tensor([1, 2, 5]))
    # after 1: c(1) = 3 as a context, T(1) = 2 (2 and 3): (c(1, w) + 2 p1(w)) / 5
    want1 = [(c + 2 * p) / 5 for c, p in zip((0, 0, 2, 1, 0, 0), p1)]
    # after 2: c(2) = 2, T(2) = 2 (1 and 4)
    want2 = [(c + 2 * p) / 4 for c, p in zip((0, 1, 0, 0, 1, 0), p1)]
    assert got[0].tolist() == pytest.approx(want1)
    assert got[1].tolist() == pytest.approx(want2)
    assert got[2].tolist() == pytest.approx(p1)  # 5 never a context: the unigram alone
    assert got.sum(-1).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_contract_prefill_step_and_scoring_agree(model):
    out = model.prefill([[1], [3, 2]])
    assert out.logits.shape == (2, V)
    assert out.logits.exp()[0].tolist() == pytest.approx(model.probs(torch.tensor([1]))[0].tolist())
    assert out.logits.exp()[1].tolist() == pytest.approx(model.probs(torch.tensor([2]))[0].tolist())
    nxt = model.step(out.state, torch.tensor([2, 4]))
    assert nxt.logits.exp()[0].tolist() == pytest.approx(model.probs(torch.tensor([2]))[0].tolist())
    (lp,) = model.token_logprobs([[1, 2, 1]])
    assert lp.tolist() == pytest.approx([math.log((2 + 2 * 3 / 13) / 5), math.log((1 + 2 * 4 / 13) / 4)])
    assert model.identity()["content_hash"] != BigramModel(DOCS[:1], V, Tok(), "b").identity()["content_hash"]


def test_every_ar_decoder_runs_on_it(model):
    for name in DECODERS.names():
        if DECODERS.source(name) != "builtin":
            continue  # decoders other test files register
        fn = DECODERS.get(name)
        if getattr(fn, "model_kind", "ar") != "ar":
            continue
        params = {"base": "nucleus", "base_params": {"p": 0.9}, "n": 2} if name == "best_of_n" else {}
        toks = fn(model, [[1], [2, 1]], max_new_tokens=4, generator=[torch.Generator().manual_seed(i)
                                                                    for i in range(2)], **params)
        toks = toks.tokens if hasattr(toks, "tokens") else toks
        assert [len(t) for t in toks] == [4, 4] and all(0 <= i < V for t in toks for i in t), name
    # greedy follows the most frequent continuation: 1 -> 2 -> 1 -> 2 ...
    assert DECODERS.get("greedy")(model, [[1]], max_new_tokens=4, generator=None) == [[2, 1, 2, 1]]


def test_bad_ids_and_device_refused():
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 6\)"):
        BigramModel([[1, 9]], V, Tok(), "b")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        BigramModel(DOCS, V, Tok(), "b").to("cuda")


def test_registered():
    assert "bigram-bbc" in MODELS.names()
