"""Model specs: parsing, cheap validation, and loading tiny random models from local folders
(a transformers Llama written by save_pretrained, tmbench AR and TM folders)."""

import hashlib
import json

import pytest
import torch

from helpers import (run_tmbench, tiny_native, write_tiny_gguf, write_tiny_llama,
                     write_tiny_native)
from tmbench.model_specs import (ModelSpec, load_model_spec, parse_model_spec,
                                  validate_model_spec)
from tmbench.registry import DECODERS

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def sha16(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ---- parsing -----------------------------------------------------------------------------------
def test_parse_forms_and_canonical_strings(tmp_path):
    assert parse_model_spec("toy-random") == ModelSpec("registered", "toy-random")
    s = parse_model_spec("hf:org/model[revision=abc,trust_remote_code=true]")
    assert (s.kind, s.target) == ("hf", "org/model")
    assert s.params == {"revision": "abc", "trust_remote_code": True}
    assert str(s) == "hf:org/model[revision=abc,trust_remote_code=true]"
    assert parse_model_spec(str(s)) == s
    d = parse_model_spec({"name": "hf", "params": {"pretrained": "org/model", "revision": "abc",
                                                    "trust_remote_code": True}})
    assert d == s
    assert parse_model_spec({"name": "toy-random", "params": {"dtype": "bfloat16"}}).params == \
        {"dtype": "bfloat16"}
    assert parse_model_spec("gguf:/x/m.gguf").kind == "gguf"
    assert parse_model_spec("path:/x/run/final").kind == "path"
    write_tiny_native(tmp_path / "ar")
    assert parse_model_spec(str(tmp_path / "ar")) == ModelSpec("path", str(tmp_path / "ar"))
    hf = write_tiny_llama(tmp_path / "hf")
    assert parse_model_spec(str(hf) + "/").kind == "hf"  # a bare transformers folder


@pytest.mark.parametrize("spec,needle", [
    ("foo:bar", "unknown model spec kind 'foo'"),
    ("toy-randum", "did you mean 'toy-random'"),
    ("toy-randum", "hf:<hub name or local folder>"),
    ("hf:", "nothing after 'hf:'"),
    ("hf:x[revison=main]", "unknown option(s) ['revison']"),
    ("hf:x[trust_remote_code=maybe]", "must be bool"),
    ("hf:x[dtype=int8]", "dtype must be one of"),
    ({"name": "hf", "params": {"revision": "main"}}, "needs params.pretrained"),
    ({"name": "hf", "label": "x"}, "needs 'name'"),
    ({"name": "path", "params": {"path": "/x", "dtype": 16}}, "must be str"),
    ("", "non-empty string"),
])
def test_bad_specs_say_what_is_accepted(spec, needle):
    with pytest.raises(ValueError) as e:
        parse_model_spec(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)


# ---- validation --------------------------------------------------------------------------------
def test_offline_hub_name_fails_at_validation_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as e:
        validate_model_spec("hf:some-org/surely-not-cached-model")
    msg = str(e.value)
    assert "unreachable" in msg and "hf:/path/to/model" in msg and "\n" not in msg


def test_failed_hub_lookup_fails_fast_in_one_line(monkeypatch):
    import tmbench.model_specs as specs

    def no_network(repo, revision):
        raise ConnectionError("no route to host")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(specs, "hub_offline", lambda: False)
    monkeypatch.setattr(specs, "_hub_lookup", no_network)
    with pytest.raises(ValueError, match="unreachable .ConnectionError.*local folder"):
        validate_model_spec("hf:some-org/surely-not-cached-model")


def test_validation_names_what_a_folder_lacks(tmp_path, llama_dir):
    cases = {
        "path:" + str(tmp_path / "nope"): "does not exist",
        "hf:" + str(tmp_path / "nope"): "does not exist",
        "gguf:" + str(tmp_path / "m.gguf"): "not an existing .gguf file",
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "llama"}))
    cases["hf:" + str(empty)] = "no model.safetensors"
    (empty / "pytorch_model.bin").write_bytes(b"x")
    cases["hf:" + str(empty) + "[allow_pickle=false]"] = "allow_pickle: true"
    run = tmp_path / "run"
    write_tiny_native(run / "final")
    (run / "config.json").write_text("{}")
    cases["path:" + str(run)] = "training run folder"
    cases["path:" + str(llama_dir)] = "use hf:<folder>"
    for spec, needle in cases.items():
        with pytest.raises(ValueError) as e:
            validate_model_spec(spec)
        assert needle in str(e.value) and "\n" not in str(e.value), (spec, str(e.value))
    assert validate_model_spec("hf:" + str(llama_dir)).kind == "hf"


