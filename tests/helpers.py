"""Helpers shared by the tests: a plain argmax loop over the AR interface, the tmbench CLI in a
subprocess, and tiny random models (a Llama through transformers, a TM over the native GPT)."""

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


class Chars:
    """A character tokenizer for tiny models: 60 ids from the text, letters back."""

    name, eos_token_id = "chars", None

    def encode(self, t):
        return [ord(ch) % 60 + 1 for ch in t]

    def decode(self, ids):
        return "".join(chr(96 + i % 26) for i in ids)


def tiny_tm():
    """A seeded random TM model: native GPT (2 layers, width 32, 64 positions), vocabulary 61."""
    import torch

    from tmbench.backbones.gpt import GPT, GPTConfig
    from tmbench.tm.model import MaturationModel, TMConfig

    torch.manual_seed(0)
    return MaturationModel(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64)),
                           TMConfig(vocab_size=61, k_max=16), tokenizer=Chars()).eval()


def tiny_llama(vocab_size, pad=0):
    """A seeded random 2-layer transformers Llama (width 32); bos 1, eos 2."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                      pad_token_id=pad, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()
