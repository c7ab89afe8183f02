"""Every logits filter equals its transformers logits processor; penalties by hand."""

import pytest
import torch
from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from tmbench.decoders import filters

torch.set_num_threads(1)
INF = float("inf")


def random_logits(seed: int, B: int = 6, V: int = 50) -> torch.Tensor:
    """Rows of varied sharpness (peaked rows make min_tokens_to_keep matter), one row with
    tokens already at -inf (as after an earlier filter)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.3, 1.0, 3.0, 10.0, 30.0, 2.0])[:B, None]
    x = torch.randn(B, V, generator=g) * scale
    x[-1, :V // 3] = -INF
    return x


def same(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.equal(ours, ref)  # bit for bit, -inf where transformers has -inf


SEEDS = [0, 1, 2]
KEEP = [1, 3]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.5, 1.0, 1.7])
def test_temperature(seed, t):
    x = random_logits(seed)
    same(filters.temperature(x, t), TemperatureLogitsWarper(t)(None, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 2, 5, 49, 50, 80])
@pytest.mark.parametrize("keep", KEEP)
def test_top_k(seed, k, keep):
    x = random_logits(seed)
    same(filters.top_k(x, k, keep), TopKLogitsWarper(k, min_tokens_to_keep=keep)(None, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("keep", KEEP)
def test_top_p(seed, p, keep):
    x = random_logits(seed)
    same(filters.top_p(x, p, keep), TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.95, 0.999])
@pytest.mark.parametrize("keep", KEEP)
def test_typical(seed, p, keep):
    x = random_logits(seed)
    same(filters.typical(x, p, keep), TypicalLogitsWarper(p, min_tokens_to_keep=keep)(None, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.0, 0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("keep", KEEP)
def test_min_p(seed, p, keep):
    x = random_logits(seed)
    same(filters.min_p(x, p, keep), MinPLogitsWarper(p, min_tokens_to_keep=keep)(None, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps", [3e-4, 1e-2, 0.05, 0.3])
@pytest.mark.parametrize("keep", KEEP)
def test_epsilon(seed, eps, keep):
    x = random_logits(seed)
    same(filters.epsilon(x, eps, keep), EpsilonLogitsWarper(eps, min_tokens_to_keep=keep)(None, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps", [3e-4, 2e-3, 0.05, 0.3])
@pytest.mark.parametrize("keep", KEEP)
def test_eta(seed, eps, keep):
    x = random_logits(seed)
    same(filters.eta(x, eps, keep), EtaLogitsWarper(eps, min_tokens_to_keep=keep)(None, x))


def test_min_tokens_to_keep_overrides_truncation():
    x = torch.tensor([[10.0, 0.0, -1.0, -2.0, -50.0]])  # p(top) ~ 1
    assert torch.isfinite(filters.top_p(x, 0.5, 3)).sum() == 3
    assert torch.isfinite(filters.min_p(x, 0.5, 2)).sum() == 2
    assert torch.isfinite(filters.epsilon(x, 0.2, 4)).sum() == 4
    assert torch.isfinite(filters.top_k(x, 1, 2)).sum() == 2


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("theta", [0.5, 1.2, 2.0])
def test_repetition_penalty(seed, theta):
    x = random_logits(seed)
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(0, 50, (6, 12), generator=g)
    same(filters.repetition_penalty(x, hist, theta),
         RepetitionPenaltyLogitsProcessor(theta)(hist, x.clone()))


def test_repetition_penalty_ignores_pads():
    x = random_logits(0, B=2)
    hist = torch.tensor([[-1, -1, 4, 7, 4], [3, 9, 9, 1, 0]])
    ours = filters.repetition_penalty(x, hist, 1.3)
    for b in range(2):
        real = hist[b][hist[b] >= 0][None]
        same(ours[b:b + 1], RepetitionPenaltyLogitsProcessor(1.3)(real, x[b:b + 1].clone()))


def test_frequency_and_presence_by_hand():
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0]])
    hist = torch.tensor([[0, 0, 2, 0], [-1, -1, 3, 1]])  # -1 = pad, ignored
    assert torch.equal(filters.frequency_penalty(x, hist, 0.5),
                       torch.tensor([[1.0 - 1.5, -2.0, 0.5 - 0.5, 3.0], [0.0, -0.5, 0.0, -0.5]]))
    assert torch.equal(filters.presence_penalty(x, hist, 0.25),
                       torch.tensor([[0.75, -2.0, 0.25, 3.0], [0.0, -0.25, 0.0, -0.25]]))
    # negative values reward repetition
    rewarded = filters.presence_penalty(x, hist, -1.0)[1]
    assert torch.equal(rewarded, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert torch.equal(filters.frequency_penalty(x, empty, 2.0), x)


def test_process_order_matches_transformers():
    """penalty, then temperature, then truncation: transformers' processor order."""
    x = random_logits(3)
    hist = torch.randint(0, 50, (6, 8), generator=torch.Generator().manual_seed(3))
    ours = filters.process(x, context=hist, generated=hist[:, :0], repetition=1.3, temp=0.7,
                           truncate=lambda z: filters.top_p(z, 0.8))
    ref = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7),
                               TopPLogitsWarper(0.8)])(hist, x.clone())
    same(ours, ref)


def test_process_neutral_values_are_identity():
    x = random_logits(4)
    hist = torch.zeros(6, 0, dtype=torch.long)
    assert filters.process(x, context=hist, generated=hist) is x


def test_filters_are_pure():
    x = random_logits(5)
    before = x.clone()
    hist = torch.randint(0, 50, (6, 4))
    for f in (lambda z: filters.top_k(z, 3), lambda z: filters.top_p(z, 0.5),
              lambda z: filters.typical(z, 0.5), lambda z: filters.min_p(z, 0.2),
              lambda z: filters.epsilon(z, 0.1), lambda z: filters.eta(z, 0.1),
              lambda z: filters.repetition_penalty(z, hist, 1.5),
              lambda z: filters.frequency_penalty(z, hist, 0.5),
              lambda z: filters.presence_penalty(z, hist, 0.5)):
        f(x)
        assert torch.equal(x, before)
