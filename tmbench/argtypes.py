"""argparse helpers shared by the command-line modules (``tmbench.cli``, ``tmbench.lm_eval_cli``):
integer types, and the hint for a flag a command does not take (lm-eval's names, near misses)."""

from __future__ import annotations

import argparse
import difflib


def _int_at_least(lo: int, what: str):
    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            n = None
        if n is None or n < lo:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {v!r}")
        return n

    return parse


positive = _int_at_least(1, "positive")
non_negative = _int_at_least(0, "non-negative")

# lm-eval's flags whose tmbench counterpart has another name or form: (flag the command must
# have, or None for a hint that always applies; what to suggest). The first that applies wins.
# lm-eval flags that differ only in '_' for '-' (--batch_size, --num_fewshot) need no entry.
LM_EVAL_FLAGS: dict[str, list[tuple[str | None, str]]] = {
    "--model_args": [("--model", "--model SPEC with the options in brackets, e.g. "
                                 "--model hf:DIR[dtype=bfloat16]")],
    "--output_path": [("--output", "--output FILE.json or FOLDER"),
                      ("--out", "--out DIR (the results directory)"), ("--dest", "--dest DIR")],
    "--log_samples": [("--log-samples", "--log-samples"),
                      (None, "tmbench show KEY --samples N (run records keep every sample)")],
    "--gen_kwargs": [("--decoder", "--decoder NAME[key=value,...], e.g. --decoder nucleus[p=0.8]"),
                     (None, "tmbench run --decoder NAME[key=value,...] (tmbench lm-eval "
                            "generates greedily)")],
    "--include_path": [("--tasks", "--tasks PATH.yaml (the folder of a task file is indexed)")],
}


def flag_hint(parser: argparse.ArgumentParser, args: list[str]) -> str | None:
    """'unrecognized argument X; did you mean Y?' for the first flag in ``args`` that ``parser``
    does not take and that is lm-eval's name of one of its flags, or close to one (difflib)."""
    own = sorted(parser._option_string_actions)
    for a in args:
        flag = a.split("=", 1)[0]
        if not flag.startswith("--") or any(o.startswith(flag) for o in own):
            continue  # the command's own flag, or an abbreviation argparse accepted
        for need, say in LM_EVAL_FLAGS.get(flag, []):
            if need is None or need in own:
                return f"unrecognized argument {flag} (lm-eval's name); did you mean {say}?"
        close = ([flag.replace("_", "-")] if flag.replace("_", "-") in own else
                 difflib.get_close_matches(flag, own, n=1, cutoff=0.6))
        if close:
            return f"unrecognized argument {flag}; did you mean {close[0]}?"
    return None
