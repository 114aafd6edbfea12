"""Student exercises from one source, and batch grading of what students hand in.

`solutions/` holds the complete notebooks. Solution code sits between two lines
`### BEGIN SOLUTION` and `### END SOLUTION`; `build_exercises()` writes `exercises/` with each
such region replaced by `# YOUR CODE HERE` / `raise NotImplementedError()` and all outputs
removed. Never edit `exercises/` by hand: `python -m slmlib exercises build` rewrites it.

Every task is followed by a check cell whose first line is `# CHECK`. `grade_submissions()`
runs each submitted notebook (smoke mode, errors allowed, a time limit per notebook) and counts
the check cells that ran without an error. Only check cells identical to the ones in
`exercises/` count, so an edited or deleted check is a failed one.
Grading runs the students' code on this machine: grade in an account you don't mind them using.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import re
import tempfile
import time
from pathlib import Path

import nbformat

from .paths import ROOT

SOLUTIONS_DIR = ROOT / "solutions"
EXERCISES_DIR = ROOT / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
CHECK_MARK = "# CHECK"
KERNELSPEC = {"name": "slm-course", "display_name": "Python 3 (SLM Course)", "language": "python"}
GRADE_COLUMNS = ("student", "exercise", "passed", "total", "seconds", "error")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in tracebacks


class SolutionMarkerError(ValueError):
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
        elif BEGIN in cell.source:  # it would reach the students as it is
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
        raise ValueError(f"no solution notebooks in {solutions_dir}")
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


# ---------------------------------------------------------------- grading

def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARK)


def check_sources(nb, passed_only: bool = False) -> list[str]:
    """The check cells' sources (whitespace-normalised); with passed_only, those that ran without an error."""
    return ["\n".join(line.rstrip() for line in c.source.strip().splitlines()) for c in nb.cells
            if is_check_cell(c) and not (passed_only and (c.get("execution_count") is None
                                                          or any(o.output_type == "error" for o in c.outputs)))]


def find_submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook): `alice.ipynb` is one student, so is a folder `alice/` of notebooks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"submissions folder not found: {folder}")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, entry))
        elif entry.is_dir():
            found += [(entry.name, p) for p in sorted(entry.glob("*.ipynb")) if not p.name.startswith(".")]
    if not found:
        raise ValueError(f"no notebooks in {folder}: expected alice.ipynb, or alice/ex01_tokens.ipynb, ...")
    return found


def _first_line(e: BaseException) -> str:
    text = ANSI.sub("", str(e)).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}".rstrip(": ")


