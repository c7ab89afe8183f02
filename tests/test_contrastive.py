"""Contrastive search: a hand-computed toy case, a slow uncached reference on a tiny Llama,
and transformers' implementation where the installed version still ships it."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_llama
from tmbench.decoders.contrastive import contrastive
from tmbench.models.base import ARModel
from tmbench.models.hf import HFModel

torch.set_num_threads(1)


class ToyAR(ARModel):
    """Next-token distribution depends on the current token only (``PROBS[token]``); the
    hidden state of a position is the fixed vector ``EMB[token]``. The cache is the token
    history, so ``select_cache`` is plain indexing."""

    name, vocab_size, tokenizer, device = "toy", 6, None, torch.device("cpu")

    def __init__(self, probs: torch.Tensor, emb: torch.Tensor, eos: int | None = None):
        self.logits = probs.clamp(min=1e-9).log()  # (V, V)
        self.emb = emb  # (V, H)
        self.eos_token_id = eos

    def forward(self, input_ids, attention_mask, position_ids, cache):
        cache = input_ids if cache is None else torch.cat([cache, input_ids], 1)
        return self.logits[input_ids], self.emb[input_ids], cache

    def select_cache(self, cache, index):
        return cache[index]


# hidden vectors (2-d) and next-token distributions for the hand-worked case
EMB = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2], [1.0, -1.0], [0.0, -1.0]])
UNIFORM = [1 / 6] * 6
PROBS = torch.tensor([
    [0.10, 0.40, 0.30, 0.20, 0.00, 0.00],  # after token 0
    UNIFORM,
    [0.35, 0.30, 0.05, 0.05, 0.05, 0.20],  # after token 2
    [0.03, 0.30, 0.02, 0.50, 0.15, 0.00],  # after token 3
    UNIFORM,
    [0.45, 0.02, 0.30, 0.13, 0.10, 0.00],  # after token 5
])


def test_hand_computed_choices():
    """k=3, alpha=0.5; score = 0.5 p - 0.5 max cos. cos values from EMB:
    cos(0,2)=cos(1,2)=cos(0,4)=1/sqrt2=.707, cos(0,3)=-1/1.0198=-.981, cos(1,3)=.2/1.0198=.196,
    cos(2,5)=-.707, cos(3,5)=-.196, cos(1,5)=-1, orthogonal pairs 0.

    Row a, prompt [0, 0]. Step 1, candidates 1 (.4), 2 (.3), 3 (.2) against {0}:
      1: .2 - 0 = .2;  2: .15 - .354 = -.204;  3: .1 + .490 = .590  -> 3 (greedy would take 1)
    Step 2, context {0, 3}, candidates 3 (.5), 1 (.3), 4 (.15):
      3: .25 - .5 (3 is in the context) = -.25;  1: .15 - .098 = .052;
      4: .075 - .354 = -.279  -> 1 (without the generated 3 in the context, 3 would win at .74)
    Row b, prompt [5], left-padded to length 2 (the pad runs as token 0, hidden (1, 0)).
    Step 1, candidates 0 (.45), 2 (.3), 3 (.13) against {5}:
      0: .225 - 0 = .225;  2: .15 + .354 = .504;  3: .065 + .098 = .163  -> 2
      (were the pad counted: 0 -> -.275, 2 -> -.204, 3 -> .163, so 3 would win)
    Step 2, context {5, 2}, candidates 0 (.35), 1 (.3), 5 (.2):
      0: .175 - .354 = -.179;  1: .15 - .354 = -.204;  5: .1 - .5 = -.4  -> 0
    """
    model = ToyAR(PROBS, EMB)
    out = contrastive(model, [[0, 0], [5]], max_new_tokens=2, generator=None, k=3, alpha=0.5)
    assert out == [[3, 1], [2, 0]]
    # the same row 'a' beside a longer prompt (so 'a' is now the padded one)
    out = contrastive(model, [[0], [1, 1, 5]], max_new_tokens=2, generator=None, k=3, alpha=0.5)
    assert out[0] == [3, 1]


def test_toy_alpha_zero_is_greedy_and_eos_stops():
    """EOS = 1. Greedy: a 0 -> 1 (EOS); b 5 -> 0 -> 1 (EOS). Contrastive: a stops at its
    second token 1 (EOS); b goes on: step 3, context {5, 2, 0}, candidates 1 (.4), 2 (.3), 3 (.2):
    1: .2 - .354 = -.154;  2: .15 - .5 = -.35;  3: max cos = cos(3,5) = -.196, .1 + .098 -> 3."""
    model = ToyAR(PROBS, EMB, eos=1)
    assert contrastive(model, [[0], [5]], max_new_tokens=3, generator=None, k=3,
                       alpha=0.0) == [[1], [0, 1]]
    assert contrastive(model, [[0], [5]], max_new_tokens=3, generator=None, k=3,
                       alpha=0.5) == [[3, 1], [2, 0, 3]]


# ---- a slow, uncached reference on a tiny random Llama -------------------------------

@pytest.fixture(scope="module")
def hf():
    return tiny_llama(97, pad=0)


@torch.no_grad()
def reference(hf, prompt, max_new_tokens, k, alpha, eos):
    """Su et al. 2022, one prompt at a time, every forward over the full sequence."""
    seq = list(prompt)
    for _ in range(max_new_tokens):
        out = hf(torch.tensor([seq]), output_hidden_states=True)
        probs = out.logits[0, -1].softmax(-1)
        context = out.hidden_states[-1][0]  # (L, H), every token so far
        best, best_score = None, -math.inf
        for p, v in zip(*probs.topk(k)):
            cand = hf(torch.tensor([seq + [int(v)]]), output_hidden_states=True)
            h = cand.hidden_states[-1][0, -1]
            penalty = max(float(F.cosine_similarity(h, c, dim=0)) for c in context)
            score = (1 - alpha) * float(p) - alpha * penalty
            if score > best_score:
                best, best_score = int(v), score
        seq.append(best)
        if best == eos:
            break
    return seq[len(prompt):]


@pytest.mark.parametrize("k,alpha,eos", [(4, 0.6, None), (5, 0.3, 61), (3, 0.9, None)])
def test_matches_uncached_reference(hf, k, alpha, eos):
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (6, 2, 4)]
    model = HFModel(hf, None, "tiny")
    model.eos_token_id = eos
    ours = contrastive(model, prompts, max_new_tokens=8, generator=None, k=k, alpha=alpha)
    assert ours == [reference(hf, p, 8, k, alpha, eos) for p in prompts]


def test_transformers_contrastive_search(hf):
    """Recent transformers moved contrastive search to the hub repo
    transformers-community/contrastive-search, which cannot be fetched offline."""
    prompt = torch.tensor([[5, 17, 33, 8]])
    try:
        ref = hf.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                          penalty_alpha=0.6, top_k=4, max_new_tokens=8, pad_token_id=0,
                          eos_token_id=None)
    except ValueError as e:
        if "trust_remote_code" in str(e) or "custom_generate" in str(e):
            pytest.skip("this transformers ships contrastive search only as the hub repo "
                        "transformers-community/contrastive-search (no offline reference)")
        raise
    model = HFModel(hf, None, "tiny")
    model.eos_token_id = None
    ours = contrastive(model, [prompt[0].tolist()], max_new_tokens=8, generator=None, k=4,
                       alpha=0.6)
    assert ours[0] == ref[0, prompt.shape[1]:].tolist()
