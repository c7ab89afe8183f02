import pytest

from tmbench.suites import list_suites, load_suite

BASE = """name: s
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 8, reference_len: 16}
max_new_tokens: 4
models: [toy-random]
decoders: [{name: greedy}]
"""


def write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return str(p)


def test_shipped_suites_load():
    for name in list_suites():
        s = load_suite(name)
        assert s.version >= 1 and s.decoders and s.models


def test_minimal_suite_and_defaults(tmp_path):
    s = load_suite(write(tmp_path, BASE))
    assert s.seeds == (0,) and s.batch_sizes == (8,) and s.samples_per_prompt == 1
    assert s.decoders[0].label == "greedy" and len(s.content_hash) == 16


def test_include_baselines(tmp_path):
    text = BASE.replace("decoders: [{name: greedy}]", "decoders: {include: baselines/default.yaml}")
    s = load_suite(write(tmp_path, text))
    labels = [d.label for d in s.decoders]
    assert "nucleus-0.95" in labels and "contrastive-5-0.6" in labels
    assert next(d for d in s.decoders if d.label == "greedy").seeds == (0,)


@pytest.mark.parametrize("old,new,needle", [
    ("version: 1", "version: one", "version: must be an integer"),
    ("version: 1", "version: 0", "version: must be an integer in [1"),
    ("max_new_tokens: 4", "max_new_tokens: -3", "max_new_tokens"),
    ("models: [toy-random]", "models: []", "models: must be a non-empty list"),
    ("decoders: [{name: greedy}]", "decoders: [{nme: greedy}]", "decoders[0]"),
    ("decoders: [{name: greedy}]", "decoders: [greedy, greedy]", "labels must be unique"),
    ("source: bbc", "source: ftp", "dataset.source"),
    ("name: s", "name: ../../etc", "name: must be a name"),
    ("name: s", "name: s\nbogus: 1", "unknown fields ['bogus']"),
    ("n_prompts: 2", "n_prompts: 2, colour: red", "unknown fields ['colour']"),
])
def test_bad_suites_name_the_problem(tmp_path, old, new, needle):
    with pytest.raises(ValueError) as e:
        load_suite(write(tmp_path, BASE.replace(old, new)))
    assert needle in str(e.value)


def test_invalid_yaml_reports_line(tmp_path):
    with pytest.raises(ValueError, match="not valid YAML at line"):
        load_suite(write(tmp_path, BASE + "  - : [\n"))


def test_an_include_may_set_its_entries_seeds(tmp_path):
    (tmp_path / "b.yaml").write_text(
        "decoders:\n  - {name: greedy, label: greedy, seeds: [0]}\n"
        "  - {name: nucleus, label: nuc, params: {p: 0.9}}\n")
    suite = ("name: s\nversion: 1\ndataset: {source: bbc, split: test, n_prompts: 2}\n"
             "max_new_tokens: 2\nseeds: [0, 1]\nmodels: [toy-random]\ndecoders:\n"
             "  - {include: b.yaml, seeds: SEEDS}\n")
    (tmp_path / "s.yaml").write_text(suite.replace("SEEDS", "[3]"))
    s = load_suite(str(tmp_path / "s.yaml"))
    assert {d.label: d.seeds for d in s.decoders} == {"greedy": (3,), "nuc": (3,)}
    (tmp_path / "s.yaml").write_text(suite.replace("SEEDS", "[1, 1]"))
    with pytest.raises(ValueError, match="seeds: has duplicates"):
        load_suite(str(tmp_path / "s.yaml"))


def test_unknown_suite_name_suggests():
    with pytest.raises(ValueError, match="Known suites"):
        load_suite("no-such-suite")


def test_decoder_entries_name_their_models_and_includes_select_labels(tmp_path):
    (tmp_path / "b.yaml").write_text(
        "decoders:\n  - {name: greedy, label: greedy}\n  - {name: nucleus, label: nuc, params: {p: 0.9}}\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\nversion: 1\ndataset: {source: bbc, split: test, n_prompts: 2}\nmax_new_tokens: 2\n"
        "models: [toy-random, smollm2-135m]\ndecoders:\n"
        "  - {include: b.yaml, models: [toy-random]}\n"
        "  - {include: b.yaml, labels: [greedy], models: [smollm2-135m]}\n"
        "  - {name: maturation, label: tm, models: [smollm2-135m]}\n")
    s = load_suite(str(tmp_path / "s.yaml"))
    got = {d.label: d.models for d in s.decoders}
    assert got == {"greedy": ("toy-random", "smollm2-135m"), "nuc": ("toy-random",),
                   "tm": ("smollm2-135m",)}
    (tmp_path / "bad.yaml").write_text(
        "name: s\nversion: 1\ndataset: {source: bbc, split: test, n_prompts: 2}\nmax_new_tokens: 2\n"
        "models: [toy-random]\ndecoders:\n  - {name: greedy, models: [ar-bbc-tiny]}\n")
    with pytest.raises(ValueError, match="not in the suite's models"):
        load_suite(str(tmp_path / "bad.yaml"))


def test_readme_states_the_default_suites_run_count(monkeypatch):
    """The README's count is the plan's (it said 22 when the suite had 23)."""
    import re
    from pathlib import Path

    import tmbench.model_specs as specs
    import tmbench.plan as plan

    # the plan without its checks (hashing weight files, dry runs of the decoders): the runs
    monkeypatch.setattr(specs, "validate_model_spec", specs.parse_model_spec)
    monkeypatch.setattr(plan, "dry_run", lambda *a: None)
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    said = re.search(r"(\d+) runs and the human row", text)  # the first: the suite's count
    assert said, "the README no longer states the default suite's run count"
    suite = load_suite("default")
    assert int(said.group(1)) == len(plan.plan_runs(suite, None, None, None, log=lambda *a: None))
    assert suite.human_row


def test_headline_field_is_presentation_only(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tmbench.suites import with_suite_headlines

    plain = load_suite(write(tmp_path, BASE))
    chosen = load_suite(write(tmp_path, BASE + 'headline: [Dist-2, "rep[n=2,unit=wordpunct]"]\n'))
    assert chosen.headline == ("Dist-2", "rep[n=2,unit=wordpunct]") and plain.headline == ()
    assert chosen.content_hash == plain.content_hash  # no part of the hash, nor of any run key
    for bad in ("headline: Rep-2", "headline: []", "headline: [Rep-2, Rep-2]", "headline: [1]",
                "headline: [" + ", ".join(f"m{i}" for i in range(13)) + "]"):
        with pytest.raises(ValueError, match="headline"):
            load_suite(write(tmp_path, BASE + bad + "\n"))
    # tables find their suite file by name; another version keeps the default
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "s.yaml").write_text(BASE + "headline: [MAUVE]\n")
    monkeypatch.chdir(tmp_path)
    tables = [SimpleNamespace(suite="s", version=v, facts={}) for v in (1, 2)]
    with_suite_headlines(tables, warn=pytest.fail)
    assert tables[0].facts == {"headline": ["MAUVE"]} and tables[1].facts == {}
