"""Student exercises from one source: `solutions/` -> `exercises/`.

`solutions/` holds the complete notebooks. Solution code sits between two lines
`### BEGIN SOLUTION` and `### END SOLUTION`; `build_exercises()` writes `exercises/` with each
such region replaced by `# YOUR CODE HERE` / `raise NotImplementedError()` and all outputs
removed. Never edit `exercises/` by hand: `python -m slmlib exercises build` rewrites it.
A marker that is not exactly one of those lines (`## BEGIN SOLUTION`, a marker at the end of a
code line) stops the build before anything is written: it would publish the answer.

Every task is followed by a check cell whose first line is `# CHECK`; grading.py grades the
students' notebooks against these. The last section holds two helpers the check cells import: a run whose
validation loss turned (the graded runs are 20 smoke steps, and those never turn) and a look at which
library shortcuts a "by hand" function calls.
"""
from __future__ import annotations

import copy
import re
import types
from pathlib import Path

import nbformat

from . import KERNEL_DISPLAY_NAME, KERNEL_NAME
from .errors import CourseError, UsageError
from .history import History
from .paths import ROOT

SOLUTIONS_DIR = ROOT / "solutions"
EXERCISES_DIR = ROOT / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
TASK_CHECK_MARK = "# CHECK"  # first line of a task's check cell (not nbval's course.NBVAL_MARK)
KERNELSPEC = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in tracebacks
MARKER_LIKE = re.compile(r"\b(BEGIN|END)[\s_-]*SOLUTION\b", re.IGNORECASE)  # a marker, perhaps mistyped


class SolutionMarkerError(CourseError, ValueError):
    """A BEGIN/END SOLUTION pair that does not match up."""


# ---------------------------------------------------------------- building exercises/

def strip_solutions(source: str, where: str = "cell") -> str:
    """The source with every solution region replaced by the stub, at the region's indentation."""
    out, indent = [], None
    for n, line in enumerate(source.splitlines(), 1):
        mark = line.strip()
        if mark == BEGIN:
            if indent is not None:
                raise SolutionMarkerError(f"{where}, line {n}: {BEGIN} inside another solution region")
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + s for s in STUB]
        elif mark == END:
            if indent is None:
                raise SolutionMarkerError(f"{where}, line {n}: {END} without a {BEGIN} before it")
            indent = None
        elif MARKER_LIKE.search(line):
            expected = BEGIN if "BEGIN" in MARKER_LIKE.search(line).group(0).upper() else END
            raise SolutionMarkerError(f"{where}, line {n}: {line.strip()[:80]!r} is not a solution marker; "
                                      f"write {expected!r} alone on its line (nothing was written)")
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise SolutionMarkerError(f"{where}: {BEGIN} without a matching {END}")
    return "\n".join(out)


def make_exercise(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The exercise version of one solution notebook (a new object; the input is untouched)."""
    nb = copy.deepcopy(solution)
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["slm_course"] = {"exercise": name}  # grading finds the exercise even if renamed
    for i, cell in enumerate(nb.cells):
        for key in ("execution", "papermill"):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"{name}.ipynb, cell {i}")
            cell.outputs, cell.execution_count = [], None
        elif MARKER_LIKE.search(cell.source):  # it would reach the students as it is
            raise SolutionMarkerError(f"{name}.ipynb, cell {i}: solution markers only work in code cells")
    nbformat.validate(nb)
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build_exercises(check: bool = False, solutions_dir: Path = SOLUTIONS_DIR,
                    exercises_dir: Path = EXERCISES_DIR) -> list[str]:
    """Write exercises/ from solutions/; the names of the files that changed (or would, with check).

    Exercise files without a solution are stale: they count as changed and are removed.
    """
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    sources = sorted(solutions_dir.glob("*.ipynb"))
    if not sources:
        raise UsageError(f"no solution notebooks in {solutions_dir}")
    wanted = {p.name: notebook_text(make_exercise(nbformat.read(p, as_version=4), p.stem)) for p in sources}
    changed = []
    for name, text in wanted.items():
        target = exercises_dir / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            changed.append(name)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    for stale in sorted(exercises_dir.glob("*.ipynb")):
        if stale.name not in wanted:
            changed.append(stale.name)
            if not check:
                stale.unlink()
    return changed


def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(TASK_CHECK_MARK)


# ---------------------------------------------------------------- helpers for the check cells

def turned_history() -> History:
    """A made-up finished run whose validation loss was lowest at step 50 of 100, then rose.

    Grading runs the exercises in smoke mode, 20 steps, where the validation loss is always lowest at the last
    step: there "the final gap" and "the gap at the best step" are the same number, and so are "the best
    step" and "the last step". A check that calls the student's function on this run as well tells them apart.
    """
    history = History(status="completed")
    for step, train_loss, val_loss in ((0, 7.6, 7.6), (25, 4.0, 4.1), (50, 3.0, 3.4), (75, 2.4, 3.7),
                                       (100, 2.0, 3.9)):
        history.record({"iter": step, "train_loss": train_loss, "val_loss": val_loss})
    last = history.records[-1]
    history.final = {"train_loss": last["train_loss"], "val_loss": last["val_loss"],
                     "gap": round(last["val_loss"] - last["train_loss"], 4)}
    return history


def shortcuts_in(func, names) -> list[str]:
    """Which of `names` a student's function uses: as a global it reads or an attribute it takes, in its own
    code, its inner functions, lambdas and comprehensions, and the notebook's other functions it calls (a
    function the notebook defined itself is the student's work, whatever its name: it is read, not counted).

    A "count it by hand" check compares the numbers with the library's *and* asks this, so that
    `return model.num_params()` does not pass for a hand count. It reads the compiled code, so a comment or a
    variable that happens to share a name does not count; a call hidden behind getattr and a string does
    (the README's known limit: a determined student can fool a check that runs in their kernel).
    """
    wanted, found = set(names), set()
    seen_code: set = set()
    todo = [func]
    while todo:
        f = todo.pop()
        f_globals = getattr(f, "__globals__", None)
        stack = [getattr(f, "__code__", None)]
        while stack:
            code = stack.pop()
            if not isinstance(code, types.CodeType) or code in seen_code:
                continue
            seen_code.add(code)
            stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
            for name in code.co_names:
                other = f_globals.get(name) if f_globals is not None else None
                if isinstance(other, types.FunctionType) and other.__globals__ is f_globals:
                    todo.append(other)  # the notebook's own function (even one named like the shortcut): look inside
                elif name in wanted:
                    found.add(name)
    return sorted(found)
