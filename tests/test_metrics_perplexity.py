"""Perplexity: TmbenchLM against lm-eval's own HFLM on the same tiny random Llama and the same
local task; gen_ppl against direct scoring and under windowing."""

import math

import numpy as np
import pytest
import torch

from helpers import BigramJudge, ctx, sample, tiny_bpe_llama, tiny_hfmodel

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed")

from tmbench.lm_eval_adapter import TmbenchLM  # noqa: E402
from tmbench.metrics.judge import is_self_judged, judge_logprobs  # noqa: E402
from tmbench.scoring import token_logprobs_batched  # noqa: E402
from tmbench.metrics.perplexity import gen_ppl, heldout_ppl  # noqa: E402

WINDOW = 32  # small, so articles span several rolling windows


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def _hflm():
    from lm_eval.models.huggingface import HFLM

    m, tok = tiny_bpe_llama()
    return HFLM(pretrained=m, tokenizer=tok, max_length=WINDOW, batch_size=1, device="cpu")


def _instances(kind, args):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_heldout_ppl_matches_hflm(tmp_path):
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from tmbench.metrics.perplexity import BBC_TASK, TASKS_DIR, _write_corpus

    c = ctx(model=tiny_hfmodel(), cache_dir=str(tmp_path))
    ours = heldout_ppl([], ctx=c, n_articles=2, max_length=WINDOW)
    spec = yaml.safe_load((TASKS_DIR / f"{BBC_TASK}.yaml").read_text())
    spec["dataset_kwargs"] = {"data_files": {"test": _write_corpus("bbc-test", 2, c)[0]}}
    ref = simple_evaluate(model=_hflm(), tasks=[spec], bootstrap_iters=0,
                          task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False))
    r = ref["results"][BBC_TASK]
    for key, name in (("heldout_ppl[corpus=bbc-test,unit=word,window=32]", "word_perplexity,none"),
                      ("heldout_ppl[corpus=bbc-test,unit=byte,window=32]", "byte_perplexity,none"),
                      ("bits_per_byte[corpus=bbc-test,window=32]", "bits_per_byte,none")):
        assert ours[key].value == pytest.approx(r[name], rel=1e-5), key
    meta = ours["bits_per_byte[corpus=bbc-test,window=32]"].meta
    assert meta["window"] == WINDOW and meta["stride"] == WINDOW and meta["n_docs"] == 2
    assert meta["tokens"] > 2 * WINDOW  # several windows per article
    assert "heldout_ppl[corpus=bbc-test,unit=token,window=32]" in ours
    assert "rolling" in meta["window_policy"] and meta["window_reduced"] is False


def test_one_window_for_every_model():
    """The default window is 127 tokens whatever the model's context; a shorter context gets a
    shorter window, flagged; None asks for each model's own maximum."""
    from tmbench.metrics.perplexity import window_policy

    for context in (128, 2048, 8192, None):
        w, policy = window_policy(127, context)
        assert w == 127 and policy["window_reduced"] is False
    w, policy = window_policy(127, 64)
    assert w == 63 and policy["window_reduced"] is True and policy["model_context"] == 64
    assert window_policy(None, 8192)[0] == 2048 and window_policy(None, 128)[0] == 127
    for bad in (1, 2.5, True, "128"):
        with pytest.raises(ValueError, match="max_length"):
            window_policy(bad, 128)


def test_heldout_ppl_default_window_and_reduced_window(tmp_path):
    model = tiny_hfmodel()  # 128 positions
    out = heldout_ppl([], ctx=ctx(model=model, cache_dir=str(tmp_path)), n_articles=1)
    s = out["heldout_ppl[corpus=bbc-test,unit=word,window=127]"]
    assert s.meta["window"] == 127 and s.meta["max_length"] == 127
    assert "bits_per_byte[corpus=bbc-test,window=127]" in out
    c = ctx(model=model, cache_dir=str(tmp_path))
    out = heldout_ppl([], ctx=c, n_articles=1, max_length=500)
    assert "bits_per_byte[corpus=bbc-test,window=127]" in out
    assert out["bits_per_byte[corpus=bbc-test,window=127]"].meta["window_reduced"] is True
    assert any("allows a window of 127" in n for n in c.notes)