def run_submission(path: Path, graded_path: Path, timeout: int, env: dict, smoke: bool = True):
    """Execute one notebook in its own folder, errors allowed. -> (executed nb or None, error)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from .course import kernel_name

    kernel = kernel_name()
    try:
        nb = load_notebook_node(str(path))  # nbformat.read, plus the metadata papermill expects
        nb = parameterize_notebook(nb, {"smoke": smoke}, kernel_name=kernel, language="python")
    except Exception as e:  # not JSON, not a notebook, not UTF-8...
        return None, f"unreadable notebook ({_first_line(e)})"
    started = None  # the clock starts at the first cell: a slow kernel start costs the student nothing

    def time_left(cell) -> int:
        nonlocal started
        started = started or time.monotonic()
        return max(1, math.ceil(started + timeout - time.monotonic()))

    client = NotebookClient(nb, kernel_name=kernel, allow_errors=True, shutdown_kernel="immediate",
                            timeout_func=time_left, resources={"metadata": {"path": str(path.parent.resolve())}})
    error = ""
    try:
        client.execute(env=env)
    except CellTimeoutError:
        error = f"timed out: still running after {timeout} s"
    except Exception as e:  # the kernel died, would not start, ...
        error = _first_line(e)
    graded_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, graded_path)
    return nb, error


def first_error(nb) -> str:
    """Where the first error output is, in the graded copy (cells counted from 0)."""
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                return f"first error in cell {i}: {o.ename}: {ANSI.sub('', o.evalue)[:160]}".rstrip(": ")
    return ""


def grade_notebook(student: str, path: Path, graded_dir: Path, timeout: int, env: dict,
                   smoke: bool = True, exercises_dir: Path = EXERCISES_DIR) -> dict:
    """One row of the grade table for one submitted notebook."""
    start = time.perf_counter()
    nb, error = run_submission(path, graded_dir / student / path.name, timeout, env, smoke)
    exercise = (nb.metadata.get("slm_course", {}).get("exercise") if nb else None) or path.stem
    reference_path = Path(exercises_dir) / f"{exercise}.ipynb"
    reference = check_sources(nbformat.read(reference_path, as_version=4)) if reference_path.is_file() else None
    checks, passed = (check_sources(nb), check_sources(nb, passed_only=True)) if nb else ([], [])
    problems = [error, first_error(nb) if nb else ""]
    if reference is not None:  # one of ours: only its own, unedited checks count
        passed = [s for s in passed if s in reference]
        missing = len(set(reference) - set(checks))
        problems.append(f"{missing} check cell(s) edited or deleted (count as failed)" if nb and missing else "")
    return {"student": student, "exercise": exercise, "passed": len(set(passed)),
            "total": len(reference if reference is not None else checks),
            "seconds": round(time.perf_counter() - start, 1), "error": "; ".join(filter(None, problems))}


def grade_report(rows: list[dict], timeout: int, smoke: bool) -> str:
    from .experiments import format_table

    students = []
    for name in dict.fromkeys(r["student"] for r in rows):
        mine = [r for r in rows if r["student"] == name]
        passed, total = sum(r["passed"] for r in mine), sum(r["total"] for r in mine)
        students.append({"student": name, "notebooks": len(mine), "passed": passed, "total": total,
                         "score": f"{100 * passed / total:.0f}%" if total else "-"})
    problems = [f"- {r['student']} / {r['exercise']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join([
        "# Exercise grades", "",
        f"{len(rows)} notebook(s) from {len(students)} student(s); {'smoke' if smoke else 'full'} mode, "
        f"at most {timeout} s per notebook. A task counts as passed when its `# CHECK` cell ran without an error.",
        "", "## Per student", "", format_table(students, ["student", "notebooks", "passed", "total", "score"]),
        "", "## Per notebook", "", format_table([{**r, "error": r["error"].replace("|", "/")} for r in rows], GRADE_COLUMNS),
        "", "## Problems", "", *(problems or ["None."]), ""])


def grade_submissions(submissions: Path, out: Path = Path("grades.csv"), timeout: int = 600,
                      smoke: bool = True, exercises_dir: Path = EXERCISES_DIR) -> list[dict]:
    """Run every submitted notebook and write `out` (CSV), a markdown report beside it (`grades.md`)
    and the executed copies in `graded/` beside it. The submitted files are never modified."""
    from tqdm.auto import tqdm

    out = Path(out)
    graded_dir = out.parent / "graded"
    # Executed copies from an earlier run are not submissions, even when they sit among them.
    jobs = [(s, p) for s, p in find_submissions(Path(submissions)) if graded_dir.resolve() not in p.resolve().parents]
    rows = []
    with tempfile.TemporaryDirectory(prefix="slm-grade-") as scratch:
        bar = tqdm(jobs, desc="grading", unit="notebook")
        for student, path in bar:
            bar.set_postfix_str(f"{student}/{path.name}")
            # Trained models go to a scratch folder, never to the course's models/ or outputs/. In smoke
            # mode one torch thread (unless set): on a busy CPU more threads make tiny models ~10x slower.
            env = {**({"OMP_NUM_THREADS": "1"} if smoke else {}), **os.environ, "SLM_SMOKE": "1" if smoke else "0",
                   "SLM_OUTPUTS_DIR": str(Path(scratch) / student / "outputs"),
                   "SLM_MODELS_DIR": str(Path(scratch) / student / "models")}
            rows.append(grade_notebook(student, path, graded_dir, timeout, env, smoke, exercises_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=GRADE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    report = out.with_suffix(".md")
    report.write_text(grade_report(rows, timeout, smoke), encoding="utf-8")
    print(f"graded {len(rows)} notebook(s): {out}, {report}, executed copies in {graded_dir}/")
    return rows
