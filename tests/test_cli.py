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


# ---- lm-eval's flag names and near misses -------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["lm-eval", "--model", "hf", "--model_args", "pretrained=x", "--tasks", "t.yaml"],
     "did you mean --model SPEC with the options in brackets"),
    (["lm-eval", "--model_args", "pretrained=x", "--tasks", "t.yaml"],  # --model missing too
     "did you mean --model SPEC"),
    (["lm-eval", "--model", "toy-random", "--tasks", "t.yaml", "--output_path", "o"],
     "did you mean --output"),
    (["lm-eval", "--model", "toy-random", "--tasks", "t.yaml", "--log_samples"],
     "did you mean --log-samples"),
    (["lm-eval", "--model", "toy-random", "--tasks", "t.yaml", "--gen_kwargs", "temperature=0"],
     "did you mean tmbench run --decoder NAME[key=value,...]"),
    (["lm-eval", "--model", "toy-random", "--tasks", "t.yaml", "--num_fewshot", "2"],
     "did you mean --num-fewshot"),
    (["run", "--gen_kwargs", "temperature=0.7"], "did you mean --decoder NAME[key=value,...]"),
    (["run", "--output_path", "x"], "did you mean --out"),
    (["run", "--log_samples"], "did you mean tmbench show KEY --samples N"),
    (["run", "--dry-rn"], "did you mean --dry-run"),
])
def test_lm_eval_flags_and_near_misses_say_what_was_meant(tmp_path, monkeypatch, capsys, args,
                                                          needle):
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, 2, main(args))
    assert needle in err and args[0] in err, err
    assert not (tmp_path / "runs").exists()


# ---- decoder settings in brackets ------------------------------------------------------------
def test_decoder_settings_in_brackets(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SUITE)
    base = ["run", "--suite", "s.yaml", "--no-progress", "--json"]
    # a registered decoder the suite does not list, values read as YAML scalars
    assert main(base + ["--dry-run", "--decoder", "nucleus[p=0.8,temperature=1]"]) == 0
    rows = json.loads(capsys.readouterr().out)["runs"]
    assert [r["decoder"] for r in rows] == ["nucleus[p=0.8,temperature=1]"]
    # the suite's entry with a setting on top: generated and recorded with it
    assert main(base + ["--decoder", "no_repeat_greedy_test[n=5]"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    assert main(["show", row["key"], "--json"]) == 0
    dec = json.loads(capsys.readouterr().out)["spec"]["decoder"]
    assert (dec["name"], dec["label"]) == ("no_repeat_greedy_test", "no_repeat_greedy_test[n=5]")
    assert dec["params"]["n"] == 5


@pytest.mark.parametrize("decoder,needle", [
    ("nucleus[q=1]", "decoder 'nucleus[q=1]': unknown parameter(s) ['q']; accepted: p=0.95"),
    ("nucleus[p=high]", "parameter 'p' must be float, got str 'high'"),
    ("no_repeat_greedy_test[n=0]", "n must be >= 1"),
    ("nucleus[p]", "options must be name=value pairs"),
    ("nucleos[p=0.8]", "did you mean 'nucleus'"),
])
def test_bad_decoder_settings_are_one_line(tmp_path, monkeypatch, capsys, decoder, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SUITE)
    rc = main(["run", "--suite", "s.yaml", "--no-progress", "--decoder", decoder])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err, err
    last = err.splitlines()[-1]  # before it, maybe the plan's "--decoder X: selected ..." line
    assert last.startswith("tmbench: error: ") and needle in last, err
    assert not (tmp_path / "runs").exists()


def test_seed_help_says_it_replaces_the_suites_seeds():
    from tmbench.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    (seed,) = [a for a in run._actions if "--seed" in a.option_strings]
    assert "only this seed" not in seed.help
    assert "in place of the suite's" in seed.help and "new runs" in seed.help


# ---- machine output: the rows, with their run keys ------------------------------------------
def test_run_and_leaderboard_json_give_rows_with_run_keys(tmp_path, monkeypatch, capsys):
    import csv

    monkeypatch.chdir(tmp_path)
    suite = SUITE.replace("{name: no_repeat_greedy_test}",
                          "{name: no_repeat_greedy_test}, {name: nucleus, label: nuc}")
    suite = suite.replace("metrics: []", "metrics: [{name: compression_ratio}]")
    (tmp_path / "s.yaml").write_text(suite)
    assert main(["run", "--suite", "s.yaml", "--no-progress", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert {(r["decoder"], r["status"]) for r in runs} == {("no_repeat_greedy_test", "written"),
                                                           ("nuc", "written")}
    keys = {r["decoder"]: r["key"] for r in runs}
    assert main(["run", "--suite", "s.yaml", "--no-progress", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["runs"]
    assert {r["decoder"]: r["key"] for r in again if r["status"] == "complete"} == keys

    assert main(["leaderboard", "--dest", "tables", "--json"]) == 0
    (table,) = json.loads(capsys.readouterr().out)["tables"]
    assert {r["decoder"]: r["run_keys"] for r in table["rows"]} == {d: [k] for d, k in keys.items()}
    with open(tmp_path / "tables" / "c-v1.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["run_keys"] for r in rows} <= set(keys.values())
    assert main(["show", keys["nuc"]]) == 0  # the key from a table row opens the run
    assert "nucleus" in capsys.readouterr().out


# ---- tmbench list and train --help -------------------------------------------------------------
def test_every_builtin_metric_is_described_by_its_docstring(capsys):
    from tmbench.registry import METRICS

    assert main(["list", "--json"]) == 0
    metrics = {m["name"]: m for m in json.loads(capsys.readouterr().out)["metrics"]}
    builtin = [n for n, m in metrics.items() if m["source"] == "builtin"]
    assert len(builtin) >= 9
    for name in builtin:
        about = metrics[name]["about"]
        assert about, f"metric {name} has no description"
        assert about == METRICS.get(name).__doc__.strip().splitlines()[0]
    assert "Pillutla" in metrics["mauve"]["about"]  # not a note about an old parameter name


def test_train_help_lists_the_shipped_configs(capsys):
    from tmbench.training.config import CONFIG_DIR

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    names = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
    assert {"smollm2-tm", "smollm2-ar", "tiny"} <= set(names)
    assert all(n in out for n in names), out
