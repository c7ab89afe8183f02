"""The README's layout table ("Layout: where things go") names every module under tmbench/: a
top-level module in a row's path column, a module of a subpackage in the row of its folder.
So does the layout block of docs/design.md ("## 1. Layout")."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_rows() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout: where things go", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and cells[0] not in ("path", "---"):
            rows.append((cells[0], " ".join(cells[1:])))
    return rows


def listed(module: Path, rows: list[tuple[str, str]]) -> bool:
    rel = module.relative_to(ROOT).as_posix()  # tmbench/models/delta.py
    folder, name = rel.rsplit("/", 1)
    for path, holds in rows:
        if f"`{rel}`" in path or f"`{rel}`" in holds:
            return True
        if folder == "tmbench" and f"`{name}`" in path:
            return True
        if folder != "tmbench" and f"`{folder}/`" in path and f"`{name}`" in path + holds:
            return True
    return False


def modules() -> list[Path]:
    return [p for p in sorted((ROOT / "tmbench").rglob("*.py")) if p.name != "__init__.py"]


def test_every_module_is_in_the_readme_layout_table():
    rows = layout_rows()
    assert rows, "README has no layout table"
    missing = [p.relative_to(ROOT).as_posix() for p in modules() if not listed(p, rows)]
    assert not missing, f"README layout table misses {missing}"


def design_layout_block() -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("\n## 1. Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def in_design_layout(module: Path, block: str) -> bool:
    """A top-level module names an entry (first word of an indented line); a subpackage module
    need only appear by its file name somewhere in the block (tm/model.py is just model.py)."""
    name = module.name
    if module.parent.name == "tmbench":
        return re.search(rf"^  {re.escape(name)}(\s|$)", block, re.MULTILINE) is not None
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", block) is not None


def test_every_module_is_in_the_design_layout():
    block = design_layout_block()
    assert block.strip(), "docs/design.md section 1 has no layout block"
    missing = [p.relative_to(ROOT).as_posix() for p in modules() if not in_design_layout(p, block)]
    assert not missing, f"docs/design.md layout block misses {missing}"
