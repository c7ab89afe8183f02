"""Hostile inputs through `tmbench run --suite FILE`: a damaged weight file, malformed or
mistyped JSONL prompt files, a folder where a file belongs, a plugin decoder that crashes in
its dry run, a YAML alias bomb. Each gives exit status 2 and one line on stderr that names the
file (and the line, where there is one), before any work, and nothing is written."""

import pytest

from helpers import write_tiny_llama
from test_cli import one_line_error
from tmbench.cli import main
from tmbench.registry import DECODERS

SUITE = """name: hostile
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}
max_new_tokens: 3
batch_size: 2
models: [toy-random]
decoders: [{name: greedy}]
metrics: []
human_row: false
"""
FILE_DATASET = "dataset: {source: file, path: '%s', n_prompts: 2, prompt_len: 6, reference_len: 12}"
WORDS = " ".join(f"w{i}" for i in range(40))


def run_bad(tmp_path, monkeypatch, capsys, suite_text):
    """`tmbench run` on ``suite_text``: exit 2, one line on stderr, nothing under runs/."""
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "s.yaml"
    suite.write_text(suite_text)
    out = tmp_path / "runs"
    capsys.readouterr()  # what building the inputs printed (save_pretrained's progress bar)
    err = one_line_error(capsys, 2, main(["run", "--suite", str(suite), "--no-progress",
                                          "--out", str(out)]))
    assert not out.exists()
    return err


def with_dataset_file(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    line = next(ln for ln in SUITE.splitlines() if ln.startswith("dataset:"))
    return path, SUITE.replace(line, FILE_DATASET % path)


@pytest.mark.parametrize("keep", [4, 40, "half"], ids=["no-header", "cut-header", "cut-data"])
def test_truncated_safetensors_in_hf_folder(tmp_path, monkeypatch, capsys, one_thread, keep):
    folder = write_tiny_llama(tmp_path / "llama")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2 if keep == "half" else keep])
    err = run_bad(tmp_path, monkeypatch, capsys,
                  SUITE.replace("models: [toy-random]", f"models: ['hf:{folder}']"))
    assert str(weights) in err and "safetensors" in err


@pytest.mark.parametrize("line,needle", [
    (b'[1, 2]', "must be a JSON object"),
    (b'7', "must be a JSON object"),
    (b'"text"', "must be a JSON object"),  # `"text" in "text"` is a substring test
    (b'{"text": 5}', "field 'text' must be a string"),
    (b'{"text": ["a", "b"]}', "field 'text' must be a string"),
    (b'{"text": null}', "field 'text' must be a string"),
])
def test_jsonl_line_of_the_wrong_shape(tmp_path, monkeypatch, capsys, line, needle):
    good = b'{"text": "%s"}\n' % WORDS.encode()
    path, suite = with_dataset_file(tmp_path, "p.jsonl", good + line + b"\n" + good)
    err = run_bad(tmp_path, monkeypatch, capsys, suite)
    assert f"{path}:2:" in err and needle in err


@pytest.mark.parametrize("line,needle", [
    (b'{"text": "a b c"', "not valid JSON"),
    (b'{"text": "caf\xe9"}', "not UTF-8"),
])
def test_malformed_jsonl_names_file_and_line(tmp_path, monkeypatch, capsys, line, needle):
    good = b'{"text": "%s"}\n' % WORDS.encode()
    path, suite = with_dataset_file(tmp_path, "p.jsonl", good + good + line + b"\n")
    err = run_bad(tmp_path, monkeypatch, capsys, suite)
    assert f"{path}:3:" in err and needle in err


def test_folder_as_dataset_file(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "prompts.jsonl"
    folder.mkdir()
    line = next(ln for ln in SUITE.splitlines() if ln.startswith("dataset:"))
    err = run_bad(tmp_path, monkeypatch, capsys, SUITE.replace(line, FILE_DATASET % folder))
    assert str(folder) in err and "is a folder" in err


@pytest.fixture
def crashing_decoder():
    def crashes_in_dry_run_test(model, prompts, *, max_new_tokens, generator, k: int = 3):
        return [[k + "1"] for _ in prompts]  # TypeError: int + str

    DECODERS.register("crashes_in_dry_run_test", crashes_in_dry_run_test)
    yield "crashes_in_dry_run_test"
    DECODERS._entries.pop("crashes_in_dry_run_test")


def test_plugin_decoder_that_raises_in_its_dry_run(tmp_path, monkeypatch, capsys, crashing_decoder):
    err = run_bad(tmp_path, monkeypatch, capsys,
                  SUITE.replace("{name: greedy}", f"{{name: {crashing_decoder}}}"))
    assert f"decoder '{crashing_decoder}' failed its dry run: TypeError:" in err
    assert f"{__file__}:" in err  # where it raised


def test_yaml_alias_bomb(tmp_path, monkeypatch, capsys):
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = SUITE + "extra:\n" + "".join(f"  {x}\n" for x in levels)  # 9**9 leaves expanded
    assert len(bomb.encode()) < 1600
    err = run_bad(tmp_path, monkeypatch, capsys, bomb)
    assert str(tmp_path / "s.yaml") in err and "100000" in err


def test_load_hf_names_a_damaged_weight_file(tmp_path, one_thread):
    from tmbench.models.hf import load_hf

    folder = write_tiny_llama(tmp_path / "llama")
    (folder / "model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ValueError, match="safetensors file is damaged or truncated"):
        load_hf(str(folder))  # past the plan-time check (e.g. a hub snapshot)


# Found alongside the cases above: the same traceback-for-bad-input, in the suite loader.
@pytest.mark.parametrize("edit,needle", [
    (("dataset: {source: bbc, split: test,", "dataset: {source: file,"),
     "dataset.path: is required for source file"),
    (("decoders: [{name: greedy}]", "decoders: {include: 5}"), "must be a file name"),
    (("metrics: []", "metrics: []\nextra: {deep: " + "[" * 3000 + "]" * 3000 + "}"),
     "nested too deeply"),
])
def test_suite_loader_edge_cases(tmp_path, monkeypatch, capsys, edit, needle):
    err = run_bad(tmp_path, monkeypatch, capsys, SUITE.replace(*edit))
    assert str(tmp_path / "s.yaml") in err and needle in err


def test_decoder_file_that_includes_itself(tmp_path, monkeypatch, capsys):
    (tmp_path / "inc.yaml").write_text("decoders: {include: inc.yaml}\n")
    err = run_bad(tmp_path, monkeypatch, capsys,
                  SUITE.replace("[{name: greedy}]", "{include: inc.yaml}"))
    assert f"{tmp_path / 'inc.yaml'} includes itself" in err
