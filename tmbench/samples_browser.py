"""The report's samples browser: pick a prompt (or search the prompt texts) and read the
continuations of any rows side by side with the human continuation, repeated n-grams marked.

Everything comes from the records behind a quality table's rows (``Row.records``): the prompt,
the human continuation (each sample's ``reference_text``) and every seed's text, embedded in the
page as JSON (nothing fetched). Prompts are told apart by their text, so rows run on other
prompt sets (``(n=4)``) line up where they share a prompt. The page script (``SCRIPT``) draws
the chosen prompt's texts and marks every word n-gram that repeats an earlier one in the same
text: the repeats that Rep-n and seq-Rep-n count, on the metrics' ``wordpunct`` units (words;
each punctuation character on its own; case kept). A table row's "texts" button adds that row
to the browser and scrolls there.
"""

from __future__ import annotations

import html
import json
import re

from tmbench.aggregate import HUMAN, Table

DEFAULT_ROWS = 3  # rows shown when the page opens; the others are a click away
MARK_N = (2, 3, 4)  # n-gram orders the reader can mark; 3 first, as Loop% counts 3-grams


def browser_id(t: Table) -> str:
    return "samples-" + re.sub(r"[^A-Za-z0-9_-]", "-", f"{t.suite}-v{t.version}")


def browser_data(t: Table) -> dict:
    """Prompts (text, human continuation) in the order of their first row's prompt indices,
    and per row (its index in the table) the texts of every seed by prompt position."""
    prompts: dict[tuple[str, str], int] = {}
    rows = []
    for i, r in enumerate(t.rows):
        texts: dict[int, list[list[str]]] = {}
        samples = sorted(((s, rec["spec"]["seed"]) for rec in r.records for s in rec["samples"]),
                         key=lambda x: (x[0]["prompt_index"], x[1]))
        per: dict[tuple[int, int], int] = {}
        for s, seed in samples:
            k = (s.get("prompt_text", ""), s.get("reference_text") or "")
            pos = prompts.setdefault(k, len(prompts))
            j = per[(pos, seed)] = per.get((pos, seed), -1) + 1
            texts.setdefault(pos, []).append([f"seed {seed}" + (f" #{j + 1}" if j else ""), s["text"]])
        rows.append({"row": i, "model": r.model, "decoder": r.decoder, "human": r.model == HUMAN,
                     "texts": texts})
    return {"prompts": [{"text": p, "ref": ref} for p, ref in prompts], "rows": rows}


def _json(data: dict) -> str:
    # inside <script>: no "</" may end the element early
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def browser_html(t: Table) -> str:
    """The browser's section for one quality table (empty without samples)."""
    data = browser_data(t)
    if not data["prompts"]:
        return ""
    e = html.escape
    sid = browser_id(t)
    shown = [r["row"] for r in data["rows"] if not r["human"]][:DEFAULT_ROWS]
    opts = "".join(f'<option value="{k}">#{k}: {e(p["text"][:90])}</option>'
                   for k, p in enumerate(data["prompts"]))
    boxes = "".join(f'<label><input type="checkbox" data-sb-row="{r["row"]}"'
                    f'{" checked" if r["row"] in shown else ""}> {e(r["model"])} / {e(r["decoder"])}</label> '
                    for r in data["rows"] if not r["human"])
    ns = "".join(f'<option{" selected" if n == 3 else ""}>{n}</option>' for n in MARK_N)
    return (f'<section class="sb" id="{sid}" data-sb>'
            f'<p class="note">{len(data["prompts"])} prompts of {e(t.suite)} v{t.version}: pick one '
            "(or search the prompt texts) and tick rows to read their continuations next to the "
            "human one; the \"texts\" button of a table row adds it here. Marked: each word "
            "n-gram that repeats an earlier one in the same text (what Rep-n counts; wordpunct "
            "words, case kept).</p>"
            '<div class="controls"><label>search prompts <input type="search" data-sb-search '
            'placeholder="text in the prompt"></label>'
            '<button type="button" data-sb-step="-1">previous</button>'
            '<button type="button" data-sb-step="1">next</button>'
            f'<label>mark repeated <select data-sb-n>{ns}</select>-grams</label> '
            '<span class="note" data-sb-count></span></div>'
            f'<select data-sb-prompt size="6" class="sb-pick">{opts}</select>'
            f'<details open><summary>rows</summary><div class="sb-rows">{boxes}</div></details>'
            '<p class="sb-prompt"><b>Prompt:</b> <span data-sb-prompt-text></span></p>'
            '<div class="sb-cols" data-sb-cols></div>'
            f'<script type="application/json" data-sb-data>{_json(data)}</script></section>')


CSS = """.sb-pick{width:100%;font-size:12px}.sb-rows label{display:inline-block;margin-right:1em;font-size:12px}
.sb-cols{display:flex;gap:.6em;overflow-x:auto;align-items:flex-start}.sb-col{flex:0 0 22em;border:1px solid #ddd;padding:.3em .5em}
.sb-col h4{margin:.2em 0;font-size:12px}.sb-col.human{background:#f7fbff}.sb-text{white-space:pre-wrap;font-size:13px;margin:.3em 0}
.sb-text mark{background:#ffd98a}.sb-seed{font-size:11px;color:#555}.sb-prompt{white-space:pre-wrap}"""

