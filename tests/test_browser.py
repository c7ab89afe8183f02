"""The leaderboard and report pages driven in a real headless Chromium through Selenium: click a
header and the rows reorder (reversed on a second click), type in the model and decoder boxes and
only matching rows stay visible, the toggle shows the hidden columns, and the page paints.

The pages are generated here from the committed records (suite ``default``) by the current code,
the way ``results/default-v3.html`` and ``results/report.html`` are. Needs the Debian packages
``chromium`` and ``chromium-driver`` and the ``selenium`` package (in the ``test`` extra); skips
without them. .ci/run installs both packages.
"""

import importlib.util
import io
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "runs"
SUITE = "default"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                else shutil.which("chromedriver"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600"]

_missing = [what for what, ok in (
    ("Chromium (Debian package 'chromium')", CHROMIUM),
    ("chromedriver (Debian package 'chromium-driver')", CHROMEDRIVER),
    ("selenium (pip install selenium, or the [test] extra)", importlib.util.find_spec("selenium")),
) if not ok]
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"browser tests need {', '.join(_missing)}; "
                                                       ".ci/run installs chromium and chromium-driver")

# Reads the DOM after a real click or keystroke; the actions themselves go through WebDriver.
ROWS_JS = """var col = arguments[0];
return Array.from(document.querySelectorAll('table.lb')).map(function (t) {
  var cols = Array.from(t.tHead.rows[0].cells).map(function (th) { return th.dataset.col; });
  var j = cols.indexOf(col);
  return Array.from(t.tBodies[0].rows).map(function (r) {
    return {i: +r.dataset.i, model: r.dataset.model, decoder: r.dataset.decoder,
            v: j < 0 ? null : r.cells[j].getAttribute('data-v')};
  });
});"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The leaderboard and the report, built from the committed records by the current code."""
    from tmbench.leaderboard import write_leaderboards
    from tmbench.report import build_report

    assert any(RUNS.glob(f"{SUITE}/v*/*/record.json")), f"no committed records under {RUNS / SUITE}"
    dest = tmp_path_factory.mktemp("pages")
    html = [p for p in write_leaderboards(RUNS, dest, SUITE, warn=lambda m: None) if p.suffix == ".html"]
    assert len(html) == 1, html
    return {"leaderboard": html[0], "report": build_report(RUNS, dest / "report.html", SUITE)}


def _chromium(page, profile):
    """A fresh headless Chromium (its own profile) showing ``page``; yields the driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        driver.get(page.resolve().as_uri())
        yield driver
    finally:
        driver.quit()


@pytest.fixture(params=["leaderboard", "report"])
def browser(request, pages, tmp_path):
    """One page in a fresh headless Chromium."""
    yield from _chromium(pages[request.param], tmp_path / "profile")


def _css(root, sel):
    """Elements matching ``sel`` under the page or an element."""
    from selenium.webdriver.common.by import By

    return root.find_elements(By.CSS_SELECTOR, sel)


def _rows(d, col=None) -> list[list[dict]]:
    """Per sortable table, its rows in DOM order: data-i, model, decoder and ``col``'s data-v."""
    return d.execute_script(ROWS_JS, col)


def _num(v):
    """A cell's number as the page's script reads it (parseFloat): None where it is no number."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _sorted(rows: list[dict], kind: str, desc: bool) -> list[int]:
    """The order the page promises: the human row first, then by value (numbers, or
    lower-cased text), cells without a value last either way, ties in record order (data-i)."""
    val = _num if kind == "num" else (lambda v: v.lower())
    human = [r for r in rows if r["model"] == "human"]
    rows = [r for r in rows if r["model"] != "human"]
    have = sorted((r for r in rows if val(r["v"]) is not None), key=lambda r: r["i"])
    have.sort(key=lambda r: val(r["v"]), reverse=desc)  # stable: ties keep data-i order
    empty = sorted((r for r in rows if val(r["v"]) is None), key=lambda r: r["i"])
    return [r["i"] for r in human + have + empty]


def _header(d, col):
    """``col``'s header in the first sortable table."""
    return _css(d, f'table.lb th[data-col="{col}"]')[0]


def _order(d, col) -> list[int]:
    return [r["i"] for r in _rows(d, col)[0]]


