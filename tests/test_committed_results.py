"""The committed leaderboards are exactly what the current code produces from the committed
records (no hand edits), and the README shows that table."""

from pathlib import Path

import pytest

from tmbench.leaderboard import END, START, readme_block, write_leaderboards

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "runs"



def test_records_are_committed():
    assert any(RUNS.glob("*/v*/*/record.json")), "results/runs holds no records"


def test_tables_match_records(tmp_path):
    written = write_leaderboards(RUNS, tmp_path, warn=lambda m: pytest.fail(m))
    assert written
    for p in written:
        if p.suffix in (".md", ".csv"):
            committed = ROOT / "results" / p.name
            assert committed.read_text() == p.read_text(), f"{committed} differs from what the code produces"


def test_readme_shows_the_generated_table():
    text = (ROOT / "README.md").read_text()
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == readme_block(RUNS, "default").strip()


def test_report_is_committed():
    page = (ROOT / "results" / "report.html").read_text()
    assert "data:image/png;base64," in page and "<table" in page


def test_readme_paper_table_is_generated_from_the_records():
    from tmbench.leaderboard import PAPER_DECODERS, PAPER_END, PAPER_MODELS, PAPER_START, paper_table

    text = (ROOT / "README.md").read_text()
    block = text.split(PAPER_START, 1)[1].split(PAPER_END, 1)[0]
    suite = block.strip().split(" ", 1)[0]  # the caption starts with the suite's name
    assert suite in ("default", "standard")
    assert block.strip() == paper_table(RUNS, suite, PAPER_MODELS, PAPER_DECODERS).strip()