SCRIPT = r"""(function () {
  var UNIT = /[\p{L}\p{M}\p{N}_]+|[^\p{L}\p{M}\p{N}_\s]/gu;  // wordpunct: words, single punctuation
  function repeats(text, n) {  // [start, end) character spans of n-grams seen earlier in text
    var toks = [], m;
    UNIT.lastIndex = 0;
    while ((m = UNIT.exec(text)) !== null) toks.push([m.index, m.index + m[0].length, m[0]]);
    var seen = new Set(), marked = new Array(toks.length).fill(false), rep = 0;
    for (var i = 0; i + n <= toks.length; i++) {
      var key = toks.slice(i, i + n).map(function (t) { return t[2]; }).join("\u0001");
      if (seen.has(key)) { rep++; for (var j = i; j < i + n; j++) marked[j] = true; }
      else seen.add(key);
    }
    var spans = [];
    for (var k = 0; k < toks.length; k++) {
      if (!marked[k]) continue;
      var last = spans[spans.length - 1];
      if (last && last.k === k - 1) { last.end = toks[k][1]; last.k = k; }
      else spans.push({start: toks[k][0], end: toks[k][1], k: k});
    }
    return {spans: spans, repeated: rep, total: Math.max(toks.length - n + 1, 0)};
  }
  function textBlock(text, n) {
    var div = document.createElement("div"), r = repeats(text, n), at = 0;
    div.className = "sb-text";
    r.spans.forEach(function (s) {
      div.appendChild(document.createTextNode(text.slice(at, s.start)));
      var mk = document.createElement("mark");
      mk.textContent = text.slice(s.start, s.end);
      div.appendChild(mk);
      at = s.end;
    });
    div.appendChild(document.createTextNode(text.slice(at)));
    div.title = r.repeated + " of " + r.total + " " + n + "-grams repeat an earlier one";
    return div;
  }
  function column(title, cls, rowId, entries, n) {
    var col = document.createElement("div"), h = document.createElement("h4");
    col.className = "sb-col" + (cls ? " " + cls : "");
    if (rowId !== null) col.setAttribute("data-row", rowId);
    h.textContent = title;
    col.appendChild(h);
    if (!entries.length) {
      var none = document.createElement("p");
      none.className = "note"; none.textContent = "no sample for this prompt";
      col.appendChild(none);
    }
    entries.forEach(function (e) {
      var label = document.createElement("div");
      label.className = "sb-seed"; label.textContent = e[0];
      col.appendChild(label);
      var block = textBlock(e[1], n);
      block.setAttribute("data-label", e[0]);
      col.appendChild(block);
    });
    return col;
  }
  function setup(sec) {
    var data = JSON.parse(sec.querySelector("[data-sb-data]").textContent);
    var pick = sec.querySelector("[data-sb-prompt]"), search = sec.querySelector("[data-sb-search]");
    var nsel = sec.querySelector("[data-sb-n]"), cols = sec.querySelector("[data-sb-cols]");
    var count = sec.querySelector("[data-sb-count]");
    var byRow = {};
    data.rows.forEach(function (r) { byRow[r.row] = r; });
    function draw() {
      var k = pick.value, n = +nsel.value;
      cols.innerHTML = "";
      if (k === "") { sec.querySelector("[data-sb-prompt-text]").textContent = ""; return; }
      var p = data.prompts[+k];
      sec.querySelector("[data-sb-prompt-text]").textContent = p.text;
      cols.appendChild(column("human continuation", "human", null, p.ref ? [["reference", p.ref]] : [], n));
      sec.querySelectorAll("input[data-sb-row]").forEach(function (box) {
        if (!box.checked) return;
        var r = byRow[box.getAttribute("data-sb-row")];
        cols.appendChild(column(r.model + " / " + r.decoder, "", r.row, r.texts[k] || [], n));
      });
    }
    function filter() {
      var q = search.value.toLowerCase(), shown = 0, keep = false;
      Array.prototype.forEach.call(pick.options, function (o) {
        var hit = data.prompts[+o.value].text.toLowerCase().indexOf(q) >= 0;
        o.hidden = !hit; shown += hit ? 1 : 0;
        if (hit && o.selected) keep = true;
      });
      count.textContent = shown + " of " + data.prompts.length + " prompts";
      if (!keep) {
        var first = Array.prototype.find.call(pick.options, function (o) { return !o.hidden; });
        pick.value = first ? first.value : "";
      }
      draw();
    }
    pick.addEventListener("change", draw);
    nsel.addEventListener("change", draw);
    search.addEventListener("input", filter);
    sec.querySelectorAll("input[data-sb-row]").forEach(function (b) { b.addEventListener("change", draw); });
    sec.querySelectorAll("button[data-sb-step]").forEach(function (b) {
      b.addEventListener("click", function () {
        var vis = Array.prototype.filter.call(pick.options, function (o) { return !o.hidden; });
        var i = vis.findIndex(function (o) { return o.selected; }) + (+b.getAttribute("data-sb-step"));
        if (vis.length) { pick.value = vis[(i + vis.length) % vis.length].value; draw(); }
      });
    });
    sec.showRow = function (row) {
      var box = sec.querySelector('input[data-sb-row="' + row + '"]');
      if (box && !box.checked) { box.checked = true; draw(); }
      sec.scrollIntoView();
    };
    pick.value = "0";
    filter();
  }
  document.querySelectorAll("section[data-sb]").forEach(setup);
  document.querySelectorAll("button.jump[data-samples]").forEach(function (b) {
    b.addEventListener("click", function (ev) {
      ev.stopPropagation();
      var sec = document.getElementById(b.getAttribute("data-samples"));
      if (sec && sec.showRow) sec.showRow(b.getAttribute("data-row"));
    });
  });
})();"""


__all__ = ["CSS", "SCRIPT", "browser_data", "browser_html", "browser_id"]
