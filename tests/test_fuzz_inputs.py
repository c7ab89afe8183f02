"""Property tests: any invalid suite, CLI argument or decoder parameter gives one clear
ValueError (exit code 2 at the CLI), never another exception, and writes nothing."""

import copy
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmbench.cli import main
from tmbench.params import resolve_params
from tmbench.suites import load_suite

VALID = {
    "name": "fz", "version": 1,
    "dataset": {"source": "bbc", "split": "test", "n_prompts": 2, "prompt_len": 6, "reference_len": 12},
    "max_new_tokens": 4, "batch_size": 2, "seeds": [0], "models": ["toy-random"],
    "decoders": [{"name": "greedy", "params": {}}], "metrics": [{"name": "repetition", "params": {}}],
}

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=6)

paths = st.sampled_from([
    ("name",), ("version",), ("max_new_tokens",), ("batch_size",), ("seeds",), ("models",),
    ("decoders",), ("metrics",), ("dataset",), ("dataset", "n_prompts"), ("dataset", "source"),
    ("dataset", "prompt_len"), ("dataset", "prompt_unit"), ("human_row",), ("samples_per_prompt",),
    ("unknown_field",), ("dataset", "bogus")])

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(path=paths, value=junk)
def test_mutated_suite_loads_or_fails_clearly(tmp_path, path, value):
    doc = copy.deepcopy(VALID)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    f = tmp_path / "fz.yaml"
    f.write_text(yaml.safe_dump(doc))
    try:
        load_suite(str(f))
    except ValueError as e:
        msg = str(e)
        assert str(f) in msg and "\n" not in msg.strip()


@FAST
@given(text=st.text(max_size=200))
def test_arbitrary_text_as_suite_file(tmp_path, text):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    try:
        load_suite(str(f))
    except ValueError:
        pass


def _decoder(model, prompts, *, max_new_tokens, generator, k: int = 5, alpha: float = 0.6,
             mode: str = "a", flag: bool = False):
    return [[] for _ in prompts]


@FAST
@given(params=st.dictionaries(st.sampled_from(["k", "alpha", "mode", "flag", "other"]), junk, max_size=3))
def test_decoder_params_type_checked(params):
    try:
        out = resolve_params(_decoder, params, "x")
    except ValueError as e:
        assert "decoder 'x'" in str(e)
        return
    assert isinstance(out["k"], int) and isinstance(out["alpha"], float)
    assert isinstance(out["mode"], str) and isinstance(out["flag"], bool)


@FAST
@given(args=st.lists(st.sampled_from(["--limit", "--seed", "--model", "--decoder", "--dtype", "--device",
                                      "--suite", "0", "-1", "x", "1.5", "nope", "cuda:9", "--bogus", ""]),
                     max_size=5))
def test_cli_run_arguments_never_traceback(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)  # tmp_path is shared by the examples
    (tmp_path / "fz.yaml").write_text(yaml.safe_dump(VALID))
    argv = ["run", "--suite", "fz.yaml", "--no-progress", "--out", "runs", *args]
    # Keep it from doing real work: a valid command line would run; only invalid ones reach here
    if "--suite" in args or not any(a in args for a in ("--limit", "--seed", "--dtype", "--device", "--bogus",
                                                           "--model", "--decoder")):
        return
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse --help style exits are not expected either
        pytest.fail(f"SystemExit {e.code}")
    assert rc in (0, 2)
    err = capsys.readouterr().err
    if rc == 2:
        assert "Traceback" not in err
        assert not list((tmp_path / "runs").rglob("record.json"))
