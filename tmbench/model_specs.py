"""Model specs: any model from a string or a suite entry, without writing a plugin.

Accepted forms (string on the command line, dict in a suite)::

    smollm2-135m                       a registered name (tmbench.registry.MODELS)
    hf:<hub name or local folder>      any transformers causal LM
    gguf:<file.gguf>                   a GGUF file, de-quantised by transformers
    path:<folder> or a bare folder     a folder written by `tmbench train` (AR or TM): a whole
                                       model, or a LoRA delta over its base (smollm2-tm/-ar)
    {name: hf, params: {pretrained: <hub name or folder>, dtype: bfloat16,
                        revision: main, trust_remote_code: false}}

Options may also follow a string in brackets, as in metric keys:
``hf:org/model[revision=abc,dtype=bfloat16]``; that is also the canonical string of a spec
(options sorted). ``validate_model_spec`` is the cheap plan-time check (files exist, options
known and typed, the hub reachable for hub names, a delta's base present with its recorded
sha256); ``load_model_spec`` loads the model; ``judge_spec`` says how a name a metric or a
decoder asks for (a judge, featurizer or scorer) is read. A loaded model's ``identity()`` names the canonical
spec string and the sha256 of the weight files it actually read (for a delta: base sha256 +
delta sha256, as the shipped deltas; registered models keep their own identity).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmbench.registry import MODELS

KINDS = ("registered", "hf", "gguf", "path")
PREFIXES = ("hf", "gguf", "path")
TARGET_KEY = {"hf": "pretrained", "gguf": "file", "path": "path"}  # dict form: params[key]
DTYPES = ("float32", "float16", "bfloat16")
FOLDER_FORMATS = ("tmbench-model", "tmbench-delta")  # config.json "format" of `tmbench train`
OPTIONS: dict[str, dict[str, type]] = {
    "registered": {"dtype": str},
    "hf": {"dtype": str, "revision": str, "trust_remote_code": bool, "allow_pickle": bool},
    "gguf": {"dtype": str},
    "path": {"dtype": str},
}
FORMS = ("a registered model name (see `tmbench list`), hf:<hub name or local folder>, "
         "gguf:<file.gguf>, path:<folder written by `tmbench train`, model or delta> (or the "
         "bare folder), "
         "or in a suite {name: hf, params: {pretrained: ..., dtype: ..., revision: ..., "
         "trust_remote_code: ...}}")
HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # one of KINDS
    target: str  # registered name, hub name, folder or file
    options: tuple[tuple[str, Any], ...] = ()  # sorted (name, value) pairs

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.options)

    def __str__(self) -> str:
        base = self.target if self.kind == "registered" else f"{self.kind}:{self.target}"
        if not self.options:
            return base
        return base + "[" + ",".join(f"{k}={_fmt(v)}" for k, v in self.options) + "]"


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


# ---- parsing ---------------------------------------------------------------------------------
def parse_model_spec(spec: "str | dict | ModelSpec") -> ModelSpec:
    """A string or suite dict -> ModelSpec; syntax and option types only, nothing is read."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, dict):
        return _parse_dict(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a model must be a non-empty string or a dict, got {spec!r}; "
                         f"accepted: {FORMS}")
    return _parse_string(spec.strip())


def _parse_dict(d: dict) -> ModelSpec:
    unknown = set(d) - {"name", "params"}
    if unknown or not isinstance(d.get("name"), str):
        raise ValueError(f"a model entry needs 'name' (and optionally 'params'), got {d!r}; "
                         f"accepted: {FORMS}")
    params = d.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"model {d['name']!r}: params must be a mapping, got {params!r}")
    params = dict(params)
    if d["name"] in PREFIXES:
        key = TARGET_KEY[d["name"]]
        target = params.pop(key, None)
        if not isinstance(target, str) or not target:
            raise ValueError(f"model {d['name']!r} needs params.{key} (a string), got {target!r}")
        return _make(d["name"], target, params)
    base = _parse_string(d["name"])
    return _make(base.kind, base.target, {**base.params, **params})


