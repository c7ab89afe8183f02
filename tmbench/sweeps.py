"""Parameter sweeps in suite decoder entries, expanded at load time into ordinary entries.

An entry may give ``sweep:``, a mapping of parameter names to lists of values; the entry then
stands for one entry per point of the Cartesian product of the lists (first parameter
outermost), each with ``params`` plus that point's values::

    - {name: nucleus, sweep: {p: [0.8, 0.9, 0.95]}}
          -> nucleus-p0.8, nucleus-p0.9, nucleus-p0.95
    - {name: sampling, label: temp, params: {top_k: 0}, sweep: {temperature: [0.3, 1.0]}}
          -> temp-temperature0.3, temp-temperature1.0
    - {name: maturation, label: "tm-a{alpha_max}-k{tail_len}",
       sweep: {alpha_max: [0.5, 0.9], tail_len: [1, 16]}}
          -> tm-a0.5-k1, tm-a0.5-k16, tm-a0.9-k1, tm-a0.9-k16

Label rule: the entry's label (default: the decoder name), then ``-<parameter><value>`` for
each swept parameter in the order written; or, when the label holds ``{parameter}``
placeholders, the label with each replaced by that point's value. A value is written as
YAML read it (Python ``repr`` of numbers, so ``1.0`` stays ``1.0`` and ``1`` stays ``1``;
``true``/``false``; strings as they are). A point is an entry like any other: its run key
is the one a hand-written entry with the same parameters gets (labels are not in run keys).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

MAX_POINTS = 1000  # points of one sweep entry
_FIELD = re.compile(r"\{([^{}]*)\}")


def value_text(v: Any) -> str:
    """A swept value as it appears in a label."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return repr(v) if isinstance(v, float) else str(v)


def point_label(label: str, point: dict[str, Any]) -> str:
    """The label of one point (see the module docstring for the rule)."""
    if "{" in label:
        return _FIELD.sub(lambda m: value_text(point[m.group(1)]), label)
    return "-".join([label] + [f"{k}{value_text(v)}" for k, v in point.items()])


def expand_sweep(entry: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The entries one suite decoder entry stands for: itself without a ``sweep``, else one
    per point (``sweep`` removed, the point's values added to ``params``). Raises ValueError
    naming ``where`` (the file and entry) on a malformed sweep."""
    if "sweep" not in entry:
        return [entry]

    def fail(msg: str):
        raise ValueError(f"{where}.sweep: {msg}")

    sweep, params = entry["sweep"], entry.get("params") or {}
    if not isinstance(params, dict):
        fail(f"the entry's params must be a mapping of parameter names to values, got {params!r}")
    if not isinstance(sweep, dict) or not sweep or any(not isinstance(k, str) for k in sweep):
        fail(f"must be a non-empty mapping of parameter names to lists of values, e.g. "
             f"{{p: [0.9, 0.95]}}; got {sweep!r}")
    for k, vs in sweep.items():
        if not isinstance(vs, list) or not vs:
            fail(f"{k}: must be a non-empty list of values, got {vs!r}")
        if any(isinstance(v, (list, dict)) for v in vs):
            fail(f"{k}: values must be numbers, strings, booleans or null, got {vs!r}")
        if len({value_text(v) for v in vs}) != len(vs):
            fail(f"{k}: has duplicates: {vs!r}")
        if k in params:
            fail(f"{k} is both in params ({params[k]!r}) and swept; give it in one place")
    n = 1
    for vs in sweep.values():
        n *= len(vs)
    if n > MAX_POINTS:
        fail(f"{n} points; accepted: at most {MAX_POINTS} per entry")
    label = entry.get("label", entry.get("name"))
    if isinstance(label, str) and "{" in label:
        names = _FIELD.findall(label)
        bad = sorted(set(names) - set(sweep))
        missing = [k for k in sweep if k not in names]
        if bad or missing or label.count("{") != len(names):
            fail(f"label template {label!r} must name each swept parameter once as "
                 f"{{parameter}} ({', '.join(sweep)})"
                 + (f"; unknown: {bad}" if bad else "") + (f"; missing: {missing}" if missing else ""))
    out = []
    for values in itertools.product(*sweep.values()):
        point = dict(zip(sweep, values))
        e = {k: v for k, v in entry.items() if k != "sweep"}
        e["params"] = {**params, **point}
        e["label"] = point_label(label, point) if isinstance(label, str) else label
        out.append(e)
    return out
