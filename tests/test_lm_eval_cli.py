"""lm-eval in both directions: `tmbench lm-eval` runs local lm-eval tasks on tmbench models
(a transformers folder, a TM folder), and `tmbench export` writes AR models as transformers
folders that lm-eval's own HFLM scores with the same log-likelihoods."""

import json
import math
import re

import pytest
import torch

from helpers import tiny_native, write_tiny_gguf, write_tiny_llama, write_tiny_native
from tmbench.cli import main
from tmbench.lm_eval_cli import safe_name

pytest.importorskip("lm_eval", reason="lm-eval is not installed")

DOCS = [
    "The bank said profits rose sharply in the first quarter, and shares rose with them. " * 3,
    "Shares fell on Monday after the government announced new taxes on small firms.",
    "Football fans waited for hours as the match was delayed by rain.",
]
MC = [
    {"question": "The bank said profits", "choices": [" rose", " cinema"], "answer": 0},
    {"question": "Shares fell on", "choices": [" rain", " Monday"], "answer": 1},
    {"question": "The match was delayed by", "choices": [" rain", " taxes"], "answer": 0},
]
PPL_TASK = """task: tiny_ppl
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - {{metric: word_perplexity, aggregation: weighted_perplexity, higher_is_better: false}}
  - {{metric: bits_per_byte, aggregation: bits_per_byte, higher_is_better: false}}
metadata: {{version: 1.0}}
"""
MC_TASK = """task: tiny_mc
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    (d / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS))
    (d / "mc.jsonl").write_text("".join(json.dumps(x) + "\n" for x in MC))
    (d / "tiny_ppl.yaml").write_text(PPL_TASK.format(data=d / "docs.jsonl"))
    (d / "tiny_mc.yaml").write_text(MC_TASK.format(data=d / "mc.jsonl"))
    return d


def lm_eval_cli(capsys, *args):
    rc = main(["lm-eval", *args, "--bootstrap-iters", "0"])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    return out


def _rolling(lm, texts):
    from lm_eval.api.instance import Instance

    return lm.loglikelihood_rolling([Instance(request_type="loglikelihood_rolling", doc={},
                                              arguments=(t,), idx=i) for i, t in enumerate(texts)])


# ---- tmbench lm-eval ---------------------------------------------------------------------------
def test_lm_eval_on_an_hf_folder_matches_lm_evals_own_hflm(tmp_path, capsys, tasks, llama_dir):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    spec, out = f"hf:{llama_dir}", tmp_path / "res.json"
    both = f"{tasks / 'tiny_ppl.yaml'},{tasks / 'tiny_mc.yaml'}"
    printed = lm_eval_cli(capsys, "--model", spec, "--tasks", both, "--output", str(out))
    assert "tiny_ppl" in printed.out and "word_perplexity" in printed.out
    res = json.loads(out.read_text())
    assert res["tmbench"]["model_spec"] == spec
    assert res["config"]["model_sha"] == res["tmbench"]["adapter"]["model"]["content_hash"]
    assert set(res["task_hashes"]) == {"tiny_ppl", "tiny_mc"} and "samples" not in res
    assert 0.0 <= res["results"]["tiny_mc"]["acc,none"] <= 1.0

    max_length = res["tmbench"]["adapter"]["max_length"]  # 63: the Llama has 64 positions
    ref = simple_evaluate(model=HFLM(pretrained=str(llama_dir), max_length=max_length,
                                     batch_size=1, device="cpu"),
                          tasks=[str(tasks / "tiny_ppl.yaml"), str(tasks / "tiny_mc.yaml")],
                          task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
                          bootstrap_iters=0)
    for task, metric in (("tiny_ppl", "word_perplexity,none"), ("tiny_ppl", "bits_per_byte,none"),
                         ("tiny_mc", "acc,none")):
        assert res["results"][task][metric] == pytest.approx(ref["results"][task][metric],
                                                             rel=1e-5), (task, metric)


def test_lm_eval_on_a_tm_folder(tmp_path, capsys, tasks):
    from tmbench.lm_eval_adapter import TmbenchLM
    from tmbench.model_specs import load_model_spec

    folder = write_tiny_native(tmp_path / "tm", "tm")
    lm_eval_cli(capsys, "--model", f"path:{folder}", "--tasks", str(tasks / "tiny_ppl.yaml"),
                "--tasks", str(tasks / "tiny_mc.yaml"), "--limit", "2",
                "--output", str(tmp_path / "out"), "--log-samples")
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["tmbench"]["adapter"]["model"]["kind"] == "tm"
    assert (tmp_path / "out" / f"samples_{safe_name(f'path:{folder}')}_tiny_ppl.jsonl").exists()
    # word perplexity = exp(-total log-likelihood / words) over the first two documents
    lls = _rolling(TmbenchLM(load_model_spec(f"path:{folder}")), DOCS[:2])
    words = sum(len(re.split(r"\s+", d)) for d in DOCS[:2])  # lm-eval's word count
    assert res["results"]["tiny_ppl"]["word_perplexity,none"] == pytest.approx(
        math.exp(-sum(lls) / words), rel=1e-5)


def test_logged_samples_of_two_models_in_one_folder_keep_both(tmp_path):
    from tmbench.lm_eval_cli import write_results

    def res(spec, text):
        sample = {"doc_hash": "d", "prompt_hash": "p", "target_hash": "t", "resps": [[text]]}
        return {"results": {"tiny_ppl": {}}, "samples": {"tiny_ppl": [sample]},
                "tmbench": {"model_spec": spec}}

    a = write_results(res("hf:org/a[dtype=bfloat16]", "A"), tmp_path, log_samples=True)
    b = write_results(res("path:/runs/b/final", "B"), tmp_path, log_samples=True)
    assert a[1].name == "samples_hf__org__a__dtype=bfloat16_tiny_ppl.jsonl"
    assert b[1].name == "samples_path__runs__b__final_tiny_ppl.jsonl"
    assert [json.loads(p.read_text())["resps"] for p in (a[1], b[1])] == [[["A"]], [["B"]]]
    long = safe_name("path:/" + "x" * 300)
    assert len(long) <= 100 and long != safe_name("path:/" + "x" * 299)


@pytest.mark.parametrize("args,needle", [
    (["--model", "toy-random", "--tasks", "no_such_task_xyz"], "unknown lm-eval task"),
    (["--model", "toy-random", "--tasks", "missing/task.yaml"], "does not exist"),
    (["--model", "hf:/no/such/folder", "--tasks", "x.yaml"], "does not exist"),
    (["--model", "toy-random", "--tasks", "a.yaml", "--limit", "0"], "positive number"),
])
def test_bad_lm_eval_input_is_one_line_before_loading(capsys, args, needle):
    rc = main(["lm-eval", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and "\n" not in err, err
    assert "loading model" not in err


# ---- tmbench export ----------------------------------------------------------------------------
def test_export_native_ar_matches_under_lm_evals_hflm(tmp_path, capsys):
    from lm_eval.models.huggingface import HFLM

    from tmbench.lm_eval_adapter import TmbenchLM
    from tmbench.model_specs import load_model_spec

    src, dst = write_tiny_native(tmp_path / "ar"), tmp_path / "hf"
    assert main(["export", f"path:{src}", str(dst)]) == 0
    assert "GPT2LMHeadModel" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in dst.iterdir()}
    ours = TmbenchLM(load_model_spec(f"path:{src}"))
    ref = HFLM(pretrained=str(dst), max_length=ours.max_length, batch_size=1, device="cpu")
    a, b = _rolling(ours, DOCS), _rolling(ref, DOCS)
    assert len(ours.tok_encode(DOCS[0])) > 2 * ours.max_length  # several rolling windows
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-4)
    exported = json.loads((dst / "tmbench_export.json").read_text())
    assert exported["max_abs_logit_diff"] < 1e-4
    assert exported["lm_eval_max_length"] == ours.max_length


def test_export_bias_free_and_hf_backbone_ar_models(tmp_path):
    from tmbench.export import export_model, parity, to_transformers
    from tmbench.models.shipped import build_backbone, build_model

    m = tiny_native("ar")
    nobias = build_model("ar", build_backbone({"kind": "gpt", "n_layer": 1, "n_head": 2,
                                               "n_embd": 16, "block_size": 16, "bias": False}),
                         m.vocab_size, tokenizer=m.tokenizer).eval()
    llama = build_model("ar", build_backbone({"kind": "hf", "hf_config": {
        "model_type": "llama", "vocab_size": 50, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
        "max_position_embeddings": 32}}), m.vocab_size, tokenizer=m.tokenizer).eval()
    for model in (nobias, llama):
        hf, tok = to_transformers(model)
        assert parity(model, hf) < 1e-4 and tok.eos_token_id == m.eos_token_id
    res = export_model(f"hf:{write_tiny_llama(tmp_path / 'llama')}", tmp_path / "again")
    assert res["architecture"] == "LlamaForCausalLM" and res["max_abs_logit_diff"] == 0.0


def test_export_of_a_gguf_model_is_a_plain_transformers_folder(tmp_path, capsys):
    """A GGUF load leaves quantization_config {quant_method: gguf} (and a quantizer that refuses
    save_pretrained); the export drops both, so from_pretrained(folder) needs no gguf_file."""
    pytest.importorskip("accelerate", reason="accelerate is not installed")
    from transformers import AutoModelForCausalLM

    path, ref = write_tiny_gguf(tmp_path)
    dst = tmp_path / "hf"
    assert main(["export", f"gguf:{path}", str(dst)]) == 0, capsys.readouterr().err
    assert "quantization_config" not in json.loads((dst / "config.json").read_text())
    lm = AutoModelForCausalLM.from_pretrained(dst).eval()
    ids = torch.tensor([[5, 40, 7, 12, 33]])  # (1, 5)
    with torch.no_grad():
        torch.testing.assert_close(lm(ids).logits, ref(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_exported_ar_smollm2_runs_under_the_printed_lm_eval_command(tmp_path, capsys):
    """`tmbench export ar-smollm2 DIR`, then the lm_eval command it prints, on three BBC test
    articles with the project's perplexity task: transformers loads DIR without gguf_file, and
    lm-eval's own hf model gives the numbers of `tmbench lm-eval` on the source model. Loads
    SmolLM2-135M from its wheel three times (minutes on CPU)."""
    import os
    import shlex
    import subprocess
    import sys

    import yaml
    from transformers import AutoModelForCausalLM

    from tmbench.data.bbc import load_bbc
    from tmbench.metrics.perplexity import BBC_TASK, TASKS_DIR
    from tmbench.model_specs import validate_model_spec

    try:
        validate_model_spec("ar-smollm2")
    except ValueError as e:
        pytest.skip(f"ar-smollm2 cannot be loaded here: {e}")
    dst = tmp_path / "ar-smollm2"
    assert main(["export", "ar-smollm2", str(dst)]) == 0
    printed = capsys.readouterr().out
    cmd = re.search(r"evaluate: (lm_eval .*?) --tasks \.\.\.", printed).group(1)
    assert "quantization_config" not in json.loads((dst / "config.json").read_text())
    AutoModelForCausalLM.from_pretrained(dst)  # raised before: a GGUF config needs gguf_file

    docs = tmp_path / "bbc.jsonl"  # the project's task, pointed at three articles
    docs.write_text("".join(json.dumps({"id": a.id, "text": a.text}) + "\n"
                            for a in load_bbc("test")[:3]))
    task = yaml.safe_load((TASKS_DIR / f"{BBC_TASK}.yaml").read_text())
    task["dataset_kwargs"] = {"data_files": {"test": str(docs)}}
    (tmp_path / "tasks").mkdir()
    task_file = tmp_path / "tasks" / f"{BBC_TASK}.yaml"
    task_file.write_text(yaml.safe_dump(task))

    out = tmp_path / "lm_eval_out"
    argv = shlex.split(cmd)[1:] + ["--tasks", str(task_file), "--device", "cpu",
                                   "--batch_size", "1", "--output_path", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "lm_eval", *argv], capture_output=True,
                       text=True, env=env, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    theirs = json.loads(next(out.rglob("results_*.json")).read_text())["results"][BBC_TASK]

    ours_file = tmp_path / "ours.json"
    lm_eval_cli(capsys, "--model", "ar-smollm2", "--tasks", str(task_file),
                "--output", str(ours_file))
    ours = json.loads(ours_file.read_text())["results"][BBC_TASK]
    for m in ("word_perplexity,none", "bits_per_byte,none"):
        assert theirs[m] == pytest.approx(ours[m], rel=1e-4), (m, theirs[m], ours[m])


def test_export_refuses_tm_and_non_empty_folders(tmp_path, capsys):
    tm = write_tiny_native(tmp_path / "tm", "tm")
    assert main(["export", f"path:{tm}", str(tmp_path / "x")]) == 2
    assert "Token Maturation" in capsys.readouterr().err
    assert main(["export", f"path:{tm}", str(tm)]) == 2
    assert "not empty" in capsys.readouterr().err