def _parse_string(s: str) -> ModelSpec:
    if s in MODELS:
        return ModelSpec("registered", s)
    body, opts = split_options(s)
    prefix, sep, rest = body.partition(":")
    if sep and prefix in PREFIXES:
        if not rest:
            raise ValueError(f"model {s!r}: nothing after '{prefix}:'; accepted: {FORMS}")
        return _make(prefix, rest, opts)
    if body in MODELS:
        return _make("registered", body, opts)
    path = Path(body).expanduser()
    if path.exists():
        return _make(_kind_of_path(path), body, opts)
    if sep and "/" not in prefix and not prefix.startswith("."):
        raise ValueError(f"unknown model spec kind {prefix!r} in {s!r}; accepted: {FORMS}")
    raise ValueError(f"{MODELS.unknown_message(s)}. Accepted forms: {FORMS}")


def split_options(s: str, what: str = "model") -> tuple[str, dict[str, str]]:
    """'hf:x[a=1,b=2]' -> ('hf:x', {'a': '1', 'b': '2'}); a string without brackets as is.
    The one bracket syntax of the command line (model specs, ``--decoder nucleus[p=0.8]``);
    values stay strings, typed by the caller."""
    if not s.endswith("]") or "[" not in s or Path(s).exists():
        return s, {}
    body, _, inner = s[:-1].rpartition("[")
    opts = {}
    for part in filter(None, inner.split(",")):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ValueError(f"{what} {s!r}: options must be name=value pairs, got {part!r}")
        opts[k.strip()] = v.strip()
    return body, opts


