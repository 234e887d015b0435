"""docs/architecture.md has one row per module of appliance/ and drivers/ (and their subpackages) that
says its job, and no row for a module that is not there: the map stays true as modules come and go.

A package's ``__init__.py`` that holds only its docstring is not a module of its own here.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
_ROW = re.compile(r"^\| `(?P<module>[^`]+\.py)` \| (?P<job>[^|]*?) \|", re.M)


@functools.cache
def modules() -> tuple[str, ...]:
    """Every module of ``appliance/`` and ``drivers/``, as a path from the repository root."""
    found = []
    for package in ("appliance", "drivers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstring_only = not tree.body or (len(tree.body) == 1 and ast.get_docstring(tree) is not None)
            if path.name == "__init__.py" and docstring_only:
                continue
            found.append(path.relative_to(ROOT).as_posix())
    return tuple(found)


def documented() -> dict[str, str]:
    """The rows of the "Modules" section: module -> its job."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Modules\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    rows: dict[str, str] = {}
    for match in _ROW.finditer(section):
        assert match["module"] not in rows, f"{match['module']} has two rows"
        rows[match["module"]] = match["job"].strip()
    return rows


def test_every_module_has_a_row_that_says_its_job() -> None:
    rows = documented()
    missing = [module for module in modules() if module not in rows]
    assert not missing, f"docs/architecture.md, Modules: no row for {', '.join(missing)}"
    assert not [module for module, job in rows.items() if not job], "a row without a job"


def test_every_row_names_a_module_that_exists() -> None:
    present = set(modules())
    stale = [module for module in documented() if module not in present]
    assert not stale, f"docs/architecture.md, Modules: rows for modules that are not there: {', '.join(stale)}"


def test_the_test_sees_the_tree() -> None:
    found = modules()
    assert "appliance/config.py" in found and "drivers/simulator/modem.py" in found
    assert "drivers/__init__.py" not in found  # a docstring only
    assert "appliance/__init__.py" in found  # holds __version__