def test_clicking_a_header_sorts_the_rows_and_a_second_click_reverses_them(browser):
    from tmbench.render import FIXED

    d = browser
    opened = _rows(d)[0]
    assert [r["i"] for r in opened] == list(range(len(opened))), "the page opens in record order"
    # The first shown metric whose sorted order differs from record order both ways.
    cols = [th.get_attribute("data-col") for th in _css(_css(d, "table.lb")[0], "th")
            if th.get_attribute("data-col") not in FIXED and th.is_displayed()]
    col = next((c for c in cols if all(_sorted(_rows(d, c)[0], "num", desc) != list(range(len(opened)))
                                       for desc in (False, True))), None)
    assert col, "no metric column to sort by"
    before = _rows(d, col)[0]

    th = _header(d, col)
    first_desc = th.get_attribute("data-first") == "desc"  # higher-is-better columns open best first
    th.click()
    assert th.get_attribute("aria-sort") == ("descending" if first_desc else "ascending")
    assert _order(d, col) == _sorted(before, "num", first_desc)

    th.click()
    assert th.get_attribute("aria-sort") == ("ascending" if first_desc else "descending")
    twice = _order(d, col)
    assert twice == _sorted(before, "num", not first_desc)

    d.refresh()  # the view lives in the address: reloading shows the same order
    assert _order(d, col) == twice

    # A text column sorts by lower-cased text, A to Z first; ties keep record order.
    by_decoder = _rows(d, "decoder")[0]
    _header(d, "decoder").click()
    shown = _rows(d, "decoder")[0]
    assert [r["i"] for r in shown] == _sorted(by_decoder, "text", False)
    assert [r["i"] for r in shown] != twice
    rest = [r["v"].lower() for r in shown if r["model"] != "human"]
    assert shown[0]["model"] == "human" and rest == sorted(rest)


def _visible(d) -> list[list[tuple[str, str]]]:
    """Per sortable table, (model, decoder) of the rows the browser actually displays."""
    return [[(r.get_attribute("data-model"), r.get_attribute("data-decoder"))
             for r in _css(t, "tbody tr") if r.is_displayed()]
            for t in _css(d, "table.lb")]


def _type(box, text):
    from selenium.webdriver.common.keys import Keys

    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def _unique(names: list[str]) -> str:
    """The most frequent name that is no part of another name (the boxes match substrings)."""
    count = Counter(names)
    ok = [n for n in count if n != "human" and not any(n != m and n.lower() in m.lower() for m in count)]
    assert ok, names
    return max(ok, key=lambda n: (count[n], n))


def test_typing_a_model_or_decoder_keeps_only_its_rows(browser):
    d = browser
    rows = _rows(d)
    everything = [[(r["model"], r["decoder"]) for r in t] for t in rows]
    assert _visible(d) == everything
    model = _unique([r["model"] for r in rows[0]])
    decoder = _unique([r["decoder"] for r in rows[0]])
    model_box = _css(d, 'input[data-filter="model"]')[0]
    decoder_box = _css(d, 'input[data-filter="decoder"]')[0]

    _type(model_box, model)
    shown = _visible(d)
    assert shown == [[md for md in t if md[0] == model] for t in everything]
    assert len(shown[0]) >= 2 and sum(map(len, shown)) < sum(map(len, everything))
    assert "model=" in d.current_url

    _type(model_box, "")
    assert _visible(d) == everything

    _type(decoder_box, decoder)
    shown = _visible(d)
    assert shown == [[md for md in t if decoder.lower() in md[1].lower()] for t in everything]
    assert shown[0] and all(dec == decoder for _, dec in shown[0])
    assert sum(map(len, shown)) < sum(map(len, everything))

    _type(model_box, model)  # both boxes: rows that match both
    assert _visible(d) == [[md for md in t if md[0] == model and decoder.lower() in md[1].lower()]
                           for t in everything]

    _type(model_box, "")
    _type(decoder_box, "")
    assert _visible(d) == everything