def _kind_of_path(path: Path) -> str:
    if path.is_file():
        if path.suffix == ".gguf":
            return "gguf"
        raise ValueError(f"{path} is a file but not a .gguf file; accepted: {FORMS}")
    cfg = path / "config.json"
    if cfg.exists():
        try:
            data = json.loads(cfg.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{cfg} is not readable JSON ({e})") from None
        if data.get("format") in FOLDER_FORMATS:
            return "path"
        if "model_type" in data or "architectures" in data:
            return "hf"
    return "path"  # validation says what the folder lacks


def _make(kind: str, target: str, options: dict[str, Any]) -> ModelSpec:
    schema = OPTIONS[kind]
    unknown = sorted(set(options) - set(schema))
    if unknown:
        raise ValueError(f"model {kind}:{target}: unknown option(s) {unknown}; accepted for "
                         f"{kind}: {', '.join(sorted(schema))}")
    typed = {k: _typed(kind, target, k, v, schema[k]) for k, v in options.items()}
    return ModelSpec(kind, target.rstrip("/") or target, tuple(sorted(typed.items())))


def _typed(kind: str, target: str, name: str, v: Any, want: type) -> Any:
    if want is bool and isinstance(v, str) and v.lower() in ("true", "false"):
        v = v.lower() == "true"
    if not isinstance(v, want):
        raise ValueError(f"model {kind}:{target}: option {name!r} must be {want.__name__}, "
                         f"got {v!r}")
    if name == "dtype" and v not in DTYPES:
        raise ValueError(f"model {kind}:{target}: dtype must be one of {', '.join(DTYPES)}, "
                         f"got {v!r}")
    return v


def judge_spec(name: str) -> str:
    """The spec of a model a metric or decoder names (a judge, featurizer or best-of-n scorer):
    a registered name as it is, any other name a hub name or local folder (``hf:<name>``).
    The one place that decides between the two."""
    return name if name in MODELS else f"hf:{name}"


# ---- validation (plan time: no weights are read) ---------------------------------------------
def validate_model_spec(spec: "str | dict | ModelSpec") -> ModelSpec:
    """Parse and check cheaply that ``spec`` can be loaded; return the parsed spec."""
    ms = parse_model_spec(spec)
    if ms.kind == "registered":
        MODELS.get(ms.target)  # imports the loader; unknown names list the known ones
    elif ms.kind == "path":
        _check_tmbench_folder(Path(ms.target).expanduser(), str(ms))
    elif ms.kind == "gguf":
        _check_gguf(Path(ms.target).expanduser(), str(ms))
    elif _looks_local(ms.target):
        if "revision" in ms.params:
            raise ValueError(f"model {ms}: revision applies to hub names only, and "
                             f"{ms.target!r} is a local folder")
        _check_hf_folder(Path(ms.target).expanduser(), str(ms),
                         ms.params.get("allow_pickle", False))
    else:
        _check_hub(ms)
    return ms


def _looks_local(target: str) -> bool:
    p = Path(target).expanduser()
    return p.exists() or target.startswith((".", "/", "~")) or target.count("/") > 1


def _check_tmbench_folder(path: Path, label: str) -> None:
    if not path.is_dir():
        raise ValueError(f"model {label}: folder {path} does not exist; pass a folder written by "
                         "`tmbench train` (e.g. <out>/final)")
    cfg = _read_json(path / "config.json", label) if (path / "config.json").exists() else {}
    if cfg.get("format") not in FOLDER_FORMATS and (path / "final" / "config.json").exists():
        raise ValueError(f"model {label}: {path} is a training run folder; pass its model "
                         f"folder {path / 'final'} (or {path / 'ckpt' / 'model'})")
    if not cfg:
        raise ValueError(f"model {label}: {path} has no config.json; accepted: a folder written "
                         "by `tmbench train` (e.g. <out>/final)")
    if cfg.get("format") == "tmbench-delta":
        _check_delta_folder(path, label)
        return
    if cfg.get("format") != "tmbench-model":
        hint = " (a transformers folder: use hf:<folder>)" if "model_type" in cfg else ""
        raise ValueError(f"model {label}: {path / 'config.json'} is not a tmbench model config"
                         f"{hint}; accepted: a folder written by `tmbench train` (config.json "
                         f"format {' or '.join(FOLDER_FORMATS)})")
    if cfg.get("kind") not in ("ar", "tm"):
        raise ValueError(f"model {label}: kind {cfg.get('kind')!r} in {path / 'config.json'}; "
                         "accepted: ar, tm")
    if not (path / "model.safetensors").exists():
        raise ValueError(f"model {label}: {path} lacks model.safetensors")


def _check_delta_folder(path: Path, label: str) -> None:
    """A LoRA delta (``tmbench train`` with an adapter): config, delta sha256, and its base
    present with the recorded sha256; hashes files, builds no model."""
    from tmbench.models.delta import check_delta

    try:
        check_delta(path)
    except ValueError as e:
        raise ValueError(f"model {label}: {e}") from None


def _check_gguf(path: Path, label: str) -> None:
    import importlib.util

    if path.suffix != ".gguf" or not path.is_file():
        raise ValueError(f"model {label}: {path} is not an existing .gguf file")
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"model {label}: GGUF files need {', '.join(missing)}: "
                         "pip install gguf accelerate")


def _check_hf_folder(path: Path, label: str, allow_pickle: bool) -> None:
    if not path.is_dir():
        raise ValueError(f"model {label}: folder {path} does not exist; pass a folder with "
                         "config.json, weights and tokenizer files (save_pretrained)")
    if not (path / "config.json").exists():
        raise ValueError(f"model {label}: {path} has no config.json; accepted: a transformers "
                         "folder written by save_pretrained or `tmbench export`")
    check_safetensors(weight_files(path, allow_pickle, label), label)
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json",
                                              "tokenizer.model", "vocab.json")):
        raise ValueError(f"model {label}: {path} has no tokenizer files (tokenizer.json or "
                         "tokenizer_config.json); save the tokenizer with save_pretrained too")


