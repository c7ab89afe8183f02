"""Short column names and the glossary under each table.

A metric key carries every parameter (``self_bleu[level=sentence,n=4,refs=all,unit=wordpunct]``),
which is what a CSV or a tooltip needs and what no table header can hold. Each known family has a
short name built from its parameters (``Rep-2``, ``Dist-2``, ``Self-BLEU``) and a glossary line:
definition, direction, unit, the paper it comes from, and the full key. A key of a family this
file does not know (a plugin metric) keeps its key as its name and takes its definition from
the record's score meta, so its table renders the same with or without the plugin.

Names are unique within a table: keys whose short names collide get the parameters that tell
them apart appended (``gen-ppl (judge=k)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tmbench.cells import parse_key


@dataclass(frozen=True)
class Entry:
    name: Callable[[dict[str, str]], str]  # params -> short name
    definition: Callable[[dict[str, str]], str]  # params -> one sentence
    unit: str
    source: str = ""  # the paper or package the definition follows


def _u(p: dict[str, str]) -> str:
    """The tokenization suffix: none for words (the headline unit), "(tok)" for token ids."""
    return " (tok)" if p.get("unit") == "token" else ""


def _scope(p: dict[str, str]) -> str:
    s = p.get("scope", "corpus")
    return "" if s == "corpus" else f" ({s})"


def _units(p: dict[str, str]) -> str:
    return "generator token ids" if p.get("unit") == "token" else "wordpunct words"


ENTRIES: dict[str, Entry] = {
    "rep": Entry(lambda p: f"Rep-{p.get('n', '?')}{_u(p)}",
                 lambda p: f"1 - unique / total {p.get('n', 'n')}-grams of {_units(p)}, pooled over "
                           "the row's samples", "fraction", "SimCTG, Su et al. 2022"),
    "seq_rep": Entry(lambda p: f"seq-Rep-{p.get('n', '?')}{_u(p)}",
                     lambda p: f"per sample 1 - unique / total {p.get('n', 'n')}-grams of "
                               f"{_units(p)}, averaged", "fraction", "Welleck et al. 2020"),
    "loop": Entry(lambda p: f"Loop{_u(p)}",
                  lambda p: f"share of samples with any repeated {p.get('n', 'n')}-gram of "
                            f"{_units(p)} (x 100 = the paper's Loop%)", "fraction",
                  "Token Maturation"),
    "longest_repeat": Entry(lambda p: f"longest repeat{_u(p)}",
                            lambda p: "longest span occurring at two start positions",
                            "units of the text", ""),
    "distinct": Entry(lambda p: f"Dist-{p.get('n', '?')}{_scope(p)}{_u(p)}",
                      lambda p: f"distinct / total {p.get('n', 'n')}-grams of {_units(p)} "
                                f"({p.get('scope', 'corpus')} level)", "fraction",
                      "Li et al. 2016"),
    "ngram_entropy": Entry(lambda p: f"Ent-{p.get('n', '?')}{_scope(p)}{_u(p)}",
                           lambda p: f"entropy of the {p.get('n', 'n')}-gram frequencies of "
                                     f"{_units(p)} ({p.get('scope', 'corpus')} level)", "nats",
                           "Zhang et al. 2018"),
    "div": Entry(lambda p: f"Div{_u(p)}", lambda p: "product over n = 2..4 of (1 - Rep-n)",
                 "fraction", "SimCTG, Su et al. 2022"),
    "self_bleu": Entry(
        lambda p: "Self-BLEU" + ("" if p.get("level", "sentence") == "sentence" else " (corpus)")
                  + ("" if p.get("refs", "all") == "all" else f" ({p['refs']} refs)") + _u(p),
        lambda p: (f"BLEU-{p.get('n', '4')} of each sample against the other samples "
                   f"({'of its prompt' if p.get('refs') == 'prompt' else 'of the row'}), "
                   + ("mean of sentence BLEU" if p.get("level", "sentence") == "sentence"
                      else "corpus BLEU") + f", on {_units(p)}"),
        "BLEU (0-1)", "Zhu et al. 2018 (Texygen)"),
    "novel": Entry(lambda p: f"Novel-{p.get('n', '?')}{_u(p)}",
                   lambda p: f"share of distinct {p.get('n', 'n')}-grams absent from every other "
                             "sample", "fraction", ""),
    "zipf": Entry(lambda p: f"Zipf{_u(p)}", lambda p: "Zipf exponent s of the unigram counts "
                                                      "(OLS of ln count on ln rank)",
                  "exponent", "Holtzman et al. 2020"),
    "coherence": Entry(
        lambda p: "coherence (judge)" if p.get("def") == "judge-logprob" else "coherence (emb)"
        if p.get("def") == "embed-cos" else f"coherence ({p.get('def', '?')})",
        lambda p: ("mean log-probability per token of the continuation given the prompt under "
                   f"the judge {p.get('judge', '')}".rstrip() if p.get("def") == "judge-logprob"
                   else f"cosine of the embeddings of prompt and continuation "
                        f"({p.get('featurizer', 'featurizer')})"),
        "score", "SimCTG, Su et al. 2022 (emb); Su and Collier 2023 (judge)"),
    "mauve": Entry(lambda p: "MAUVE",
                   lambda p: "divergence frontier between the row's texts and the human "
                             f"continuations in {p.get('featurizer', 'featurizer')} features "
                             f"(scaling c = {p.get('c', '5')})", "0-1", "Pillutla et al. 2021"),
    "gen_ppl": Entry(lambda p: "gen-ppl" + ("" if p.get("agg", "pooled") == "pooled" else " (mean)"),
                     lambda p: (f"perplexity of the continuations under the judge "
                                f"{p.get('judge', '')}, " + ("exp(total NLL / total tokens)"
                                                             if p.get("agg", "pooled") == "pooled"
                                                             else "mean of per-sample perplexities")),
                     "perplexity (judge tokens)", "Holtzman et al. 2020"),
    "heldout_ppl": Entry(
        lambda p: "held-out ppl" + ("" if p.get("unit") in ("word", "wordpunct", None)
                                    else f" ({'tok' if p['unit'] == 'token' else p['unit']})"),
        lambda p: f"perplexity of the generator on the held-out {p.get('corpus', '')} text, "
                  f"per {p.get('unit', 'word')} (lm-eval rolling windows)",
        "perplexity", "lm-evaluation-harness"),
    "bits_per_byte": Entry(lambda p: "bits/byte",
                           lambda p: f"NLL of the held-out {p.get('corpus', '')} text in bits "
                                     "per UTF-8 byte", "bits", "lm-evaluation-harness"),
    "compression_ratio": Entry(lambda p: "compression" + _scope(p),
                               lambda p: "UTF-8 bytes / gzip bytes of the texts "
                                         f"({p.get('scope', 'corpus')} level)", "ratio",
                               "Shaib et al. 2024"),
    "k1_agree": Entry(lambda p: "K=1 agree" + ("" if p.get("mode", "position") == "position"
                                               else f" ({p['mode']})"),
                      lambda p: "share of committed tokens equal to the same model's K = 1 run "
                                f"({p.get('mode', 'position')})", "fraction", ""),
    "agree_front_argmax": Entry(lambda p: "front agree",
                                lambda p: "share of commits equal to the argmax of the front "
                                          "slot's final prediction", "fraction", ""),
    "tail_norm_ratio": Entry(lambda p: "tail norm",
                             lambda p: "mean norm of the vectors fed back as tail inputs over "
                                       "that of the tail inputs training builds (healthy in "
                                       "[0.5, 2])", "ratio", ""),
    "tail_copy_rate": Entry(lambda p: "tail copy",
                            lambda p: "share of tail slots whose nearest token equals the slot "
                                      "ahead's (healthy <= 0.3; collapse = 1)", "fraction", ""),
    "tail_readability": Entry(lambda p: "tail read",
                              lambda p: "share of tail slots whose prediction equals the "
                                        "model's prediction with the tail's nearest tokens fed "
                                        "as text (healthy >= 0.5)", "fraction", ""),
    "tail_distinct": Entry(lambda p: "tail distinct",
                           lambda p: "distinct nearest tokens in the tail over K, averaged over "
                                     "steps", "fraction", ""),
    "entropy_first": Entry(lambda p: "entropy first",
                           lambda p: f"entropy of softmax({p.get('scale', 's')} x cos) at a "
                                     "slot's first update", "nats", "Token Maturation"),
    "entropy_final": Entry(lambda p: "entropy final",
                           lambda p: f"entropy of softmax({p.get('scale', 's')} x cos) at a "
                                     "slot's last update before commit", "nats",
                           "Token Maturation"),
    "displacement_first": Entry(lambda p: "displ. first", lambda p: "||z(k+1) - z(k)|| / R at "
                                                                    "the first update", "ratio", ""),
    "displacement_final": Entry(lambda p: "displ. final", lambda p: "||z(k+1) - z(k)|| / R at "
                                                                    "the last update", "ratio", ""),
    "cos_final_first": Entry(lambda p: "cos first", lambda p: "cosine of the first tail state "
                                                              "to the committed embedding",
                             "cosine", ""),
    "cos_final_last": Entry(lambda p: "cos last", lambda p: "cosine of the last tail state to "
                                                            "the committed embedding", "cosine", ""),
    "tokens_per_s": Entry(lambda p: "tok/s", lambda p: "generated tokens (EOS included) per "
                                                       "second of decoding", "tokens / s", ""),
    "ttft_ms": Entry(lambda p: f"TTFT p{p.get('q', '50')} ms",
                     lambda p: f"time to the first token, {p.get('q', '50')}th percentile over "
                               "batches", "ms", ""),
    "step_ms": Entry(lambda p: f"step p{p.get('q', '50')} ms",
                     lambda p: f"time per decoding step after the first, {p.get('q', '50')}th "
                               "percentile", "ms", ""),
    "roofline_share": Entry(lambda p: "roofline" + ("" if p.get("phase", "decode") == "decode"
                                                    else f" ({p['phase']})"),
                            lambda p: "share of the machine's binding limit (bandwidth or "
                                      "compute) the timed steps reached", "fraction", "Williams "
                                                                                       "et al. 2009"),
    "peak_mem_mb": Entry(lambda p: "peak MB", lambda p: "peak memory of the run",
                         "MB", ""),
}
# the coherence unit depends on the definition
COHERENCE_UNITS = {"judge-logprob": "nats per judge token (at most 0)", "embed-cos": "cosine"}


def base_name(key: str) -> str:
    """The short name of one key, before names are made unique within a table."""
    fam, params = parse_key(key)
    e = ENTRIES.get(fam)
    return e.name(params) if e else key


def short_names(columns: list[str]) -> dict[str, str]:
    """Key -> short name, unique among ``columns``: colliding keys get the parameters in which
    they differ appended."""
    base = {c: base_name(c) for c in columns}
    groups: dict[str, list[str]] = {}
    for c, n in base.items():
        groups.setdefault(n, []).append(c)
    out = dict(base)
    for n, keys in groups.items():
        if len(keys) < 2:
            continue
        params = [parse_key(k)[1] for k in keys]
        differ = [p for p in dict.fromkeys(x for ps in params for x in ps)
                  if len({ps.get(p) for ps in params}) > 1]
        for k, ps in zip(keys, params):
            tag = ",".join(f"{p}={ps[p]}" for p in differ if p in ps) or k
            out[k] = f"{n} ({tag})"
    return out


def direction(arrow: str, key: str) -> str:
    fam = parse_key(key)[0]
    if arrow == "↑":
        return "higher is better"
    if arrow == "↓":
        return "lower is better"
    if fam in ("gen_ppl", "zipf"):
        return "closer to the human row is better"
    return "no better direction"


def gloss(key: str, arrow: str = "", meta: dict | None = None) -> str:
    """One glossary line: definition; direction; unit; source; the full key (Markdown)."""
    fam, params = parse_key(key)
    e = ENTRIES.get(fam)
    if e is None:  # a metric this file does not know: what its record says about it
        meta = meta or {}
        what = meta.get("definition") or meta.get("description") or "metric without a glossary entry"
        parts = [str(what), direction(arrow, key)] + ([f"unit {meta['unit']}"] if meta.get("unit") else [])
    else:
        unit = COHERENCE_UNITS.get(params.get("def", ""), e.unit) if fam == "coherence" else e.unit
        src = e.source
        if fam == "coherence":
            src = src.split("; ")[params.get("def") == "judge-logprob"].split(" (")[0]
        parts = [e.definition(params), direction(arrow, key), unit] + ([src] if src else [])
    return "; ".join(parts) + f"; `{key}`"


__all__ = ["ENTRIES", "base_name", "direction", "gloss", "short_names"]
