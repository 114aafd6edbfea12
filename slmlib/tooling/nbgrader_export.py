"""An nbgrader course folder made from `solutions/`: `python -m slmlib exercises nbgrader DIR`.

nbgrader reads the same `### BEGIN SOLUTION` / `### END SOLUTION` lines as `exercises.py` and writes the
same stub in their place, but only in cells whose metadata says they are solution cells; on the course's
notebooks as they are, nbgrader 0.9.6 stops with "Solution region detected in a non-solution cell", and
autograde, finding no grade cells, gives everyone 0. So each solution notebook is copied with:
- every code cell holding a solution region: a solution cell (`taskN_answer`, `taskN_answer_2`, ...);
- every `# CHECK` cell: a locked grade cell worth 1 point (`taskN_check`), so nbgrader's score is the
  number of checks passed, the number `python -m slmlib grade` reports, and autograde runs the course's
  check even if a student edited theirs;
- every other cell as it is (a student may still edit the parameters cell: `smoke`, `seed`).
DIR gets nbgrader's layout, one assignment per exercise: DIR/source/ex01_tokens/ex01_tokens.ipynb, ...,
and DIR/nbgrader_config.py (written only where there is none: it is the instructor's to edit).
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from ..exercises import BEGIN, KERNELSPEC, SOLUTIONS_DIR, is_check_cell, strip_solutions
from ..paths import atomic_write

SCHEMA_VERSION = 3  # nbgrader's cell metadata schema (nbgrader 0.6 to 0.9)
POINTS_PER_CHECK = 1
CONFIG = '''\
# Written by `python -m slmlib exercises nbgrader` (not rewritten while this file exists: edit freely).
c = get_config()  # noqa: F821 - nbgrader provides get_config
# nbgrader's default is 30 s per cell; the exercises train models in a cell (ex03, ex06, ex08, ex10).
c.Execute.timeout = 600
# The stub nbgrader puts in place of each solution region: the same as exercises/ has.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
'''


def has_solution(cell) -> bool:
    return cell.cell_type == "code" and any(line.strip() == BEGIN for line in cell.source.splitlines())


def nbgrader_notebook(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The nbgrader source version of one solution notebook (a new object; the input is untouched)."""
    nb = copy.deepcopy(solution)
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["slm_course"] = {"exercise": name}  # `grade` knows it too, whatever nbgrader names the file
    task, answers = 1, 0
    for i, cell in enumerate(nb.cells):
        for key in ("execution", "papermill", "nbgrader"):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            strip_solutions(cell.source, f"{name}.ipynb, cell {i}")  # a broken marker stops here, as in build
        if is_check_cell(cell):
            cell.metadata["nbgrader"] = _meta(f"task{task}_check", grade=True, locked=True)
            task, answers = task + 1, 0
        elif has_solution(cell):
            answers += 1
            suffix = f"_{answers}" if answers > 1 else ""
            cell.metadata["nbgrader"] = _meta(f"task{task}_answer{suffix}", solution=True)
    nbformat.validate(nb)
    return nb


def _meta(grade_id: str, grade: bool = False, solution: bool = False, locked: bool = False) -> dict:
    meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id,
            "schema_version": SCHEMA_VERSION}
    if grade:
        meta["points"] = POINTS_PER_CHECK
    return meta


def write_nbgrader_source(dest: Path, solutions_dir: Path = SOLUTIONS_DIR) -> list[Path]:
    """Write DEST/source/<exercise>/<exercise>.ipynb for each solution (and a config if DEST has none)."""
    dest = Path(dest)
    written = []
    for path in sorted(Path(solutions_dir).glob("*.ipynb")):
        nb = nbgrader_notebook(nbformat.read(path, as_version=4), path.stem)
        target = dest / "source" / path.stem / path.name
        text = nbformat.writes(nb)
        atomic_write(target, lambda tmp, text=text: Path(tmp).write_text(text + "\n", encoding="utf-8"))
        written.append(target)
    config = dest / "nbgrader_config.py"
    if not config.exists():
        atomic_write(config, lambda tmp: Path(tmp).write_text(CONFIG, encoding="utf-8"))
        written.append(config)
    return written
