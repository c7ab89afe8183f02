"""The no-repeat-n-gram greedy decoder: token-identical to transformers, and no n-gram twice."""

import pytest
import torch

from helpers import hf_generate, tiny_llama
from tmbench.models.hf import HFModel
from tmbench.registry import DECODERS

V, PAD = 23, 0  # a small vocabulary, so that unbanned greedy decoding repeats n-grams


@pytest.fixture(scope="module")
def hf():
    return tiny_llama(V, PAD)


def model(hf, eos):
    m = HFModel(hf, None, "tiny")
    m.eos_token_id = eos
    return m


def prompts(n_rows=3, length=6, seed=7):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, V, (length,), generator=g).tolist() for _ in range(n_rows)]


def grams(row, n):
    return [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("eos", [2, 13])
def test_equals_transformers_no_repeat_ngram_size(hf, n, eos):
    ps = prompts()
    fn = DECODERS.get("no_repeat_greedy")
    ours = fn(model(hf, eos), ps, max_new_tokens=20 if n > 1 else 12,
              generator=torch.Generator(), n=n)
    assert ours == hf_generate(hf, ps, eos, max_new_tokens=20 if n > 1 else 12,
                               no_repeat_ngram_size=n)


def test_no_ngram_twice_where_greedy_repeats(hf):
    ps = prompts()
    plain = DECODERS.get("greedy")(model(hf, None), ps, max_new_tokens=30,
                                   generator=torch.Generator())
    assert any(len(set(grams(p + r, 3))) < len(grams(p + r, 3)) for p, r in zip(ps, plain))
    ours = DECODERS.get("no_repeat_greedy")(model(hf, None), ps, max_new_tokens=30,
                                            generator=torch.Generator(), n=3)
    for p, r in zip(ps, ours):
        assert len(r) == 30 and len(set(grams(p + r, 3))) == len(grams(p + r, 3))


@pytest.mark.parametrize("n", [0, 1.5, True, "3"])
def test_bad_n_is_refused(hf, n):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        DECODERS.get("no_repeat_greedy")(model(hf, None), prompts(), max_new_tokens=4,
                                         generator=torch.Generator(), n=n)
