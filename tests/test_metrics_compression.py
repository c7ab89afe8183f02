"""Compression ratio against zlib's own gzip container (an independent encoder of the same
format) and on cases whose order is known."""

import math
import random
import zlib

import pytest

from helpers import ctx, sample
from tmbench.metrics.compression import compression_ratio, ratio
from tmbench.registry import METRICS


def zlib_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    c = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
    return len(raw) / len(c.compress(raw) + c.flush())


@pytest.mark.parametrize("text", ["abc", "the cat sat on the mat. " * 40, "naïve café – ünïcode"])
def test_ratio_equals_zlib_gzip(text):
    assert ratio(text) == pytest.approx(zlib_ratio(text))


def test_order_of_cases():
    rnd = random.Random(0)
    noise = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(400))
    loop = "-am-out" * 57
    assert ratio(loop) > 5 > 1.8 > ratio(noise) > 1  # 27 symbols: at most 8 / log2(27) = 1.68
    assert math.isnan(ratio(""))


def test_corpus_scope_sees_repetition_across_samples():
    rnd = random.Random(1)
    text = " ".join(rnd.choice(["alpha", "beta", "gamma", "delta", "omega"]) + str(rnd.randint(0, 99))
                    for _ in range(40))
    same = [sample(text), sample(text, prompt_index=1)]
    other = [sample(text), sample(text[::-1], prompt_index=1)]
    a = compression_ratio(same, ctx=ctx())
    b = compression_ratio(other, ctx=ctx())
    assert a["compression_ratio[scope=sample]"].per_sample == pytest.approx(
        b["compression_ratio[scope=sample]"].per_sample, rel=0.05)
    assert a["compression_ratio[scope=corpus]"].value > 1.5 * b["compression_ratio[scope=corpus]"].value
    assert a["compression_ratio[scope=corpus]"].value == pytest.approx(zlib_ratio(text + "\n" + text))
    assert a["compression_ratio[scope=corpus]"].higher_is_better is False


def test_registered_and_bad_scope_refused():
    assert METRICS.get("compression_ratio") is compression_ratio
    out = compression_ratio([sample("x y")], ctx=ctx(), scopes=["sample"])
    assert list(out) == ["compression_ratio[scope=sample]"]
    with pytest.raises(ValueError, match="scopes must be a non-empty list of corpus, sample"):
        compression_ratio([sample("x")], ctx=ctx(), scopes=["word"])
