"""Which code made a run: decoder, model and metric implementations are named in the record
(package, version, sha256 of the module's source); a changed decoder or model implementation is
a new run key, a changed metric implementation rescores the stored samples, and ``--rerun``
generates the planned runs again.

The plugin is faked as test_plugin.py does: a package folder plus a ``.dist-info`` in a
temporary site directory, here put on ``sys.path`` of this process.
"""

import importlib
import json
import sys
from pathlib import Path

import pytest

from tmbench.cli import main
from tmbench.registry import DECODERS, METRICS, register_decoder
from tmbench.results import read_record, run_key
from tmbench.runner import Runner
from tmbench.stages.record import key_part
from tmbench.suites import load_suite
from tmbench.types import Score, model_kind

DECODER_SRC = '''from tmbench.types import model_kind


@model_kind("ar")
def plug_greedy(model, prompts, *, max_new_tokens, generator):
    out = model.prefill(prompts)
    toks = [[] for _ in prompts]
    for _ in range(max_new_tokens):
        nxt = out.logits.argmax(-1)
        for b, t in enumerate(nxt.tolist()):
            toks[b].append(t)
        out = model.step(out.state, nxt)
    return toks
'''

METRIC_SRC = '''from tmbench.types import Score

FACTOR = {factor}


def plug_len(samples, *, ctx):
    per = [FACTOR * len(s.token_ids) for s in samples]
    return {{"plug_len": Score(sum(per) / len(per), per)}}
'''

SUITE = """name: code
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}
max_new_tokens: 4
batch_size: 2
models: [toy-random]
decoders: [{name: DECODER}]
metrics: METRICS
human_row: false
"""

CALLS = {"gen": 0}


@register_decoder("code_test_argmax")
@model_kind("ar")
def counted_argmax(model, prompts, *, max_new_tokens, generator):
    if max_new_tokens > 2:  # not the plan's two-token dry run
        CALLS["gen"] += 1
    out = model.prefill(prompts)
    toks = [[] for _ in prompts]
    for _ in range(max_new_tokens):
        nxt = out.logits.argmax(-1)
        for b, t in enumerate(nxt.tolist()):
            toks[b].append(t)
        out = model.step(out.state, nxt)
    return toks


def suite(tmp_path, decoder, metrics="[]"):
    p = tmp_path / "code.yaml"
    p.write_text(SUITE.replace("DECODER", decoder).replace("METRICS", metrics))
    return load_suite(str(p))


def run(s, out, **kw):
    return Runner(s, out, progress=False, log=lambda *a: None, **kw).run()


def records(out):
    return sorted(Path(out).glob("*/v*/*/record.json"))


