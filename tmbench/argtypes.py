"""argparse types shared by the command-line modules (``tmbench.cli``, ``tmbench.lm_eval_cli``)."""

from __future__ import annotations

import argparse


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
