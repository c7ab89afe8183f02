"""`tmbench export <AR model spec> <folder>`: an autoregressive tmbench model as a transformers
folder (config.json, model.safetensors, tokenizer files) that lm-eval's ``hf`` model and
``AutoModelForCausalLM`` load with the same log-likelihoods.

- The native AR model (``tmbench.backbones.gpt.GPT`` + tied embeddings) maps exactly onto
  ``GPT2LMHeadModel``: pre-LN blocks, learned absolute positions, final LayerNorm (eps 1e-5),
  fused q|k|v projection in that order, MLP width 4C, tied head. Two settings differ from
  GPT-2's defaults and are set: the activation is exact (erf) GELU (``activation_function:
  gelu``; GPT-2 uses the tanh approximation ``gelu_new``), and a backbone built with
  ``bias: false`` gets zero biases (GPT-2 always has them). GPT-2's Conv1D stores weights as
  (in, out), so linear weights are transposed.
- A native AR model over a transformers backbone: that architecture, its input embedding and
  tied head set to the model's embedding matrix.
  LoRA deltas (``ar-smollm2``, ``path:<delta folder>``) load with the adapters merged into
  the base weights and unwrapped, so they export the same way.
- ``hf:``/``gguf:`` models (and registered transformers models): ``save_pretrained``.
- A model whose weights came from a GGUF file (SmolLM2, so also ``ar-smollm2``) keeps
  ``quantization_config: {quant_method: gguf}`` in its transformers config, and transformers
  refuses to load a folder with that key without ``gguf_file``. tmbench loads GGUF weights
  dequantised (dense float tensors), so the key is dropped and the folder is a plain
  transformers model; weights still packed in GGUF blocks are refused.
- Token Maturation models have no transformers counterpart; evaluate them with
  ``tmbench lm-eval`` instead.

Every export is checked before it is written: the exported model's logits on a short sequence
must match the source's (max |difference| is reported and stored in ``tmbench_export.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

PARITY_ATOL = 1e-3  # float32 logits; real mismatches (wrong activation, transposes) are >> 1e-2


def export_model(spec: Any, folder: str | Path, *, dtype: str | None = None,
                 overwrite: bool = False) -> dict:
    """Write ``spec``'s model as a transformers folder; returns what was written."""
    from tmbench.model_specs import DTYPES, load_model_spec, parse_model_spec

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise ValueError(f"{folder} exists and is not empty; choose a new folder or pass "
                         "--overwrite")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model = load_model_spec(spec, device="cpu", dtype="float32")
    hf_model, hf_tok = to_transformers(model)
    diff = parity(model, hf_model)
    if not diff <= PARITY_ATOL:
        raise ValueError(f"the exported {type(hf_model).__name__} does not reproduce "
                         f"{model.name!r} (max |logit difference| {diff:.3g} > {PARITY_ATOL}); "
                         "nothing written")
    if dtype is not None:
        hf_model = hf_model.to(getattr(torch, dtype))
    info = {"source": str(parse_model_spec(spec)),
            "identity": model.identity(), "architecture": type(hf_model).__name__,
            "max_abs_logit_diff": diff, "dtype": dtype or "float32",
            "lm_eval_max_length": _lm_eval_max_length(model)}
    _write(folder, hf_model, hf_tok, info)
    return {"folder": str(folder), **info, "files": sorted(p.name for p in folder.iterdir())}


def to_transformers(model: Any):
    """(transformers PreTrainedModel, PreTrainedTokenizerFast) computing what ``model`` does."""
    if getattr(model, "kind", "ar") != "ar":
        raise ValueError(f"model {model.name!r} is a Token Maturation model; only autoregressive "
                         "models can be exported (no transformers architecture computes TM). "
                         f"Evaluate it with: tmbench lm-eval --model {model.name} --tasks ...")
    from tmbench.models.native_ar import NativeARModel

    if isinstance(model, NativeARModel):
        from tmbench.backbones.gpt import GPT

        lm = native_gpt_to_gpt2(model) if isinstance(model.backbone, GPT) else _native_hf(model)
        lm = without_gguf_quantization(lm, model.name)
        return lm, _fast_tokenizer(model, getattr(lm.config, "max_position_embeddings", None))
    inner = getattr(model, "model", None)  # tmbench.models.hf.HFModel
    if inner is not None and hasattr(inner, "save_pretrained"):
        return without_gguf_quantization(inner, model.name), _fast_tokenizer(model)
    raise ValueError(f"cannot export a {type(model).__name__}; accepted: native AR models and "
                     "transformers models (hf:, gguf:)")