def test_the_toggle_shows_the_hidden_columns(browser):
    from tmbench.render import FIXED

    d = browser
    table = _css(d, "table.lb")[0]
    extra = _css(table, "th.x")
    btn = _css(d, "button[data-toggle]")[0]
    n_metrics = len(_css(table, "th")) - len(FIXED)
    assert extra and not any(th.is_displayed() for th in extra)
    assert btn.text == f"show all {n_metrics} metrics"

    btn.click()
    assert all(th.is_displayed() for th in extra)
    assert all(td.is_displayed() for td in _css(table, "tbody tr:first-child td.x"))
    assert btn.text == "headline columns only" and "all=1" in d.current_url

    btn.click()
    assert not any(th.is_displayed() for th in extra)
    assert btn.text == f"show all {n_metrics} metrics"


def _pixels(png: bytes) -> np.ndarray:
    PIL = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) reads the screenshot")
    return np.asarray(PIL.open(io.BytesIO(png)).convert("RGB")).astype(float) / 255  # (H, W, 3)


def test_the_page_paints(browser):
    d = browser
    img = _pixels(d.get_screenshot_as_png())
    assert img.shape[0] >= 500 and img.shape[1] >= 1000
    dark = (img.mean(-1) < 0.5).sum()  # text
    assert dark > 2000, "no text painted"
    assert len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20, "a flat screenshot"
    table = _pixels(_css(d, "table.lb")[0].screenshot_as_png)
    assert (table.mean(-1) < 0.5).sum() > 1000, "the table is blank"
    for im in _css(d, "img")[:1]:  # the report's plots: decoded and painted
        assert d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", im) > 100
        plot = _pixels(im.screenshot_as_png)
        assert plot.std() > 0.05, "a blank plot"


@pytest.fixture
def report_page(pages, tmp_path):
    """The report in a fresh headless Chromium."""
    yield from _chromium(pages["report"], tmp_path / "profile")


@pytest.fixture(scope="module")
def quality_table():
    from tmbench.leaderboard import build_tables

    return next(t for t in build_tables(RUNS, SUITE, warn=lambda m: None) if t.fingerprint is None)


def _repeated_spans(text: str, n: int) -> list[str]:
    """The marked substrings the page promises: runs of wordpunct units (words, single
    punctuation characters) covered by an n-gram that occurs earlier in the same text."""
    import re

    toks = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\w+|[^\w\s]", text)]
    seen, marked = set(), [False] * len(toks)
    for i in range(len(toks) - n + 1):
        key = tuple(t[2] for t in toks[i:i + n])
        if key in seen:
            marked[i:i + n] = [True] * n
        seen.add(key)
    spans, start = [], None
    for k, m in enumerate(marked + [False]):
        if m and start is None:
            start = k
        elif not m and start is not None:
            spans.append(text[toks[start][0]:toks[k - 1][1]])
            start = None
    return spans


def _shown(d):
    """The browser's prompt and columns: (row index or None for the human column, [(label,
    text, [marked substrings])])."""
    sec = _css(d, "section[data-sb]")[0]
    cols = []
    for col in _css(sec, ".sb-col"):
        texts = [(lab.text, d.execute_script("return arguments[0].textContent", box),
                  [m.get_attribute("textContent") for m in _css(box, "mark")])
                 for lab, box in zip(_css(col, ".sb-seed"), _css(col, ".sb-text"))]
        row = col.get_attribute("data-row")
        cols.append((None if row is None else int(row), texts))
    prompt = d.execute_script("return arguments[0].textContent", _css(sec, "[data-sb-prompt-text]")[0])
    return prompt, cols


def _expected(t, i: int, prompt: str) -> list[tuple[str, str]]:
    """The texts of row ``i`` of the table for that prompt, from its records, by seed."""
    recs = sorted(t.rows[i].records, key=lambda r: r["spec"]["seed"])
    return [(f"seed {r['spec']['seed']}", s["text"]) for r in recs for s in r["samples"]
            if s["prompt_text"] == prompt]


