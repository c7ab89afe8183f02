"""Helpers shared by the tests: a plain argmax loop over the AR interface and the tmbench CLI
in a subprocess."""

import os
import subprocess
import sys


def argmax_tokens(model, prompts, max_new_tokens, bias=0.0):
    """Greedy continuations through ``model.prefill``/``model.step``, no EOS handling."""
    out = model.prefill(prompts)
    toks = [[] for _ in prompts]
    for _ in range(max_new_tokens):
        nxt = (out.logits + bias).argmax(-1)
        for b, t in enumerate(nxt.tolist()):
            toks[b].append(t)
        out = model.step(out.state, nxt)
    return toks


def run_tmbench(args, cwd, fault=None, check=True, module=("-m", "tmbench"), prefix=()):
    """``python -m tmbench ARGS`` (or ``prefix`` + module, e.g. torchrun) in ``cwd``;
    ``fault`` sets TMBENCH_FAULT. Asserts success unless ``check`` is False."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("TMBENCH_FAULT", None)
    if fault:
        env["TMBENCH_FAULT"] = fault
    cmd = [sys.executable, *prefix, *module, *args]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r
