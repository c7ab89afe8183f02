"""Parameter schemas from signatures: a decoder's or metric's keyword parameters are its
settings, their defaults its defaults and their types the accepted types.

Used by the plan (every suite entry checked before any work) and by decoders that call another
decoder with settings of its own (best-of-n's base decoder).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

# what the runner passes a decoder besides its settings (the decoder context ``ctx`` only to
# decoders that take one): never a setting
SKIP = ("max_new_tokens", "generator", "ctx")


def keyword_schema(fn: Callable, skip: tuple[str, ...] = SKIP) -> dict[str, inspect.Parameter]:
    """The keyword-only parameters of ``fn`` but ``skip``: its settings."""
    return {n: p for n, p in inspect.signature(fn).parameters.items()
            if p.kind == p.KEYWORD_ONLY and n not in skip}


def defaults_of(fn: Callable, skip: tuple[str, ...] = SKIP) -> dict:
    return {n: plain(p.default) for n, p in keyword_schema(fn, skip).items()
            if p.default is not inspect.Parameter.empty}


def plain(v: Any) -> Any:
    """A tuple default as the list a suite file would give."""
    return list(v) if isinstance(v, tuple) else v


def resolve_params(fn: Callable, params: dict[str, Any], label: str, what: str = "decoder",
                   skip: tuple[str, ...] = SKIP) -> dict[str, Any]:
    """Check ``params`` against the function's keyword parameters; return them with defaults."""
    schema = keyword_schema(fn, skip)
    unknown = sorted(set(params) - set(schema))
    if unknown:
        accepted = ", ".join(f"{n}={p.default!r}" for n, p in schema.items()) or "(none)"
        raise ValueError(f"{what} {label!r}: unknown parameter(s) {unknown}; accepted: {accepted}")
    out = {}
    for n, p in schema.items():
        v = params.get(n, p.default)
        if v is inspect.Parameter.empty:
            raise ValueError(f"{what} {label!r}: parameter {n!r} is required")
        union = isinstance(p.annotation, str) and ("|" in p.annotation or "Any" in p.annotation)
        # a union-typed parameter is left to the function's own checks (run in the dry run)
        out[n] = v if union else _check_type(f"{what} {label!r}", n, v, p.default)
    return out


def _check_type(where: str, name: str, v: Any, default: Any) -> Any:
    if default is inspect.Parameter.empty or default is None:
        return v
    if v is None:
        raise ValueError(f"{where}: parameter {name!r} must be {type(default).__name__}, got null")
    want = type(default)
    if want is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if want in (tuple, list) and isinstance(v, (tuple, list)):
        return tuple(v) if want is tuple else list(v)
    if not isinstance(v, want) or (want is int and isinstance(v, bool)):
        raise ValueError(f"{where}: parameter {name!r} must be {want.__name__}, "
                         f"got {type(v).__name__} {v!r}")
    if want is float and not math.isfinite(v):
        raise ValueError(f"{where}: parameter {name!r} must be finite, got {v!r}")
    return v
