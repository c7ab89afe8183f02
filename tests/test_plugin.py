"""A decoder from another installed package shows up and runs without touching tmbench.

The package is the worked example in examples/tmbench-plugin-example; we install it the way
pip would lay it out (package folder + .dist-info with entry_points.txt, read from its
pyproject.toml) into a temporary site directory, then run the real CLI in a subprocess.
"""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tmbench-plugin-example"


def install_example(site: Path) -> None:
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copytree(EXAMPLE / "tmbench_example_plugin", site / "tmbench_example_plugin")
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, eps in meta["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def run_cli(args, site, cwd):
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "tmbench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_entry_point_decoder_is_listed_and_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_example(site)
    out = run_cli(["list", "--json"], site, tmp_path)
    assert out.returncode == 0, out.stderr
    decoders = {d["name"]: d["source"] for d in json.loads(out.stdout)["decoders"]}
    assert decoders["no_repeat_greedy"] == "entry-point tmbench-example-plugin"

    suite = tmp_path / "plug.yaml"
    suite.write_text(
        "name: plug\nversion: 1\n"
        "dataset: {source: bbc, split: test, n_prompts: 2, prompt_len: 8, reference_len: 16}\n"
        "max_new_tokens: 12\nbatch_size: 2\nmodels: [toy-random]\n"
        "decoders: [{name: no_repeat_greedy, params: {n: 2}}]\n"
        "metrics: []\nhuman_row: false\n")
    out = run_cli(["run", "--suite", str(suite), "--out", "res", "--no-progress", "--json"], site, tmp_path)
    assert out.returncode == 0, out.stderr
    written = json.loads(out.stdout)["written"]
    assert len(written) == 1
    rec = json.loads((Path(tmp_path) / written[0] / "record.json").read_text())
    assert rec["spec"]["decoder"]["source"] == "entry-point tmbench-example-plugin"
    assert rec["spec"]["decoder"]["params"] == {"n": 2}
    for s in rec["samples"]:
        toks = s["token_ids"]
        bigrams = list(zip(toks, toks[1:]))
        assert len(bigrams) == len(set(bigrams))  # the plugin's promise holds