def test_loglikelihood_and_generate_until_match_hflm():
    ours, ref = TmbenchLM(tiny_hfmodel(), max_length=WINDOW), _hflm()
    ll = _instances("loglikelihood", [("The bank said", " profits rose"), ("", "Hello world"),
                                      (" ".join(["word"] * 60), " long context is truncated")])
    for (a, ga), (b, gb) in zip(ours.loglikelihood(ll), ref.loglikelihood(ll)):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb
    gen = _instances("generate_until", [("The government said", {"until": ["\n\n"], "max_gen_toks": 8,
                                                                  "do_sample": False})])
    assert ours.generate_until(gen) == ref.generate_until(gen)


def test_heldout_ppl_human_row_and_errors():
    c = ctx()
    assert heldout_ppl([], ctx=c) == {} and "human row" in c.notes[0]
    with pytest.raises(ValueError, match="corpus"):
        heldout_ppl([], ctx=ctx(model=tiny_hfmodel()), corpus="nope")
    with pytest.raises(ValueError, match="max_length"):
        TmbenchLM(tiny_hfmodel(), max_length=500)  # context is 128
    with pytest.raises(ValueError, match="max_length"):
        heldout_ppl([], ctx=ctx(model=tiny_hfmodel()), max_length=1)


def test_gen_ppl_equals_direct_scoring():
    judge = tiny_hfmodel()
    ss = [sample(" the bank said on Monday", prompt="Shares fell", prompt_index=0),
          sample(" and then", prompt="The minister", prompt_index=1)]
    c = ctx(load_model=lambda name: judge, model=object())
    out = gen_ppl(ss, ctx=c, judge="toy-random")
    s = out["gen_ppl[agg=pooled,judge=toy-random]"]
    tok = judge.tokenizer
    nlls, counts = [], []
    for x, got in zip(ss, s.per_sample):
        p, q = tok.encode(x.prompt_text), tok.encode(x.text)
        ids = torch.tensor([p + q])
        with torch.no_grad():
            lp = torch.log_softmax(judge.model(ids).logits[0, :-1].double(), -1)
        nll = -lp[torch.arange(len(p) - 1, len(p) + len(q) - 1), torch.tensor(q)]
        assert got == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)
        nlls.append(float(nll.sum()))
        counts.append(len(q))
    assert s.value == pytest.approx(math.exp(sum(nlls) / sum(counts)), rel=1e-5)
    assert s.meta["per_sample_tokens"] == counts
    assert s.meta["per_sample_nll"] == pytest.approx(nlls, rel=1e-5)
    assert out["gen_ppl[agg=sample-mean,judge=toy-random]"].value == pytest.approx(np.mean(s.per_sample))
    assert s.meta["judge"]["name"] == "tiny-llama" and s.meta["window"] == 1024
    assert s.meta["self_judged"] is False


def test_gen_ppl_pools_tokens_hand_computed():
    """Pooled perplexity weighs samples by their token counts; the mean of per-sample
    perplexities does not. Bigram judge, word tokens: sample 0 scores 3 tokens, sample 1 one."""
    judge = BigramJudge()
    ss = [sample("b c d", prompt="a", prompt_index=0), sample("f", prompt="e", prompt_index=1)]
    out = gen_ppl(ss, ctx=ctx(load_model=lambda n: judge, model=object()), judge="toy-random")
    t, v = judge.table.double(), judge.tokenizer.vocab
    nll0 = -float(t[v["a"], v["b"]] + t[v["b"], v["c"]] + t[v["c"], v["d"]])
    nll1 = -float(t[v["e"], v["f"]])
    pooled = out["gen_ppl[agg=pooled,judge=toy-random]"]
    assert pooled.value == pytest.approx(math.exp((nll0 + nll1) / 4), rel=1e-9)
    assert pooled.per_sample == pytest.approx([math.exp(nll0 / 3), math.exp(nll1)], rel=1e-9)
    assert pooled.meta["per_sample_tokens"] == [3, 1]
    assert pooled.meta["per_sample_nll"] == pytest.approx([nll0, nll1], rel=1e-9)
    mean = out["gen_ppl[agg=sample-mean,judge=toy-random]"]
    assert mean.value == pytest.approx((math.exp(nll0 / 3) + math.exp(nll1)) / 2, rel=1e-9)


