"""Agreement of a Token Maturation run with its K = 1 run, from the two records alone.

The question (DESIGN 3.3): does a longer liquid tail change the text, or would K = 1 (one slot,
committed after one update) have produced the same tokens? A suite answers it with two decoder
rows on one model: the TM row and a row whose parameters differ only in ``tail_len: 1`` (and in
``trace``, which changes no token). Both decode every prompt under the run's own per-prompt
generator, so for one seed the pair differs in K only, not in the embryo noise.

For each TM record whose K = 1 partner record exists (same suite and version, prompts, length,
model and weights, dtype, device, seed; decoder ``maturation``; resolved parameters equal but for
``tail_len`` and ``trace``), the leaderboard adds per sample, position by position:

- ``k1_agree[mode=prefix]``: share of the sample's positions before the first divergence;
- ``k1_agree[mode=position]``: share of the sample's positions holding the K = 1 token.

Sequence agreement compounds (one early divergence changes everything after it), so read the
conditional ``agree_front_argmax`` of the dynamics metric first. No metric generates text: the
K = 1 tokens are those of the partner row, which is itself a row of the table.
"""

from __future__ import annotations

import math
from typing import Any

from tmbench.results import canonical

DECODER = "maturation"
IGNORED = ("tail_len", "trace")  # the pair may differ here; trace changes no token
SETUP = ("suite", "prompts", "max_new_tokens", "dtype", "device_type")
KEYS = ("k1_agree[mode=prefix]", "k1_agree[mode=position]")


def _params(rec: dict) -> dict[str, Any]:
    d = rec["spec"]["decoder"]
    return {**(d.get("defaults") or {}), **(d.get("params") or {})}


def _tail_len(rec: dict) -> Any:
    return _params(rec).get("tail_len")


def _pair_key(rec: dict) -> str:
    """What must be equal for two records to be a TM / K = 1 pair (everything but K)."""
    sp = rec["spec"]
    model = sp["model"]
    return canonical({**{k: sp.get(k) for k in SETUP}, "seed": sp.get("seed"),
                      "model": [model.get("name"), model.get("content_hash")],
                      "params": {k: v for k, v in _params(rec).items() if k not in IGNORED}})


def agreement(tokens: list[int], k1: list[int]) -> tuple[float, float]:
    """(prefix share, position share) of ``tokens`` agreeing with ``k1``; NaN for no tokens."""
    if not tokens:
        return math.nan, math.nan
    same = [i < len(k1) and a == k1[i] for i, a in enumerate(tokens)]
    first = same.index(False) if False in same else len(tokens)
    return first / len(tokens), sum(same) / len(tokens)


def _scores(rec: dict, partner: dict) -> dict[str, dict]:
    # samples pair by prompt and by order among a prompt's samples
    ref: dict[int, list[list[int]]] = {}
    for s in partner["samples"]:
        ref.setdefault(s["prompt_index"], []).append(s["token_ids"])
    seen: dict[int, int] = {}
    prefix, position = [], []
    for s in rec["samples"]:
        i = s["prompt_index"]
        j, seen[i] = seen.get(i, 0), seen.get(i, 0) + 1
        k1 = ref.get(i, [])[j] if j < len(ref.get(i, [])) else None
        p, q = agreement(list(s["token_ids"]), list(k1)) if k1 is not None else (math.nan,) * 2
        prefix.append(p)
        position.append(q)
    meta = {"k1_run": partner.get("key"), "k1_label": partner["spec"]["decoder"]["label"],
            "run_tail_len": _tail_len(rec),
            "generator": "both runs: the run's own per-prompt generators (one seed)"}
    out = {}
    for key, per, what in ((KEYS[0], prefix, "share of the sample's positions before the first "
                                              "divergence from the K=1 run"),
                           (KEYS[1], position, "share of the sample's positions holding the "
                                               "K=1 run's token")):
        ok = [v for v in per if not math.isnan(v)]
        out[key] = {"value": sum(ok) / len(ok) if ok else math.nan,
                    "per_sample": per,
                    "higher_is_better": None, "metric": "k1_agree", "metric_id": "k1_agree",
                    "meta": meta | {"definition": what}}
    return out


def with_k1_agreement(recs: list[dict]) -> list[dict]:
    """The records, each TM record with a K = 1 partner given the two ``k1_agree`` scores
    (copies; records already holding them keep their own)."""
    k1 = {}
    for r in recs:
        if r["spec"]["decoder"]["name"] == DECODER and _tail_len(r) == 1:
            k1.setdefault(_pair_key(r), r)
    if not k1:
        return recs
    out = []
    for r in recs:
        partner = None
        if r["spec"]["decoder"]["name"] == DECODER and _tail_len(r) not in (1, None):
            partner = k1.get(_pair_key(r))
        if partner is None or all(k in r["metrics"] for k in KEYS):
            out.append(r)
            continue
        out.append({**r, "metrics": {**_scores(r, partner), **r["metrics"]}})
    return out