def weight_files(folder: Path, allow_pickle: bool = False, label: str = "") -> list[Path]:
    """The weight files transformers reads from ``folder``: the shards of an index, else the
    single file; safetensors first, pickled .bin only when allowed."""
    names = [("model.safetensors.index.json", "model.safetensors")]
    if allow_pickle:
        names.append(("pytorch_model.bin.index.json", "pytorch_model.bin"))
    for index, single in names:
        if (folder / index).exists():
            shards = sorted(set(_read_json(folder / index, label).get("weight_map", {}).values()))
            missing = [s for s in shards if not (folder / s).exists()]
            if missing:
                raise ValueError(f"model {label}: {folder} lacks shard(s) {missing[:3]} of {index}")
            return [folder / s for s in shards]
        if (folder / single).exists():
            return [folder / single]
    pickled = list(folder.glob("pytorch_model*.bin"))
    hint = ("; it has pickled .bin weights: convert them to safetensors or pass "
            "allow_pickle: true if you trust their source") if pickled and not allow_pickle else ""
    raise ValueError(f"model {label}: no model.safetensors (or its index) in {folder}{hint}")


def check_safetensors(files: list[Path], label: str) -> None:
    """Each .safetensors file's header parses and its tensors cover the file exactly (reads the
    header only), so a truncated download or copy is refused naming the file."""
    from safetensors import SafetensorError, safe_open

    for f in files:
        if f.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise ValueError(f"model {label}: {f} is not a complete safetensors file ({e}); it "
                             "may be truncated: save or download it again") from None


def _read_json(path: Path, label: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"model {label}: cannot read {path} ({e})") from None


def hub_offline() -> bool:
    v = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    if v in ("1", "ON", "YES", "TRUE"):
        return True
    from huggingface_hub import is_offline_mode

    return bool(is_offline_mode())


def _hub_lookup(repo: str, revision: str | None) -> Any:
    """Model metadata from the hub (short timeout); raises on any failure."""
    from huggingface_hub import HfApi

    return HfApi().model_info(repo, revision=revision, timeout=HUB_TIMEOUT_S)