def test_empty_continuation_pools_nothing():
    judge = BigramJudge()
    ss = [sample("b c", prompt="a"), sample("", prompt="e", prompt_index=1)]
    c = ctx(load_model=lambda n: judge, model=object())
    s = gen_ppl(ss, ctx=c, judge="toy-random")["gen_ppl[agg=pooled,judge=toy-random]"]
    assert s.meta["per_sample_tokens"] == [2, 0] and math.isnan(s.per_sample[1])
    assert s.value == pytest.approx(math.exp(s.meta["per_sample_nll"][0] / 2))
    assert any("empty continuation" in n for n in c.notes)


class _Generator:
    def __init__(self, ident):
        self.ident = ident

    def identity(self):
        return self.ident


def test_self_judged_is_recorded():
    judge = BigramJudge()
    ss = [sample("b c d", prompt="a")]
    for gen, want in ((_Generator({"name": "bigram", "content_hash": "bigram0"}), True),
                      (_Generator({"name": "bigram-copy", "content_hash": "bigram0"}), True),
                      (_Generator({"name": "bigram", "content_hash": "other"}), False),
                      (_Generator({"name": "tm", "content_hash": None}), False),
                      (None, False), (object(), False)):
        c = ctx(load_model=lambda n: judge, model=gen)
        for s in gen_ppl(ss, ctx=c, judge="toy-random").values():
            assert s.meta["self_judged"] is want, gen
        assert any("judge is the generator" in n for n in c.notes) is want
    assert is_self_judged({"name": "a"}, {"name": "a", "content_hash": None})
    assert not is_self_judged({"name": "a", "content_hash": "x"}, None)


def test_gen_ppl_and_coherence_share_one_judge_forward(tmp_path):
    from tmbench.metrics.coherence import coherence

    class Counting(BigramJudge):
        scored = 0

        def token_logprobs(self, seqs):
            Counting.scored += len(seqs)
            return super().token_logprobs(seqs)

    judge = Counting()
    ss = [sample(f"w{i} w{i + 1} w{i + 2}", prompt="p", prompt_index=i) for i in range(5)]
    c = ctx(load_model=lambda n: judge, model=object(), cache_dir=str(tmp_path))
    ppl = gen_ppl(ss, ctx=c, judge="toy-random")["gen_ppl[agg=pooled,judge=toy-random]"]
    coh = coherence(ss, ctx=c, defs="judge-logprob", judge="toy-random")
    coh = coh["coherence[def=judge-logprob,judge=toy-random]"]
    assert Counting.scored == 5  # one scored window per sample, for both metrics
    for p, lp, n in zip(ppl.per_sample, coh.per_sample, ppl.meta["per_sample_tokens"]):
        assert math.log(p) == pytest.approx(-lp) and n == 3


def test_bos_prefix_is_put_before_every_window():
    """A judge with ``score_prefix`` gets it before each window, and its first continuation
    token is scored given it when the prompt is empty."""
    judge = BigramJudge()
    bos = judge.tokenizer.encode("<bos>")[0]
    judge.score_prefix = [bos]
    seen = []
    orig = judge.token_logprobs
    judge.token_logprobs = lambda seqs: (seen.extend(seqs), orig(seqs))[1]
    words = " ".join(f"w{i}" for i in range(20))
    full, meta = judge_logprobs(judge, [sample(words, prompt="")], ctx(model=object()),
                                window=8, stride=3)
    assert all(s[0] == bos for s in seen) and max(map(len, seen)) <= 8
    assert len(full[0]) == 20 and "BOS before every window" in meta["retokenisation"]
    ids = judge.tokenizer.encode(words)
    assert full[0][0] == pytest.approx(float(judge.table[bos, ids[0]]))
    with pytest.raises(ValueError, match="stride"):
        judge_logprobs(judge, [sample(words, prompt="")], ctx(), window=8, stride=7)


