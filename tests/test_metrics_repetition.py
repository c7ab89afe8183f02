"""Repetition metrics on hand-computed cases, both units."""

import math

import numpy as np
import pytest

from helpers import Tok, ctx, sample
from tmbench.metrics.ngrams import intern, longest_repeat, ngram_stats
from tmbench.metrics.repetition import repetition

A = "the cat the cat the cat"  # bigrams 5 (2 unique), trigrams 4 (2), 4-grams 3 (2)
B = "a b c d e"


def two():
    return [sample(A, [5, 6, 5, 6, 5, 6, 99]), sample(B, [1, 2, 3, 4, 7], prompt_index=1)]


def test_hand_computed_both_units():
    out = repetition(two(), ctx=ctx(tokenizer=Tok(eos=99)))
    for u in ("token", "wordpunct"):  # the trailing EOS (99) is dropped from the token unit
        assert out[f"rep[n=2,unit={u}]"].value == pytest.approx(1 - 6 / 9)  # pooled (2+4)/(5+4)
        assert out[f"rep[n=3,unit={u}]"].value == pytest.approx(1 - 5 / 7)
        assert out[f"rep[n=4,unit={u}]"].value == pytest.approx(1 - 4 / 5)
        assert out[f"seq_rep[n=2,unit={u}]"].per_sample == pytest.approx([0.6, 0.0])
        assert out[f"seq_rep[n=3,unit={u}]"].value == pytest.approx(0.25)
        assert out[f"seq_rep[n=4,unit={u}]"].per_sample == pytest.approx([1 / 3, 0.0])
        assert out[f"loop[n=3,unit={u}]"].per_sample == [1.0, 0.0]
        assert out[f"longest_repeat[unit={u}]"].per_sample == [4.0, 0.0]
        assert out[f"rep[n=2,unit={u}]"].per_sample is None
        assert out[f"rep[n=2,unit={u}]"].higher_is_better is False


def test_punctuation_is_split_from_words():
    """Whitespace words made each of these one word (rep-2 0, Loop% 0)."""
    texts = ["-1-1-1-1-1-1", "-am-out-am-out-am-out", "------", "Hello, world."]
    out = repetition([sample(t, prompt_index=i) for i, t in enumerate(texts)], ctx=ctx(),
                     units=("wordpunct",))
    # units: 12 ('-', '1' x 6), 12 ('-', 'am', '-', 'out' x 3), 6 ('-' x 6), 4 ('Hello', ',',
    # 'world', '.'); distinct bigrams 2/11, 4/11, 1/5, 3/3
    rep2 = out["seq_rep[n=2,unit=wordpunct]"].per_sample
    assert rep2 == pytest.approx([1 - 2 / 11, 1 - 4 / 11, 1 - 1 / 5, 0.0])
    assert out["rep[n=2,unit=wordpunct]"].value == pytest.approx(1 - (2 + 4 + 1 + 3) / (11 + 11 + 5 + 3))
    # trigrams: 2/10, 4/10, 1/4, 2/2 distinct
    assert out["seq_rep[n=3,unit=wordpunct]"].per_sample == pytest.approx([0.8, 0.6, 0.75, 0.0])
    assert out["loop[n=3,unit=wordpunct]"].per_sample == [1.0, 1.0, 1.0, 0.0]
    assert out["longest_repeat[unit=wordpunct]"].per_sample == [10.0, 8.0, 5.0, 0.0]


def test_old_unit_name_gets_the_new_key_and_a_note():
    c = ctx()
    out = repetition([sample("------")], ctx=c, units=("word",))
    assert "rep[n=2,unit=wordpunct]" in out and not any("unit=word]" in k for k in out)
    assert out["rep[n=2,unit=wordpunct]"].value == pytest.approx(0.8)
    assert any("'word' is read as 'wordpunct'" in n for n in c.notes)


def test_per_sample_mean_is_value():
    out = repetition(two(), ctx=ctx())
    for k, s in out.items():
        if s.per_sample is not None:
            assert s.value == pytest.approx(float(np.mean(s.per_sample))), k


def test_human_row_without_token_ids_skips_token_unit():
    ss = [sample(A, []), sample(B, [])]
    c = ctx()
    out = repetition(ss, ctx=c)
    assert not any("unit=token" in k for k in out) and "rep[n=2,unit=wordpunct]" in out
    assert any("unit=token skipped" in n for n in c.notes)


def test_short_samples_and_errors():
    out = repetition([sample("one", [1])], ctx=ctx())
    assert math.isnan(out["rep[n=2,unit=wordpunct]"].value)
    assert out["seq_rep[n=2,unit=wordpunct]"].meta["no_ngrams"] == 1
    with pytest.raises(ValueError, match="accepted: token, wordpunct"):
        repetition(two(), ctx=ctx(), units=("char",))
    with pytest.raises(ValueError):
        repetition(two(), ctx=ctx(), ns=(0,))
    assert repetition([], ctx=ctx()) == {}


def test_longest_repeat_cases():
    assert longest_repeat(np.array([1, 2, 1, 2, 1])) == 3  # overlapping occurrences count
    assert longest_repeat(np.array([1, 1, 1, 1])) == 3
    assert longest_repeat(np.array([1, 2, 3])) == 0
    assert longest_repeat(np.array([], dtype=int)) == 0


def test_ngram_stats_group_pooling():
    seqs = intern([["a", "b"], ["a", "b"], ["c", "d"]])
    st = ngram_stats(seqs, 2, owner_of=np.array([0, 0, 1]))
    assert st.total.tolist() == [2, 1] and st.unique.tolist() == [1, 1]
