"""The leaderboard and report pages driven in a real headless Chromium through Selenium: click a
header and the rows reorder (reversed on a second click), type in the model and decoder boxes and
only matching rows stay visible, the toggle shows the hidden columns, and the page paints.

The pages are generated here from the committed records (suite ``default``) by the current code,
the way ``results/default-v2.html`` and ``results/report.html`` are. Needs the Debian packages
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


@pytest.fixture(params=["leaderboard", "report"])
def browser(request, pages, tmp_path):
    """A fresh headless Chromium (its own profile) showing one page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        driver.get(pages[request.param].resolve().as_uri())
        yield driver
    finally:
        driver.quit()


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
