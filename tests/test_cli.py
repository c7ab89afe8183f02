import json

import pytest

from tmbench.cli import main

SUITE = """name: c
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}
max_new_tokens: 3
batch_size: 2
models: [toy-random]
decoders: [{name: no_repeat_greedy_test}]
metrics: []
human_row: false
"""


@pytest.fixture(autouse=True)
def plugin_decoder():
    from tmbench.registry import DECODERS
    from tmbench.types import model_kind

    @model_kind("ar")
    def no_repeat_greedy_test(model, prompts, *, max_new_tokens, generator, n: int = 3):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return [[1] * max_new_tokens for _ in prompts]

    DECODERS.register("no_repeat_greedy_test", no_repeat_greedy_test)


def one_line_error(capsys, code, rc):
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("args,needle", [
    (["run", "--suite", "nope"], "unknown suite 'nope'"),
    (["run", "--limit", "0"], "must be a positive integer"),
    (["run", "--seed", "x"], "must be a non-negative integer"),
    (["run", "--dtype", "int8"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    (["show", "deadbeef", "--out", "nowhere"], "no run record matches"),
    (["leaderboard", "--out", "nowhere"], "does not exist"),
])
def test_bad_cli_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, 2, main(args))
    assert needle in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("edit,needle", [
    (("models: [toy-random]", "models: [toy-randum]"), "did you mean 'toy-random'"),
    (("{name: no_repeat_greedy_test}", "{name: no_repeat_greedy_test, params: {n: two}}"),
     "parameter 'n' must be int"),
    (("{name: no_repeat_greedy_test}", "{name: no_repeat_greedy_test, params: {m: 2}}"),
     "unknown parameter(s) ['m']; accepted: n=3"),
    (("version: 1", "version: v1"), "version: must be an integer"),
])
def test_bad_suite_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, edit, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SUITE.replace(*edit))
    err = one_line_error(capsys, 2, main(["run", "--suite", "s.yaml", "--no-progress"]))
    assert needle in err
    assert not (tmp_path / "runs").exists()


def test_run_show_leaderboard_roundtrip(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SUITE)
    assert main(["run", "--suite", "s.yaml", "--no-progress", "--json"]) == 0
    cap = capsys.readouterr()
    written = json.loads(cap.out)["written"]
    key = written[0].rsplit("/", 1)[1]
    assert main(["show", key[:8]]) == 0
    assert "no_repeat_greedy_test" in capsys.readouterr().out
    assert main(["leaderboard", "--dest", "tables"]) == 0
    assert (tmp_path / "tables" / "c-v1.md").exists()
    assert "no_repeat_greedy_test" in capsys.readouterr().out
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"models", "decoders", "metrics", "suites"} <= set(listed)
