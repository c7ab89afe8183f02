"""best_of_n on a tiny random Llama: it keeps the candidate with the highest mean token
log-probability (checked against candidates decoded one at a time and scored by a separate full
forward), a prompt's result does not depend on the other prompts of the batch, and EOS-cut
candidates are scored over the tokens they keep."""

import pytest
import torch

from helpers import tiny_llama
from tmbench.decoders import sampling
from tmbench.decoders.best_of_n import best_of_n
from tmbench.models.hf import HFModel
from tmbench.scoring import mean_logprob

torch.set_num_threads(1)

V, PAD, N = 97, 0, 5


@pytest.fixture(scope="module")
def model():
    return HFModel(tiny_llama(V, PAD), None, "tiny")


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(3, V, (n,), generator=g).tolist() for n in (4, 8, 6)]


def reference(model, prompt, seed, n, max_new_tokens):
    """Candidate i from the i-th sub-seed of the prompt's generator, decoded alone, scored by a
    full forward over prompt + continuation."""
    seeds = torch.randint(2 ** 62, (n,), generator=torch.Generator().manual_seed(seed))
    cands = [sampling.nucleus(model, [prompt], max_new_tokens=max_new_tokens, p=0.9,
                              generator=[torch.Generator().manual_seed(int(s))])[0]
             for s in seeds]
    scores = mean_logprob(model, [prompt] * n, cands)
    i = max(range(n), key=lambda j: scores[j])
    return cands[i], i, scores[i]


@pytest.mark.parametrize("eos", [None, 5])
def test_keeps_the_most_likely_candidate(model, prompts, eos):
    model.eos_token_id = eos
    try:
        gens = [torch.Generator().manual_seed(10 + b) for b in range(len(prompts))]
        out = best_of_n(model, prompts, max_new_tokens=12, generator=gens, n=N,
                        base="nucleus", base_params={"p": 0.9})
        for b, p in enumerate(prompts):
            want, i, lp = reference(model, p, 10 + b, N, 12)
            assert out.tokens[b] == want
            assert out.info["best_index"][b] == i
            assert out.info["best_logprob"][b] == pytest.approx(lp, abs=1e-4)
    finally:
        model.eos_token_id = None


def test_a_prompt_does_not_depend_on_its_batch(model, prompts):
    kw = dict(max_new_tokens=10, n=4, base="top_k", base_params={"k": 20})
    both = best_of_n(model, prompts, generator=[torch.Generator().manual_seed(s)
                                                for s in (1, 2, 3)], **kw)
    alone = best_of_n(model, prompts[2:], generator=[torch.Generator().manual_seed(3)], **kw)
    assert both.tokens[2] == alone.tokens[0]
    assert both.info["best_index"][2] == alone.info["best_index"][0]


def test_bad_settings_are_refused(model, prompts):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="base must be one of"):
        best_of_n(model, prompts, max_new_tokens=4, generator=g, base="greedy")
    with pytest.raises(ValueError, match="n must be"):
        best_of_n(model, prompts, max_new_tokens=4, generator=g, n=0)
