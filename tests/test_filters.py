"""Every logits filter equals its transformers logits processor; penalties by hand."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


# ---- top-p without torch.sort: the same bits as the full sort on adversarial rows ----------

def bits(x: torch.Tensor) -> torch.Tensor:
    """Compare floats by their bits, so that NaN rows compare equal to themselves."""
    return x.view(torch.int32 if x.dtype == torch.float32 else torch.int64)


def same_bits(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.dtype == ref.dtype and torch.equal(bits(ours), bits(ref))


def adversarial(V: int, seed: int = 0) -> torch.Tensor:
    """Rows that break shortcuts: all tied (flat), a few distinct values (ties at every cut),
    nearly flat without ties, peaked, -inf tails, signed zeros, one dominant token."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(8, V, generator=g)
    rows = torch.stack([
        torch.zeros(V),
        n[0].round(),
        (n[1] * 4).round() / 4,
        n[2] * 1e-3,
        n[3] * 30.0,
        torch.where(torch.arange(V) < V // 2, -INF, n[4]),
        torch.where(n[5] > 0, 0.0, -0.0),
        torch.where(torch.arange(V) == 3, 40.0, n[6]),
    ])
    return rows


P_HARD = [1e-9, 1e-3, 0.05, 0.5, 0.9, 0.95, 0.99, 0.999, 0.9999, 1 - 1e-7, 1.0]


@pytest.mark.parametrize("V", [1, 2, 7, 50, 49152])
@pytest.mark.parametrize("p", P_HARD)
@pytest.mark.parametrize("keep", [1, 3, 100])
def test_top_p_equals_the_full_sort_on_adversarial_rows(V, p, keep):
    x = adversarial(V)
    ref = TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, x.clone())
    same_bits(filters.top_p(x, p, keep), ref)
    same_bits(filters.top_p_sort(x, p, keep), ref)


@pytest.mark.parametrize("p", [0.5, 0.95, 1.0])
def test_top_p_non_finite_rows_are_the_references(p):
    x = random_logits(0)
    x[0, 4] = float("nan")
    x[1, 7] = INF
    x[2] = -INF
    same_bits(filters.top_p(x, p), TopPLogitsWarper(p)(None, x.clone()))


@pytest.mark.parametrize("p", [0.3, 0.95, 0.999])
def test_top_p_float64(p):
    x = random_logits(1).double()
    same_bits(filters.top_p(x, p, 2), TopPLogitsWarper(p, min_tokens_to_keep=2)(None, x.clone()))


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 5.0])
def test_top_p_on_vocabulary_sized_rows(scale):
    """49,152 tokens (SmolLM2's vocabulary), Gumbel-like logits of several sharpnesses."""
    g = torch.Generator().manual_seed(int(scale * 10))
    u = torch.rand(6, 49152, generator=g).clamp(min=1e-12)
    x = -torch.log(-torch.log(u)) * scale * 3
    for p in (0.5, 0.9, 0.95, 0.99, 0.999):
        same_bits(filters.top_p(x, p), TopPLogitsWarper(p)(None, x.clone()))


def test_top_p_sorts_by_value_unless_ties_straddle_the_cut(monkeypatch):
    """Rows without tied logits at the cut never take the full sort; tied ones do."""
    sorted_rows = []
    full_sort = filters.top_p_sort

    def spy(x, p, keep=1):
        sorted_rows.append(x.shape[0])
        return full_sort(x, p, keep)

    monkeypatch.setattr(filters, "top_p_sort", spy)
    x = torch.randn(16, 1000, generator=torch.Generator().manual_seed(2)) * 3
    filters.top_p(x, 0.9)
    assert sorted_rows == []
    filters.top_p(torch.zeros(4, 1000), 0.9)  # flat: the cut falls inside one tie
    assert sorted_rows == [4]


def test_sorted_values_are_torch_sort_values():
    x = torch.randn(5, 300, generator=torch.Generator().manual_seed(3)).round()
    x[0, :3] = torch.tensor([float("nan"), INF, -INF])
    ours, ref = filters._sorted_values(x), x.sort(-1).values
    # equal values in any order: only -0.0 and 0.0 can trade places
    torch.testing.assert_close(ours, ref, rtol=0, atol=0, equal_nan=True)
    x = x + 0.0  # -0.0 + 0.0 = 0.0: no signed zeros left, so the bits agree
    assert torch.equal(bits(filters._sorted_values(x)), bits(x.sort(-1).values))


def test_top_p_keeps_gradients_and_devices_to_the_reference():
    x = random_logits(2).requires_grad_()
    out = filters.top_p(x, 0.7)
    assert out.requires_grad
    same(out.detach(), TopPLogitsWarper(0.7)(None, x.detach().clone()))
    half = random_logits(2).to(torch.bfloat16)  # no numpy dtype: the full sort
    same(filters.top_p(half, 0.7), TopPLogitsWarper(0.7)(None, half.clone()))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(st.integers(-6, 6), min_size=1, max_size=40), min_size=1,
                     max_size=4).filter(lambda r: len({len(x) for x in r}) == 1),
       scale=st.sampled_from([0.25, 1.0, 7.0]),
       p=st.one_of(st.sampled_from(P_HARD), st.floats(1e-6, 1.0)),
       keep=st.integers(1, 5))
def test_top_p_property(rows, scale, p, keep):
    """Few distinct values (so ties at the cut are common) at several sharpnesses."""
    x = torch.tensor(rows, dtype=torch.float32) * scale
    same_bits(filters.top_p(x, p, keep), TopPLogitsWarper(p, min_tokens_to_keep=keep)(None, x.clone()))