def without_gguf_quantization(lm: Any, name: str):
    """``lm`` without the GGUF ``quantization_config`` (and quantizer) a GGUF load leaves on
    it, when its weights are dense; other quantization configs are left as they are."""
    qc = getattr(lm.config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if str(getattr(method, "value", method)) != "gguf":
        return lm
    packed = [n for n, p in lm.named_parameters() if not p.is_floating_point()]
    if packed:
        raise ValueError(f"model {name!r} keeps its weights in GGUF blocks ({', '.join(packed[:3])}"
                         "); export needs them dequantised (load the GGUF without the kernels "
                         "package)")
    if getattr(lm, "hf_quantizer", None) is not None:
        lm.hf_quantizer.remove_quantization_config(lm)  # transformers' own path when dequantising
    elif hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config  # copied into a config built from the GGUF one
    return lm


def native_gpt_to_gpt2(model: Any):
    """NativeARModel over the native GPT -> GPT2LMHeadModel with identical outputs."""
    from transformers import GPT2Config, GPT2LMHeadModel

    gc = model.backbone.config
    eos = model.eos_token_id
    cfg = GPT2Config(vocab_size=model.vocab_size, n_positions=gc.block_size, n_embd=gc.n_embd,
                     n_layer=gc.n_layer, n_head=gc.n_head, n_inner=4 * gc.n_embd,
                     activation_function="gelu", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, scale_attn_weights=True,
                     tie_word_embeddings=True, bos_token_id=eos, eos_token_id=eos)
    lm = GPT2LMHeadModel(cfg).eval()
    sd = gpt2_state_dict(model)
    for k, v in lm.state_dict().items():  # bias: false -> zero biases (GPT-2 always has them)
        if k not in sd and k.endswith(BIASES):
            sd[k] = torch.zeros_like(v)
    missing, unexpected = lm.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k == "lm_head.weight" or k.endswith((".attn.bias", ".attn.masked_bias"))
               for k in missing), missing  # the tied head and causal-mask buffers
    lm.tie_weights()
    assert lm.lm_head.weight.data_ptr() == lm.transformer.wte.weight.data_ptr()
    return lm


BIASES = (".c_attn.bias", ".c_proj.bias", ".c_fc.bias", ".ln_1.bias", ".ln_2.bias", "ln_f.bias")
CONV1D = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")


def gpt2_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """Native GPT parameter names -> GPT-2's; Linear (out, in) -> Conv1D (in, out)."""
    out = {"transformer.wte.weight": model.wte.detach().float()}
    for k, v in model.backbone.state_dict().items():
        v = v.detach().float()
        out["transformer." + k] = v.t().contiguous() if k.endswith(CONV1D) else v
    return out


def _native_hf(model: Any):
    """NativeARModel over a transformers backbone -> that architecture with a tied head."""
    from transformers import AutoModelForCausalLM

    body = model.backbone.body
    cfg = type(body.config).from_dict({**body.config.to_dict(), "vocab_size": model.vocab_size,
                                       "tie_word_embeddings": True})
    lm = AutoModelForCausalLM.from_config(cfg).eval()
    emb = body.get_input_embeddings().weight
    state = {k: v for k, v in body.state_dict().items()
             if not (v.shape == emb.shape and v.data_ptr() == emb.data_ptr())}  # replaced below
    missing, unexpected = lm.base_model.load_state_dict(state, strict=False)
    new_emb = lm.get_input_embeddings().weight
    missing = [k for k, p in lm.base_model.named_parameters() if k in missing and p is not new_emb]
    if unexpected or missing:  # e.g. adapter wrappers (base_layer, lora_A) left in the backbone
        raise ValueError(f"cannot export {model.name!r} as {type(lm).__name__}: its backbone "
                         f"has weights the architecture lacks {unexpected[:4]} or lacks "
                         f"{missing[:4]}; merge adapters into the base weights first")
    new_emb.data.copy_(model.wte.detach().float())
    lm.tie_weights()
    return lm