def test_picking_a_prompt_shows_the_records_texts_with_repeats_marked(report_page, quality_table):
    from selenium.webdriver.support.ui import Select

    d, t = report_page, quality_table
    sec = _css(d, "section[data-sb]")[0]
    pick = Select(_css(sec, "select[data-sb-prompt]")[0])
    assert len(pick.options) == max(r.n_prompts for r in t.rows)
    marks = []
    for value in ("5", "11"):
        pick.select_by_value(value)
        prompt, cols = _shown(d)
        human = next(s for r in t.rows for rec in r.records for s in rec["samples"]
                     if s["prompt_text"] == prompt)
        assert prompt and prompt == human["prompt_text"]
        assert cols[0][0] is None and [x[1] for x in cols[0][1]] == [human["reference_text"]]
        rows = [i for i, _ in cols[1:]]
        assert len(rows) == 3 and all(t.rows[i].model != "human" for i in rows)
        for i, texts in cols[1:]:
            assert [(lab, text) for lab, text, _ in texts] == _expected(t, i, prompt), t.rows[i].name
        marked = [(text, m) for _, texts in cols for _, text, m in texts]
        assert all(m == _repeated_spans(text, 3) for text, m in marked)
        marks += [m for _, m in marked if m]
    assert marks, "no repeated 3-gram marked in any shown text"

    Select(_css(sec, "select[data-sb-n]")[0]).select_by_visible_text("2")
    _, cols = _shown(d)
    assert all(m == _repeated_spans(text, 2) for _, texts in cols for _, text, m in texts)


def test_searching_prompts_and_jumping_from_a_table_row(report_page, quality_table):
    from selenium.webdriver.support.ui import Select

    d, t = report_page, quality_table
    sec = _css(d, "section[data-sb]")[0]
    prompts = [o.get_attribute("value") for o in Select(_css(sec, "select[data-sb-prompt]")[0]).options]
    texts = {s["prompt_text"] for r in t.rows for rec in r.records for s in rec["samples"]}
    # a word found (as a substring, case ignored, the way the search matches) in one prompt only
    words = sorted({w for p in texts for w in p.split() if len(w) > 5 and w.isalpha()})
    word = next(w for w in words if sum(w.lower() in p.lower() for p in texts) == 1)
    _type(_css(sec, "input[data-sb-search]")[0], word)
    # options of a closed <select> are never "displayed" to WebDriver; the filter hides them
    visible = [o for o in _css(sec, "select[data-sb-prompt] option") if not o.get_property("hidden")]
    assert len(prompts) > 1 and len(visible) == 1
    assert _css(sec, "[data-sb-count]")[0].text.startswith(f"1 of {len(prompts)} prompts")
    prompt, cols = _shown(d)
    assert word in prompt.split()
    for i, shown in cols[1:]:
        assert [(lab, text) for lab, text, _ in shown] == _expected(t, i, prompt)

    # a row the browser does not show yet: its button adds it and scrolls there
    shown_rows = {i for i, _ in cols}
    i = next(i for i, r in enumerate(t.rows) if r.model != "human" and i not in shown_rows)
    btn = _css(d, f'table.lb tr[data-i="{i}"] button.jump')[0]
    btn.click()
    _, cols = _shown(d)
    assert i in [j for j, _ in cols]
    assert [(lab, text) for lab, text, _ in dict(cols)[i]] == _expected(t, i, prompt)
    top = d.execute_script("return arguments[0].getBoundingClientRect().top", sec)
    assert abs(top) < 5, "the page did not scroll to the browser"
    assert "sort=" not in d.current_url  # the button does not sort the table


def test_model_and_decoder_stay_put_while_the_table_scrolls_sideways(report_page):
    d = report_page
    _css(d, "button[data-toggle]")[0].click()  # every column: a wide table
    box = _css(d, "div.scroll")[0]
    row = _css(box, "tbody tr")[1]
    cells = _css(row, "td")
    x = lambda el: d.execute_script("return arguments[0].getBoundingClientRect().left", el)  # noqa: E731
    before = [x(c) for c in cells[:3]] + [x(cells[-1])]
    d.execute_script("arguments[0].scrollLeft = 600", box)
    assert d.execute_script("return arguments[0].scrollLeft", box) > 500
    after = [x(c) for c in cells[:3]] + [x(cells[-1])]
    assert after[:2] == pytest.approx(before[:2], abs=1)  # model and decoder frozen
    assert after[2] < before[2] - 500 and after[3] < before[3] - 500  # the rest scrolled
    assert after[1] >= after[0] + cells[0].size["width"] - 2  # decoder right of model, not over it
