"""Helpers shared by the tests, the one module for them (``from helpers import ...``):

- a plain argmax loop over the AR interface and the tmbench CLI in a subprocess;
- toy tokenizers (characters, integer ids, whitespace words);
- tiny random models in memory: a TM over the native GPT (or a transformers GPT-2), a
  transformers Llama and its ``generate`` as a reference, a Llama with a BPE trained on BBC;
- tiny random models on disk: a transformers Llama folder, tmbench AR and TM folders, a GGUF;
- metric-test fixtures: samples, a context, a bigram judge, a hash featurizer.

Heavy imports (torch, transformers, tokenizers, tmbench) happen inside the helpers."""

import hashlib
import os
import subprocess
import sys
from functools import lru_cache


# ---- running models and the CLI ----------------------------------------------------------------
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


# ---- toy tokenizers ----------------------------------------------------------------------------
class Chars:
    """A character tokenizer for tiny models: 60 ids from the text, letters back."""

    name, eos_token_id = "chars", None

    def encode(self, t):
        return [ord(ch) % 60 + 1 for ch in t]

    def decode(self, ids):
        return "".join(chr(96 + i % 26) for i in ids)


class Tok:
    """Integer ids written as text ("3 1 4"), with an optional EOS id."""

    name = "ids"

    def __init__(self, eos=None):
        self.eos_token_id = eos

    def encode(self, text):
        return [int(t) for t in text.split()]

    def decode(self, ids):
        return " ".join(map(str, ids))


class WordTok:
    """Whitespace tokenizer over a growing vocabulary (id 0 = eos)."""

    def __init__(self):
        self.vocab, self.eos_token_id, self.name = {"<eos>": 0}, 0, "words"

    def encode(self, text: str) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

    def decode(self, ids) -> str:
        inv = {v: k for k, v in self.vocab.items()}
        return " ".join(inv[i] for i in ids)


# ---- tiny random models in memory --------------------------------------------------------------
def randomize_tm(m, seed=0):
    """Give a TM's zero-initialised conditioning and identity head random values, so that every
    path of the network matters (and outputs depend on everything). Returns ``m.eval()``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (m.head.weight, m.alpha_mlp[2].weight, m.film.weight):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def tiny_tm(readout="next", seed=0, *, k_max=16, block_size=64, backbone="gpt", vocab_size=61,
            randomize=False, tokenizer=None, **tm):
    """A seeded random TM model in eval mode: a 2-layer backbone of width 32 with ``block_size``
    positions (``backbone`` "gpt": the native GPT; "hf": a transformers GPT-2), vocabulary
    ``vocab_size``; ``tm`` sets further TMConfig fields. ``randomize``: see :func:`randomize_tm`
    (same seed). Pass ``tokenizer=Chars()`` for a model that decodes to text."""
    import torch

    from tmbench.tm.model import MaturationModel, TMConfig

    torch.manual_seed(seed)
    if backbone == "gpt":
        from tmbench.backbones.gpt import GPT, GPTConfig

        bb = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=block_size))
    elif backbone == "hf":
        from transformers import GPT2Config, GPT2LMHeadModel

        from tmbench.backbones.hf_adapter import HFBackbone

        bb = HFBackbone(GPT2LMHeadModel(GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=vocab_size, n_positions=block_size,
            bos_token_id=0, eos_token_id=0)))
    else:
        raise ValueError(f"backbone must be 'gpt' or 'hf', got {backbone!r}")
    m = MaturationModel(bb, TMConfig(vocab_size=vocab_size, readout=readout, k_max=k_max, **tm),
                        tokenizer=tokenizer)
    return randomize_tm(m, seed) if randomize else m.eval()


def tiny_llama(vocab_size, pad=0):
    """A seeded random 2-layer transformers Llama (width 32); bos 1, eos 2."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                      pad_token_id=pad, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def left_pad(prompts, pad=0):
    """(ids, attention mask), both (B, S): the prompts left-padded with ``pad``."""
    import torch

    S = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), S), pad)
    mask = torch.zeros(len(prompts), S, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, S - len(p):] = torch.tensor(p)
        mask[b, S - len(p):] = 1
    return ids, mask


def hf_generate(hf, prompts, eos, pad=0, **kw):
    """transformers' ``generate(do_sample=False)`` continuations of left-padded ``prompts``,
    cut after EOS (it pads finished rows with pad or EOS)."""
    ids, mask = left_pad(prompts, pad)
    out = hf.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad, eos_token_id=eos,
                      do_sample=False, **kw)[:, ids.shape[1]:].tolist()
    return [r[: r.index(eos) + 1] if eos in r else r for r in out]


@lru_cache(maxsize=1)
def tiny_bpe_llama():
    """(transformers model, PreTrainedTokenizerFast): random 2-layer Llama, byte-level BPE of
    400 tokens trained on 200 BBC train articles; eos = <eos>, no BOS. Built once (the first
    call seeds torch)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tmbench.data.bbc import load_bbc

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([a.text for a in load_bbc("train")[:200]], tr)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=128, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, pad_token_id=tok.eos_token_id, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval(), tok


def tiny_hfmodel():
    """:func:`tiny_bpe_llama` as a tmbench HFModel ("tiny-llama")."""
    from tmbench.models.hf import HFModel, HFTokenizer

    m, tok = tiny_bpe_llama()
    return HFModel(m, HFTokenizer(tok, "tiny-bpe"), "tiny-llama")


# ---- tiny random models on disk ----------------------------------------------------------------
TINY_EOS = "<|endoftext|>"
TINY_SENTENCES = [
    "The bank said profits rose sharply in the first quarter of the year.",
    "Shares fell on Monday after the government announced new taxes.",
    "The minister said the plan would help small firms and families.",
    "Football fans waited for hours as the match was delayed by rain.",
    "A new film about the band opened in cinemas across the country.",
] * 4


def tiny_bpe(vocab_size: int = 300):
    """A byte-level BPE trained on a few sentences (tokenizers.Tokenizer), EOS special."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[TINY_EOS], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(TINY_SENTENCES, tr)
    return tk