# ---- loading -----------------------------------------------------------------------------------
def test_hf_folder_loads_with_identity_and_greedy_decodes(llama_dir):
    spec = f"hf:{llama_dir}"
    m = load_model_spec(spec)
    ident = m.identity()
    assert ident["name"] == spec and ident["kind"] == "ar"
    assert ident["content_hash"] == sha16(llama_dir / "model.safetensors")
    prompt = m.tokenizer.encode("The bank said")
    out = DECODERS.get("greedy")(m, [prompt], max_new_tokens=6,
                                 generator=[torch.Generator().manual_seed(0)])
    ref = m.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                           eos_token_id=None)[0, len(prompt):].tolist()
    assert out[0] == ref[:len(out[0])] and len(out[0]) > 0
    bf = load_model_spec({"name": "hf", "params": {"pretrained": str(llama_dir),
                                                   "dtype": "bfloat16"}})
    assert bf.identity()["dtype"] == "bfloat16"
    assert bf.identity()["name"] == spec + "[dtype=bfloat16]"


def test_gguf_file_loads_with_identity_and_same_logits(tmp_path):
    pytest.importorskip("accelerate", reason="accelerate is not installed")
    path, ref = write_tiny_gguf(tmp_path)
    m = load_model_spec(f"gguf:{path}")
    assert m.identity()["name"] == f"gguf:{path}"
    assert m.identity()["content_hash"] == sha16(path)
    assert parse_model_spec(str(path)).kind == "gguf"  # a bare .gguf file
    ids = m.tokenizer.encode("The bank said profits")
    with torch.no_grad():
        a, b = m.model(torch.tensor([ids])).logits, ref(torch.tensor([ids])).logits
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", ["ar", "tm"])
def test_tmbench_folder_loads_as_path_or_bare_folder(tmp_path, kind):
    folder = write_tiny_native(tmp_path / kind, kind)
    for spec in (f"path:{folder}", str(folder)):
        m = load_model_spec(spec)
        ident = m.identity()
        assert m.kind == kind and ident["name"] == f"path:{folder}"
        assert ident["content_hash"] == sha16(folder / "model.safetensors")
    ref = tiny_native(kind)
    for a, b in zip(m.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


def test_registered_names_keep_their_identity():
    m = load_model_spec("toy-random")
    assert m.identity()["name"] == "toy-random"
    assert m.identity()["content_hash"] == "toy-seed0"


# ---- end to end through the runner -------------------------------------------------------------
SUITE = """name: specs
version: 1
dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 6, reference_len: 12}
max_new_tokens: 4
batch_size: 2
models: [toy-random]
decoders: [{name: greedy}]
metrics: [{name: repetition, params: {}}]
human_row: false
"""


def test_run_accepts_an_hf_folder_spec(tmp_path, llama_dir):
    (tmp_path / "s.yaml").write_text(SUITE)
    spec = f"hf:{llama_dir}"
    r = run_tmbench(["run", "--suite", "s.yaml", "--model", spec, "--out", "res", "--json",
                     "--no-progress"], cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = list((tmp_path / "res").rglob("record.json"))
    assert len(recs) == 1
    model = json.loads(recs[0].read_text())["spec"]["model"]
    assert model["name"] == spec and model["content_hash"] == sha16(llama_dir / "model.safetensors")


def test_default_suite_plans_every_baseline_for_a_model_it_does_not_list(tmp_path):
    """``tmbench run --suite default --model hf:<folder>``: a model the suite does not name runs
    every decoder entry that fits its kind, one per label; nothing fitting is a plan-time error."""
    from tmbench.plan import plan_suite
    from tmbench.suites import load_suite

    folder = write_tiny_llama(tmp_path / "llama", positions=512)
    spec = f"hf:{folder}"
    suite = load_suite("default")
    said = []
    plan = plan_suite(suite, load_model_spec, models=[spec], log=said.append)
    baselines = {d.label for d in suite.decoders if d.name != "maturation"}
    assert {p.decoder.label for p in plan.runs} == baselines
    assert all(p.model == spec for p in plan.runs)
    first = {}
    for d in suite.decoders:
        first.setdefault(d.label, d)
    assert len(plan.runs) == sum(len(first[b].seeds or suite.seeds) for b in baselines)
    assert any("not a model of suite default" in s for s in said)
    with pytest.raises(ValueError, match="nothing to run"):
        plan_suite(suite, load_model_spec, models=[spec], decoders=["tm-a0.9"], log=said.append)


@pytest.mark.slow
def test_default_suite_runs_on_an_hf_folder_through_the_cli(tmp_path):
    """README: ``tmbench run --suite default --model hf:<folder>``, offline, every metric of the
    default suite (the Gemma judge and MiniLM featurizer included), on two prompts."""
    folder = write_tiny_llama(tmp_path / "llama", positions=512)
    r = run_tmbench(["run", "--suite", "default", "--model", f"hf:{folder}", "--decoder", "greedy",
                     "--limit", "2", "--out", "res", "--no-progress"], cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    (rec,) = (tmp_path / "res").rglob("record.json")
    got = json.loads(rec.read_text())
    assert got["spec"]["model"]["name"] == f"hf:{folder}"
    assert any(k.startswith("gen_ppl[agg=pooled,judge=gemma3-270m]") for k in got["metrics"])
