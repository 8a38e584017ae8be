"""The package's house rules (README "Layout"): files stay readable and imports go only downwards.

A room (``ssinfnet/<room>/``) may import its own modules and rooms on a lower level, never a room on
its own level or above; the top-level entry points (``cli``, ``__main__``) may import anything.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ssinfnet"
LEVELS = {"data": 0, "models": 0, "training": 1, "evaluation": 1, "severity": 1, "stats": 1,
          "pretraining": 2, "segmentation": 2, "plots": 3, "book": 4}
MAX_LINES = 450
# the one sideways import the layout allows: segmentation scores its validation split with evaluation's metrics
ALLOWED = {("segmentation", "evaluation")}
FILES = sorted(PACKAGE.rglob("*.py"))


def _room(parts: list[str]) -> str | None:
    return parts[0] if len(parts) > 1 else None


def imported_rooms(path: Path) -> set[str]:
    """Rooms that the module at ``path`` imports (top-level and lazy imports alike)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            target = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "ssinfnet":
            target = node.module.split(".")[1:]
        else:
            continue
        names = [a.name for a in node.names] if not target else []
        for room in ([target[0]] if target else names):
            if room in LEVELS:
                out.add(room)
    return out


def test_rooms_and_levels_match_the_package():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(LEVELS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_files_are_short(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_go_down(path):
    room = _room(list(path.relative_to(PACKAGE).parts))
    if room is None:  # cli, __main__, __init__: the entry points
        return
    bad = {r for r in imported_rooms(path) - {room} if LEVELS[r] >= LEVELS[room] and (room, r) not in ALLOWED}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)} (level {LEVELS[room]} may import only lower rooms)"


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    (tmp_path / "stats").mkdir()
    bad = tmp_path / "stats" / "x.py"
    bad.write_text("from ..plots import stats\nfrom ..data.classes import GGO\n")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path)
    assert imported_rooms(bad) == {"plots", "data"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_class_names_come_from_the_vocabulary(path):
    """One vocabulary of classes: no module but data/classes.py spells a class name as a string literal."""
    if path.relative_to(PACKAGE).as_posix() in ("data/classes.py", "data/__init__.py"):  # the vocabulary, re-exported
        return
    literals = {n.value for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not literals & {"ggo", "GGO", "consolidation"}, path.relative_to(PACKAGE)
