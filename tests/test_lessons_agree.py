"""Lessons 03-07 teach one procedure five times: the cells they share must stay word for word the same.

A fix to the shared text (how to read the plot, the recital, the samples) then has to land in
every level's lesson, or this test names the lesson that was left behind.
"""
from pathlib import Path

import nbformat
import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0[3-7]_*.ipynb"))
SHARED = {  # a cell that starts with this is the same cell in every level's lesson
    "## Train": "markdown",
    "from slmlib.lesson import reference_line, summarize": "code",
    "## Word for word: the recital test": "markdown",
    "from slmlib.lesson import recital_line, show_recital": "code",
    "## Generate": "markdown",
    "from slmlib.generation import generate_text": "code",
}


def _cells(path):
    return nbformat.read(path, as_version=4).cells


@pytest.mark.parametrize("start", SHARED)
def test_every_level_lesson_has_the_same_shared_cell(start):
    found = {}
    for path in LESSONS:
        matches = [c.source for c in _cells(path) if c.cell_type == SHARED[start] and c.source.startswith(start)]
        assert len(matches) == 1, f"{path.name}: {len(matches)} cells start with {start!r}"
        found[path.name] = matches[0]
    first = next(iter(found.values()))
    differ = [name for name, source in found.items() if source != first]
    assert not differ, f"{differ} differ from {LESSONS[0].name} in the cell starting {start!r}"


def test_lessons_05_to_07_differ_only_where_the_level_does():
    """The same cells in the same order; only the title, the parameters, the level's name and its own prose."""
    kinds = [[c.cell_type for c in _cells(p)] for p in LESSONS[2:]]
    assert kinds[0] == kinds[1] == kinds[2]
    code = [[c.source for c in _cells(p) if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
            for p in LESSONS[2:]]
    for level, cells in zip(("small", "medium", "large"), code):
        assert [s.replace(f'"{level}"', '"LEVEL"') for s in cells] == \
               [s.replace('"small"', '"LEVEL"') for s in code[0]]
