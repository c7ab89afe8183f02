import shutil
import subprocess

import numpy as np
import pytest

from helpers import argmax_tokens
from tmbench.registry import register_decoder
from tmbench.report import build_report
from tmbench.runner import Runner
from tmbench.suites import load_suite
from tmbench.types import DecodeOutput, model_kind


@register_decoder("test_traced")
@model_kind("ar")
def traced(model, prompts, *, max_new_tokens, generator, tail_len: int = 4):
    toks = argmax_tokens(model, prompts, max_new_tokens)
    K = tail_len
    trace = {"entropy": {"1": [[5.0 - 0.5 * i for i in range(K)]] * max_new_tokens,
                         "20": [[3.0 - 0.6 * i for i in range(K)]] * max_new_tokens},
             "displacement": [[1.0 / (i + 1) for i in range(K)]] * max_new_tokens,
             "cos_final": [[0.5 + 0.1 * i for i in range(K)]] * max_new_tokens,
             "top": [[1, 2, 3, 4, 5]] * max_new_tokens}
    return DecodeOutput(toks, {"trace": [trace] * len(prompts), "agree_front_argmax": [1.0] * len(prompts)})


SUITE = """name: rep
version: 2
dataset: {source: bbc, split: test, n_prompts: 4, prompt_len: 6, reference_len: 20}
max_new_tokens: 8
batch_size: 4
seeds: [0, 1]
models: [toy-random]
decoders:
  - {name: greedy, label: greedy, seeds: [0]}
  - {name: nucleus, label: nucleus-0.95, params: {p: 0.95}}
  - {name: test_traced, label: traced-4, params: {tail_len: 4}, seeds: [0]}
  - {name: test_traced, label: traced-8, params: {tail_len: 8}, seeds: [0]}
metrics: [{name: repetition}, {name: diversity}]
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "s.yaml").write_text(SUITE)
    Runner(load_suite(str(tmp / "s.yaml")), tmp / "runs", progress=False, log=lambda *a: None).run()
    return build_report(tmp / "runs", tmp / "report.html")


def test_report_is_self_contained_with_tables_and_plots(report):
    page = report.read_text()
    assert page.count("<table") >= 2 and page.count("data:image/png;base64,") >= 3
    assert "Maturation dynamics" in page and "Samples" in page and "Environment" in page
    assert "human" in page and "nucleus-0.95" in page
    # no network: nothing is fetched from anywhere
    assert "http://" not in page and "https://" not in page and "<script" not in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian package 'chromium'); "
                                             ".ci/run installs it")
def test_report_renders_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table") >= 2 and dom.count("<img") >= 3 and "<td>" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(common + [f"--screenshot={shot}", "--window-size=1280,2400", url],
                   capture_output=True, timeout=120)
    assert shot.exists()
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]  # (H, W, 3) floats in [0, 1]
    # The plots are drawn in matplotlib's default blue (#1f77b4); the table header is grey.
    blue = np.abs(img - np.array([0x1F, 0x77, 0xB4]) / 255).max(-1) < 0.06
    assert blue.sum() > 500, "no plot pixels rendered"
    assert (img.mean(-1) < 0.5).sum() > 2000, "no text rendered"