def fake_plugin(site: Path, version: str) -> None:
    """Package ``tmb_codeplug`` of distribution ``tmb-codeplug`` at ``version`` in ``site``."""
    for old in site.glob("tmb_codeplug-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"tmb_codeplug-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tmb-codeplug\nVersion: {version}\n")
    (info / "top_level.txt").write_text("tmb_codeplug\n")
    importlib.invalidate_caches()


def load_plugin(site: Path):
    """Import (again) the plugin module and register its decoder, as a new process would."""
    sys.modules.pop("tmb_codeplug", None)
    importlib.invalidate_caches()
    mod = importlib.import_module("tmb_codeplug")
    DECODERS.register("tmb_plug_greedy", mod.plug_greedy)
    return mod


def test_plugin_decoder_whose_source_or_version_changes_is_a_new_run(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "tmb_codeplug").mkdir(parents=True)
    src = site / "tmb_codeplug" / "__init__.py"
    src.write_text(DECODER_SRC)
    fake_plugin(site, "0.1.0")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "tmb_codeplug", raising=False)
    load_plugin(site)
    s, out = suite(tmp_path, "tmb_plug_greedy"), tmp_path / "res"

    assert len(run(s, out).done) == 1
    (first,) = records(out)
    assert run(s, out).skipped  # nothing changed: stored

    src.write_text(DECODER_SRC + "\n# a changed implementation\n")
    load_plugin(site)
    summary = run(s, out)
    assert len(summary.done) == 1 and not summary.skipped  # new source: new key, generated
    assert len(records(out)) == 2

    fake_plugin(site, "0.2.0")
    load_plugin(site)
    summary = run(s, out)
    assert len(summary.done) == 1 and not summary.skipped  # new version: new key, generated
    rec = read_record(first)
    code = rec["spec"]["decoder"]["code"]
    assert code["package"] == "tmb-codeplug" and code["version"] == "0.1.0"
    assert code["object"] == "tmb_codeplug:plug_greedy" and len(code["sha256"]) == 64
    assert rec["environment"]["plugins"] == {"tmb-codeplug": "0.1.0"}
    recs = [read_record(p) for p in records(out)]
    assert sorted(r["spec"]["decoder"]["code"]["version"] for r in recs) == ["0.1.0", "0.1.0", "0.2.0"]
    assert len({r["key"] for r in recs}) == 3
    newest = next(r for r in recs if r["spec"]["decoder"]["code"]["version"] == "0.2.0")
    assert newest["environment"]["plugins"] == {"tmb-codeplug": "0.2.0"}
    DECODERS._entries.pop("tmb_plug_greedy", None)


def test_builtin_and_model_code_are_in_the_record_and_the_key(tmp_path):
    out = tmp_path / "res"
    run(suite(tmp_path, "greedy"), out)
    rec = read_record(records(out)[0])
    import tmbench

    dec = rec["spec"]["decoder"]["code"]
    assert dec["package"] == "tmbench" and dec["version"] == tmbench.__version__
    assert dec["object"] == "tmbench.decoders.greedy:greedy"
    model = rec["spec"]["model"]["code"]
    assert model["loader"]["object"] == "tmbench.models.toy:load_toy"
    assert model["class"]["package"] == "tmbench" and len(model["class"]["sha256"]) == 64
    assert rec["environment"]["plugins"] == {}
    assert run_key(key_part(rec["spec"])) == rec["key"]
    # another tmbench version, or another source of the decoder or model module: another run
    for part, field in (("decoder", "version"), ("decoder", "sha256")):
        spec = json.loads(json.dumps(rec["spec"]))
        spec[part]["code"][field] = "changed"
        assert run_key(key_part(spec)) != rec["key"]
    spec = json.loads(json.dumps(rec["spec"]))
    spec["model"]["code"]["class"]["sha256"] = "changed"
    assert run_key(key_part(spec)) != rec["key"]
    # a spec from before code identities hashes as it did then
    old = json.loads(json.dumps(rec["spec"]))
    del old["decoder"]["code"], old["model"]["code"]
    part = key_part(old)
    assert "code" not in part["decoder"] and "code" not in part["model"]


def test_code_identity_of_code_no_distribution_ships():
    from tmbench.registry import code_identity

    got = code_identity(counted_argmax)
    assert got["package"] is None and got["version"] is None
    assert got["object"] == "test_code_identity:counted_argmax"
    assert got["sha256"] == __import__("hashlib").sha256(Path(__file__).read_bytes()).hexdigest()


def test_rerun_regenerates_and_rescores(tmp_path, capsys, monkeypatch):
    s, out = suite(tmp_path, "code_test_argmax"), tmp_path / "res"
    CALLS["gen"] = 0
    first = run(s, out)
    assert len(first.done) == 1 and CALLS["gen"] == 1
    (path,) = records(out)
    before = read_record(path)
    (path.parent / "partial.jsonl").write_text("not a batch\n")  # left by an interrupted run
    assert run(s, out).skipped and CALLS["gen"] == 1
    rows = Runner(s, out, progress=False, log=lambda *a: None, rerun=True).plan()
    assert [r["status"] for r in rows] == ["to generate"]
    again = run(s, out, rerun=True)
    assert len(again.done) == 1 and not again.skipped and CALLS["gen"] == 2
    after = read_record(path)
    assert after["samples"] == before["samples"]  # the same key, generated again
    assert not (path.parent / "partial.jsonl").exists()
    # the CLI flag
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "code.yaml", "--out", "res", "--rerun", "--no-progress",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["written"]) == 1 and CALLS["gen"] == 3