def write_tiny_llama(folder, positions: int = 64):
    """A random 2-layer Llama and its tokenizer, written with save_pretrained; returns
    ``folder``. (The ``llama_dir`` fixture of conftest.py is one, per test module.)"""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_bpe(), eos_token=TINY_EOS)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=positions, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, pad_token_id=tok.eos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_native(kind: str = "ar", seed: int = 0):
    """A random tmbench model with the backbone and TM settings of configs/test.yaml."""
    import torch
    import yaml

    from tmbench.data.tokenizers import BPETokenizer
    from tmbench.models.shipped import build_backbone, build_model
    from tmbench.training.config import CONFIG_DIR

    cfg = yaml.safe_load((CONFIG_DIR / "test.yaml").read_text())
    tok = BPETokenizer(tiny_bpe(), "tiny-bpe")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(kind, build_backbone(cfg["backbone"]), tok.vocab_size,
                            cfg.get("tm"), tok, f"tiny-{kind}")
    return model.eval()


def write_tiny_native(folder, kind: str = "ar"):
    """:func:`tiny_native` saved as a tmbench model folder; returns ``folder``."""
    from tmbench.models.shipped import save_model_dir

    save_model_dir(tiny_native(kind), folder)
    return folder


def write_tiny_gguf(folder):
    """The tiny Llama as a float32 GGUF file (llama.cpp tensor names, q/k rows permuted as
    llama.cpp's converter does; transformers undoes it on loading). Returns (path, the
    transformers model). Skips the test when gguf is not installed."""
    import json

    import numpy as np
    import pytest

    gguf = pytest.importorskip("gguf", reason="gguf is not installed")
    from transformers import AutoModelForCausalLM

    src = write_tiny_llama(folder / "llama")
    m = AutoModelForCausalLM.from_pretrained(src).eval()
    cfg = m.config
    path = folder / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or 10000.0))
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    tj = json.loads((src / "tokenizer.json").read_text())
    tokens = [t for t, _ in sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t == TINY_EOS else 1 for t in tokens])  # 3 = control
    w.add_token_merges([" ".join(x) if isinstance(x, list) else x for x in tj["model"]["merges"]])
    w.add_eos_token_id(cfg.eos_token_id)

    def permute(x, n_head):  # (out, in): interleave the two rotary halves of every head
        half = x.shape[0] // n_head // 2
        return x.reshape(n_head, 2, half, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    names = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    per_layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
                 "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for i in range(cfg.num_hidden_layers):
        names |= {f"model.layers.{i}.{a}.weight": f"blk.{i}.{b}.weight"
                  for a, b in per_layer.items()}
    for k, v in m.state_dict().items():
        v = v.float().numpy()
        if "q_proj" in k:
            v = permute(v, cfg.num_attention_heads)
        if "k_proj" in k:
            v = permute(v, cfg.num_key_value_heads)
        w.add_tensor(names[k], np.ascontiguousarray(v))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, m


# ---- metric tests: samples, a context, fake judges and featurizers -----------------------------
def sample(text: str, tokens=None, prompt_index: int = 0, prompt: str = "p", ref: str = "r",
           info=None):
    """A Sample of ``text``; token ids default to one hashed id per whitespace word."""
    from tmbench.types import Sample

    toks = list(tokens) if tokens is not None else [hash(w) % 1000 for w in text.split()]
    return Sample(prompt_index, 0, prompt, [1, 2], text, toks, ref, dict(info or {}))


def ctx(model=None, tokenizer=None, load_model=None, **kw):
    """A MetricContext; ``load_model`` defaults to one that loads nothing."""
    from tmbench.types import MetricContext

    return MetricContext(model, tokenizer, load_model or (lambda n, **kw: None), **kw)


class BigramJudge:
    """log p(x_t | x_<t) depends on x_{t-1} only, so any windowing must give the same scores."""

    kind = "ar"

    def __init__(self, vocab: int = 64):
        import torch

        self.tokenizer = WordTok()
        g = torch.Generator().manual_seed(0)
        self.table = torch.log_softmax(torch.randn(vocab, vocab, generator=g), -1)  # (V, V)

    def identity(self):
        return {"name": "bigram", "content_hash": "bigram0"}

    def token_logprobs(self, seqs):
        import torch

        return [self.table[torch.tensor(s[:-1]), torch.tensor(s[1:])] if len(s) > 1
                else torch.zeros(0) for s in seqs]


class HashFeaturizer:
    """Deterministic fake featurizer: a text's vector is seeded by its hash, shifted by
    ``shift`` when the text starts with 'model'. Counts its embed calls."""

    name = "all-minilm-l6-v2"

    def __init__(self, dim: int = 8):
        self.dim, self.calls = dim, 0

    def identity(self):
        return {"name": "hash-fake", "dim": self.dim}

    def embed(self, texts, max_length=256):
        import numpy as np

        self.calls += 1
        out = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).normal(size=self.dim)
            if t.startswith("model"):
                v[0] += 3.0
            out.append(v)
        return np.array(out, dtype=np.float32).reshape(len(texts), self.dim)