def _cached_on_disk(repo: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
        return False


def _check_hub(ms: ModelSpec) -> None:
    repo, rev = ms.target, ms.params.get("revision")
    local = ("pass a local folder instead: hf:/path/to/model (config.json, *.safetensors and "
             "tokenizer files, e.g. from save_pretrained or `tmbench export`)")
    if hub_offline():
        if _cached_on_disk(repo, rev):
            return
        raise ValueError(f"model {ms}: the Hugging Face hub is unreachable (HF_HUB_OFFLINE is set) "
                         f"and {repo!r} is neither a local folder nor in the local cache; {local}")
    try:
        info = _hub_lookup(repo, rev)
    except Exception as e:  # noqa: BLE001 - any failure: say which, in one line
        kind = type(e).__name__
        if kind in ("RepositoryNotFoundError", "GatedRepoError"):
            raise ValueError(f"model {ms}: no accessible hub model {repo!r} ({kind}); check the "
                             f"name and your token, or {local}") from None
        if kind == "RevisionNotFoundError":
            raise ValueError(f"model {ms}: hub model {repo!r} has no revision {rev!r}") from None
        if _cached_on_disk(repo, rev):
            return
        raise ValueError(f"model {ms}: the Hugging Face hub is unreachable ({kind}) and {repo!r} "
                         f"is not a local folder or in the local cache; {local}") from None
    files = [s.rfilename for s in (getattr(info, "siblings", None) or [])]
    if files and not any(f.endswith(".safetensors") for f in files) \
            and not ms.params.get("allow_pickle", False):
        raise ValueError(f"model {ms}: hub model {repo!r} has no safetensors weights; pass "
                         "allow_pickle: true if you trust its pickled .bin files")


# ---- loading ---------------------------------------------------------------------------------
def load_model_spec(spec: "str | dict | ModelSpec", device: str = "cpu", dtype: str = "float32"):
    """Validate and load a model; ``dtype`` is used unless the spec sets its own."""
    ms = validate_model_spec(spec)
    dtype = ms.params.get("dtype", dtype)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if ms.kind == "registered":
        return MODELS.get(ms.target)(device=device, dtype=dtype)
    if ms.kind == "path":
        return _load_path(ms, device, dtype)
    if ms.kind == "gguf":
        return _load_gguf(ms, device, dtype)
    return _load_hf(ms, device, dtype)


def _load_path(ms: ModelSpec, device: str, dtype: str):
    """A `tmbench train` folder; identity: name = the spec string, content_hash = sha256 of
    model.safetensors, or for a delta base sha256[:8] + delta sha256[:8] (both checked)."""
    folder = Path(ms.target).expanduser()
    if _read_json(folder / "config.json", str(ms)).get("format") == "tmbench-delta":
        from tmbench.models.delta import load_delta

        return load_delta(folder, device, dtype, name=str(ms))
    from tmbench.models.shipped import load_model_dir

    return load_model_dir(folder, device, dtype, name=str(ms))


def _load_hf(ms: ModelSpec, device: str, dtype: str):
    from tmbench.models.hf import load_hf

    p = ms.params
    folder = Path(ms.target).expanduser() if _looks_local(ms.target) else _hub_folder(ms)
    files = weight_files(folder, p.get("allow_pickle", False), str(ms))
    model = load_hf(str(folder), device=device, dtype=dtype,
                    trust_remote_code=p.get("trust_remote_code", False),
                    allow_pickle=p.get("allow_pickle", False))
    return _named(model, ms, files)


def _hub_folder(ms: ModelSpec) -> Path:
    """The local snapshot of a hub model (downloaded unless offline), so that weights and
    tokenizer come from one revision and the weights hashed are the ones loaded."""
    from huggingface_hub import snapshot_download

    p = ms.params
    patterns = ["*.json", "model*.safetensors", "tokenizer*", "*.model", "*.tiktoken",
                "*.txt"]
    patterns += ["*.py"] if p.get("trust_remote_code") else []
    patterns += ["pytorch_model*.bin"] if p.get("allow_pickle") else []
    try:
        return Path(snapshot_download(ms.target, revision=p.get("revision"),
                                      allow_patterns=patterns, local_files_only=hub_offline(),
                                      etag_timeout=HUB_TIMEOUT_S))
    except Exception as e:  # noqa: BLE001 - network, cache or permission problems
        raise ValueError(f"model {ms}: could not fetch {ms.target!r} from the hub or the local "
                         f"cache ({type(e).__name__}); pass a local folder: hf:/path/to/model"
                         ) from None


def _load_gguf(ms: ModelSpec, device: str, dtype: str):
    """Like ``load_smollm2`` for any GGUF file: transformers de-quantises it (once per machine,
    :mod:`tmbench.models.gguf`), and it is cast to ``dtype``."""
    from tmbench.models.gguf import load_gguf
    from tmbench.models.hf import HFModel, HFTokenizer

    path = Path(ms.target).expanduser()
    try:
        lm, tok = load_gguf(path, dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ValueError(f"model {ms}: transformers cannot load {path} "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    model = HFModel(lm, HFTokenizer(tok, str(ms)), str(ms)).to(device)
    return _named(model, ms, [path])


def _named(model, ms: ModelSpec, files: list[Path]):
    model.name = str(ms)
    if getattr(model, "tokenizer", None) is not None and hasattr(model.tokenizer, "name"):
        model.tokenizer.name = str(ms)
    model.content_hash = hash_files(files)
    model.weight_files = [f.name for f in files]
    return model


def hash_files(files: list[Path]) -> str:
    """The weights' content hash (``tmbench.models.hf.content_hash_of``; hashed once per
    process, see ``tmbench.fileio.sha256_file_cached``)."""
    from tmbench.models.hf import content_hash_of

    return content_hash_of(list(files))