def test_changed_metric_implementation_is_rescored_not_regenerated(tmp_path, monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    src = mods / "tmb_code_metric.py"
    monkeypatch.syspath_prepend(str(mods))

    def load(factor):
        src.write_text(METRIC_SRC.format(factor=factor))
        sys.modules.pop("tmb_code_metric", None)
        importlib.invalidate_caches()
        METRICS.register("tmb_plug_len", importlib.import_module("tmb_code_metric").plug_len)

    load(1.0)
    s = suite(tmp_path, "code_test_argmax", metrics="[{name: tmb_plug_len}]")
    out = tmp_path / "res"
    CALLS["gen"] = 0
    run(s, out)
    (path,) = records(out)
    rec = read_record(path)
    assert run(s, out).skipped  # the same implementation: nothing to do

    load(2.0)
    summary = run(s, out)
    assert summary.rescored == [path.parent] and not summary.done and CALLS["gen"] == 1
    new = read_record(path)
    assert new["samples"] == rec["samples"]
    assert new["metrics"]["plug_len"]["value"] == 2 * rec["metrics"]["plug_len"]["value"]
    assert rec["metric_runs"]["tmb_plug_len"]["code"]["object"] == "tmb_code_metric:plug_len"
    assert new["metric_runs"]["tmb_plug_len"]["code"]["sha256"] != \
        rec["metric_runs"]["tmb_plug_len"]["code"]["sha256"]
    assert run(s, out).skipped  # rescored once
    METRICS._entries.pop("tmb_plug_len", None)


@pytest.mark.slow
def test_entry_point_plugin_version_bump_reruns_through_the_cli(tmp_path):
    """The tester's case end to end: the example plugin installed by entry point at 0.1.0, then
    its decoder edited and its version set to 0.2.0; each is a new run, not a stored one."""
    from test_plugin import EXAMPLE, install_example, run_cli

    site = tmp_path / "site"
    site.mkdir()
    install_example(site)
    suite_file = tmp_path / "plug.yaml"
    suite_file.write_text(SUITE.replace("DECODER", "no_repeat_greedy").replace("METRICS", "[]"))
    args = ["run", "--suite", str(suite_file), "--out", "res", "--no-progress", "--json"]

    def written():
        got = run_cli(args, site, tmp_path)
        assert got.returncode == 0, got.stderr
        return json.loads(got.stdout)["written"]

    (first,) = written()
    assert written() == []
    init = site / "tmbench_example_plugin" / "__init__.py"
    init.write_text(init.read_text() + "\n# edited\n")
    assert len(written()) == 1
    (info,) = site.glob("*.dist-info")
    (info / "METADATA").write_text((info / "METADATA").read_text().replace("0.1.0", "0.2.0"))
    info.rename(site / info.name.replace("0.1.0", "0.2.0"))
    (last,) = written()
    rec = json.loads((tmp_path / first / "record.json").read_text())
    assert rec["spec"]["decoder"]["code"]["package"] == "tmbench-example-plugin"
    assert rec["environment"]["plugins"] == {"tmbench-example-plugin": "0.1.0"}
    rec = json.loads((tmp_path / last / "record.json").read_text())
    assert rec["spec"]["decoder"]["code"]["version"] == "0.2.0"
    assert rec["environment"]["plugins"] == {"tmbench-example-plugin": "0.2.0"}
    assert EXAMPLE.exists()