def test_parameters_are_checked_before_any_model_is_loaded():
    """A plan-time dry run (no generator, a load_model that must not be reached) sees bad
    parameters."""
    from tmbench.metrics.coherence import coherence

    def no_load(name):
        raise AssertionError("loaded a model")

    ss = [sample("b c", prompt="a")]
    with pytest.raises(ValueError, match="stride"):
        gen_ppl(ss, ctx=ctx(load_model=no_load), window=16, stride=16)
    with pytest.raises(ValueError, match="stride"):
        coherence(ss, ctx=ctx(load_model=no_load), defs="judge-logprob", window=16, stride=0)
    with pytest.raises(ValueError, match="max_length"):
        heldout_ppl(ss, ctx=ctx(load_model=no_load), max_length=1)  # no generator: human row


def test_windowed_scoring_equals_full_for_a_bigram_judge():
    judge = BigramJudge()
    words = " ".join(f"w{i % 37}" for i in range(150))
    ss = [sample(words, prompt="p0 p1 p2 p3")]
    full, _ = judge_logprobs(judge, ss, ctx(model=object()), window=1024, stride=512)
    win, meta = judge_logprobs(judge, ss, ctx(model=object()), window=16, stride=5)
    assert len(full[0]) == 150 and np.allclose(full[0], win[0], atol=1e-12)
    with pytest.raises(ValueError, match="stride"):
        judge_logprobs(judge, ss, ctx(), window=8, stride=8)


def test_human_row_puts_a_space_before_the_reference():
    class CharTok:
        eos_token_id, name = 0, "chars"

        def encode(self, t):
            return [ord(ch) for ch in t]

    class CharJudge(BigramJudge):
        def __init__(self):
            super().__init__(vocab=128)
            self.tokenizer = CharTok()

    ss = [sample("next words", prompt="prompt words")]
    human, meta = judge_logprobs(CharJudge(), ss, ctx(decode_info={"human": True}), window=64, stride=32)
    model, _ = judge_logprobs(CharJudge(), ss, ctx(model=object()), window=64, stride=32)
    assert len(human[0]) == len("next words") + 1 and len(model[0]) == len("next words")
    assert "space" in meta["retokenisation"]


def test_batched_scoring_equals_one_by_one_and_judge_cache(tmp_path):
    m = tiny_hfmodel()
    seqs = [list(range(5, 5 + n)) for n in (1, 2, 7, 30, 12)]
    one = m.token_logprobs(seqs)
    for budget in (8, 64, 10_000):
        got = token_logprobs_batched(m, seqs, budget)
        for a, b in zip(one, got):
            assert len(a) == len(b) and np.allclose(a.double().numpy(), b, atol=1e-5)
    m.content_hash = "tiny0"  # identified judges are cached
    ss = [sample(" the bank said", prompt="Shares fell")]
    c = ctx(model=object(), cache_dir=str(tmp_path))
    first, _ = judge_logprobs(m, ss, c, window=64, stride=32)
    m.token_logprobs = m.forward = None  # a second call must not touch the model
    again, _ = judge_logprobs(m, ss, c, window=64, stride=32)
    assert np.array_equal(first[0], again[0]) and len(list(tmp_path.rglob("*.arr"))) == 1


def test_heldout_ppl_does_not_seed_global_rngs(tmp_path):
    """lm-eval seeds random (0), numpy and torch (1234) unless told not to."""
    import random

    model = tiny_hfmodel()  # built first: building seeds torch
    torch.manual_seed(1234)
    random.seed(0)
    seeded_t, seeded_r = torch.rand(1), random.random()
    torch.manual_seed(99)
    random.seed(99)
    heldout_ppl([], ctx=ctx(model=model, cache_dir=str(tmp_path)), n_articles=1, max_length=WINDOW)
    assert not torch.equal(torch.rand(1), seeded_t) and random.random() != seeded_r
