"""The contracts in ``tmbench.types``: the built-in models provide every member of their
protocol, the built-in decoders call nothing else, the @metric mark."""

import pytest
import torch

from tmbench.backbones.gpt import GPT, GPTConfig
from tmbench.models.native_ar import NativeARModel
from tmbench.registry import DECODERS
from tmbench.tm.model import MaturationModel, TMConfig
from tmbench.types import ARModelProtocol, DecodeOutput, TMModelProtocol, metric

torch.set_num_threads(1)
PROMPTS = [[5, 6, 7, 8], [9, 10]]
AR_DECODERS = ["greedy", "beam", "sample", "top_k", "nucleus", "typical", "min_p", "epsilon",
               "eta", "contrastive", "best_of_n"]


def members(proto) -> set[str]:
    names = {n for n in vars(proto) if not n.startswith("_")}
    return names | {n for n in getattr(proto, "__annotations__", {}) if not n.startswith("_")}


class OnlyProtocol:
    """The model seen through its protocol: any other attribute is an AttributeError."""

    def __init__(self, model, proto):
        self._model, self._allowed = model, members(proto)

    def __getattr__(self, name):
        if name not in self._allowed:
            raise AttributeError(f"{name!r} is not in the model protocol")
        return getattr(self._model, name)


def ar_model():
    torch.manual_seed(0)
    return NativeARModel(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64)), 50).eval()


def tm_model():
    torch.manual_seed(0)
    bb = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    m = MaturationModel(bb, TMConfig(vocab_size=50, k_max=4))
    with torch.no_grad():
        m.head.weight.add_(torch.randn_like(m.head.weight) * 0.3)
    return m.eval()


def tokens(out):
    return out.tokens if isinstance(out, DecodeOutput) else out


def test_builtin_models_provide_their_protocol():
    ar, tm = ar_model(), tm_model()
    assert not [n for n in members(ARModelProtocol) if not hasattr(ar, n)]
    assert not [n for n in members(TMModelProtocol) if not hasattr(tm, n)]
    assert tm.context_length() == 32
    cache = tm.prefill(torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long),
                       torch.arange(3)[None])
    assert len(tm.crop_cache(cache, 2)) == 2 and len(tm.new_cache()) == 0


@pytest.mark.parametrize("name", AR_DECODERS)
def test_ar_decoders_call_only_the_protocol(name):
    m, fn = ar_model(), DECODERS.get(name)
    params = {"n": 2} if name == "best_of_n" else {}

    def run(model):
        gens = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
        with torch.inference_mode():
            return tokens(fn(model, PROMPTS, max_new_tokens=4, generator=gens, **params))

    assert run(OnlyProtocol(m, ARModelProtocol)) == run(m)


@pytest.mark.parametrize("params", [{}, {"guidance": 1.5, "trace": True, "tail_len": 3}])
def test_maturation_calls_only_the_protocol(params):
    m, fn = tm_model(), DECODERS.get("maturation")

    def run(model):
        gens = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
        with torch.inference_mode():
            return fn(model, PROMPTS, max_new_tokens=30, generator=gens, **params)

    a, b = run(OnlyProtocol(m, TMModelProtocol)), run(m)  # 30 tokens slide past the context
    assert a.tokens == b.tokens
    # the one optional member: without training_tail_norm the trace's reference norm falls
    # back to the embedding rows; everything else in the trace is identical
    for ta, tb in zip(a.info.get("tail", []), b.info.get("tail", [])):
        assert ta.pop("train_norm") == pytest.approx(float(m.emb.detach().norm(dim=-1).mean()))
        tb.pop("train_norm")
    assert a.info == b.info


def test_metric_mark():
    @metric
    def plain(samples, *, ctx):
        return {}

    @metric(per_model=True)
    def of_model(samples, *, ctx):
        return {}

    assert plain.metric and not plain.per_model
    assert of_model.metric and of_model.per_model