def _fast_tokenizer(model: Any, context_length: int | None = None):
    from transformers import PreTrainedTokenizerFast

    from tmbench.models.shipped import _backend_tokenizer

    tok = getattr(model, "tokenizer", None)
    inner = getattr(tok, "tok", None)
    if inner is not None and hasattr(inner, "save_pretrained"):
        return inner  # a transformers tokenizer already
    if tok is None:
        raise ValueError(f"model {model.name!r} has no tokenizer; an export needs one")
    try:
        backend, eos = _backend_tokenizer(tok)
    except ValueError:
        raise ValueError(f"the tokenizer of {model.name!r} ({type(tok).__name__}) cannot be "
                         "written as a transformers tokenizer") from None
    # BOS = EOS as in GPT-2, so lm-eval's rolling windows start with the same token as
    # TmbenchLM's (which falls back to EOS when there is no BOS)
    kw = {"model_max_length": context_length} if context_length else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, bos_token=eos, **kw)


@torch.no_grad()
def parity(model: Any, hf_model: Any, n: int = 12) -> float:
    """max |logit difference| between the source and the export on a short sequence."""
    V = min(int(model.vocab_size), int(hf_model.config.vocab_size))
    ids = (torch.arange(n) * 7919 + 11) % V  # a fixed, varied sequence
    ids = ids[None].to(model.device)  # (1, n)
    mask, pos = torch.ones_like(ids), torch.arange(n, device=model.device)[None]
    ours = model.forward(ids, mask, pos, None)[0].float()  # (1, n, V)
    theirs = hf_model(input_ids=ids.to(hf_model.device)).logits.float().to(ours.device)
    return float((ours - theirs).abs().max())


def _lm_eval_max_length(model: Any) -> int | None:
    from tmbench.scoring import context_length

    ctx = context_length(model)
    return min(ctx - 1, 2048) if ctx else None


def _write(folder: Path, hf_model: Any, hf_tok: Any, info: dict) -> None:
    from transformers.utils import logging as hf_logging

    from tmbench import checkpoint

    hf_logging.disable_progress_bar()
    tmp = checkpoint.make_dir_tmp(folder)
    try:
        hf_model.save_pretrained(tmp)
        hf_tok.save_pretrained(tmp)
        checkpoint.write_json(info, tmp / "tmbench_export.json")
        checkpoint.replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- CLI ---------------------------------------------------------------------------------------
def add_export_cli(subparsers) -> argparse.ArgumentParser:
    e = subparsers.add_parser("export", help="write an AR model as a transformers folder "
                                             "(for lm-eval --model hf and AutoModelForCausalLM)")
    e.add_argument("model", help="model spec: a name, hf:<folder>, gguf:<file>, path:<folder>")
    e.add_argument("folder", help="output folder (new or empty)")
    e.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="cast the saved weights (default: float32)")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty folder")
    e.add_argument("--json", action="store_true", help="machine-readable summary")
    e.set_defaults(handler=run_export_cli)
    return e


def run_export_cli(args) -> int:
    res = export_model(args.model, args.folder, dtype=args.dtype, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(res, indent=1, default=str))
        return 0
    ml = res["lm_eval_max_length"]
    extra = f",max_length={ml}" if ml else ""
    print(f"wrote {res['folder']}: {res['architecture']} ({', '.join(res['files'])})")
    print(f"  checked against {res['source']}: "
          f"max |logit difference| {res['max_abs_logit_diff']:.2g}")
    print(f"  evaluate: lm_eval --model hf --model_args pretrained={res['folder']}{extra} "
          "--tasks ...")
    if ml:
        print(f"  (max_length={ml}: the windows of `tmbench lm-eval`, so the numbers agree)")
    return 0
