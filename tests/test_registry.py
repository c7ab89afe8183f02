import pytest

from tmbench.registry import DECODERS, METRICS, MODELS, Registry


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(ValueError) as e:
        DECODERS.get("nucleous")
    msg = str(e.value)
    assert "did you mean 'nucleus'" in msg and "greedy" in msg and "beam" in msg


def test_builtins_are_listed_with_source():
    assert {"smollm2-135m", "toy-random"} <= set(MODELS.names())
    assert "repetition" in METRICS.names()
    assert MODELS.source("toy-random") == "builtin"


def test_decorator_registers_and_records_module():
    reg = Registry("widget", "tmbench.test-widgets", {})

    @reg.register("w1")
    def w1():
        return 1

    assert reg.get("w1") is w1
    assert reg.source("w1").startswith("decorator ")
    assert "w1" in reg


def test_builtin_resolves_lazily():
    reg = Registry("thing", "tmbench.test-things", {"json-dumps": "json:dumps"})
    import json

    assert reg.get("json-dumps") is json.dumps
