"""Student exercises from one source, and batch grading of what students hand in.

`solutions/` holds the complete notebooks. Solution code sits between two lines
`### BEGIN SOLUTION` and `### END SOLUTION`; `build_exercises()` writes `exercises/` with each
such region replaced by `# YOUR CODE HERE` / `raise NotImplementedError()` and all outputs
removed. Never edit `exercises/` by hand: `python -m slmlib exercises build` rewrites it.

Every task is followed by a check cell whose first line is `# CHECK`. `grade_submissions()`
runs each submitted notebook (smoke mode, errors allowed, a time limit and a memory cap per
notebook, each in a copy of the submission with a kernel of its own, `jobs` at a time) and counts
the check cells that ran without an error. Only check cells identical to the ones in
`exercises/` count, so an edited or deleted check is a failed one.
Grading runs the students' code on this machine, as you: grade in an account you don't mind them using.
"""
from __future__ import annotations

import copy
import csv
import functools
import hashlib
import io
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .errors import CourseError, UsageError
from .paths import ROOT, atomic_write

SOLUTIONS_DIR = ROOT / "solutions"
EXERCISES_DIR = ROOT / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
CHECK_MARK = "# CHECK"
KERNELSPEC = {"name": "slm-course", "display_name": "Python 3 (SLM Course)", "language": "python"}
GRADE_COLUMNS = ("student", "exercise", "passed", "total", "seconds", "error", "notebook", "sha256")
# Address space per grading kernel. Measured: the solutions' kernels peak at 1.35-1.6 GB (VmPeak) in
# smoke mode, most of it reserved but never touched; 4 GB leaves room and stops a runaway cell.
MEMORY_MB = 4096
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in tracebacks


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


# ---------------------------------------------------------------- grading
# Each notebook runs in a worker process, in a fresh copy of what the student handed in, with its own
# kernel (smoke mode, errors allowed, a time limit, an address-space cap). A row is written to the CSV
# as soon as its notebook is done, so an interrupted batch keeps its rows and a rerun goes on from there.

class GradingError(CourseError):
    """A batch that could not grade every notebook (the rows it did grade are kept)."""


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path  # the notebook handed in
    copy: Path  # what its working folder holds: the student's folder, or the notebook alone
    name: str  # the notebook's path in the submissions folder: the key of its row
    sha256: str  # of the notebook: a resubmitted notebook is graded again


def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARK)


def check_sources(nb, passed_only: bool = False) -> list[str]:
    """The check cells' sources (whitespace-normalised); with passed_only, those that ran without an error."""
    return ["\n".join(line.rstrip() for line in c.source.strip().splitlines()) for c in nb.cells
            if is_check_cell(c) and not (passed_only and (c.get("execution_count") is None
                                                          or any(o.output_type == "error" for o in c.outputs)))]


def _submission(student: str, path: Path, copy: Path, top: Path) -> Submission:
    try:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:  # graded as an unreadable notebook, and again on every rerun
        sha = "unreadable"
    return Submission(student, path, copy, path.relative_to(top).as_posix(), sha)


def find_submissions(target: Path, exclude: Path | None = None) -> tuple[list[Submission], list[str]]:
    """(submissions, skipped): `alice.ipynb` is one student; so is a folder `alice/`, notebooks at any depth.

    target may also be one notebook. Skipped: hidden files and folders (.ipynb_checkpoints), files that
    are not notebooks, and `exclude` (the executed copies of an earlier grading).
    """
    target = Path(target)
    if target.is_file():
        if target.suffix != ".ipynb":
            raise UsageError(f"{target} is not a notebook: give a folder of submissions or one .ipynb file")
        return [_submission(target.stem, target, target, target.parent)], []
    if not target.is_dir():
        raise UsageError(f"submissions folder not found: {target}")
    excluded = exclude.resolve() if exclude is not None else None
    found, skipped = [], []

    def skip_reason(entry: Path) -> str:
        if excluded is not None and entry.resolve() == excluded:
            return "executed copies from an earlier grading"
        if entry.name.startswith("."):
            return "hidden"
        return "" if entry.is_dir() or entry.suffix == ".ipynb" else "not a notebook"

    for entry in sorted(target.iterdir()):
        why = skip_reason(entry)
        if why:
            skipped.append(f"{entry.relative_to(target)}{'/' if entry.is_dir() else ''} ({why})")
        elif entry.is_file():
            found.append(_submission(entry.stem, entry, entry, target))
        else:
            for root, dirs, files in os.walk(entry):
                root = Path(root)
                for name in sorted(dirs):
                    if skip_reason(root / name):
                        skipped.append(f"{(root / name).relative_to(target)}/ ({skip_reason(root / name)})")
                dirs[:] = sorted(d for d in dirs if not skip_reason(root / d))
                for name in sorted(files):
                    why = skip_reason(root / name)
                    if why:
                        skipped.append(f"{(root / name).relative_to(target)} ({why})")
                    else:
                        found.append(_submission(entry.name, root / name, entry, target))
    if not found:
        raise UsageError(f"no notebooks in {target}: expected alice.ipynb, or alice/ex01_tokens.ipynb, ...")
    return found, skipped


def _first_line(e: BaseException) -> str:
    text = ANSI.sub("", str(e)).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}".rstrip(": ")


def _memory_cap(memory_mb: int):
    """A preexec_fn that caps the kernel's address space (Linux; a child process inherits the cap)."""
    import resource

    limit = memory_mb * 2**20
    return functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, limit))


def read_submission(path: Path) -> tuple:
    """(notebook or None, why it cannot be graded or ""). Neither needs a kernel: graded at once."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:  # not JSON, not a notebook, not UTF-8...
        return None, f"unreadable notebook ({_first_line(e)})"
    if not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
        return nb, "empty notebook: no code cells to run"
    return nb, ""


def run_submission(path: Path, graded_path: Path, timeout: int, env: dict, smoke: bool = True,
                   memory_mb: int = 0, kernel_log: Path | None = None) -> tuple:
    """Execute one notebook in its folder with a kernel of its own, errors allowed.

    kernel_log: where the kernel's own messages go (not the notebook's output), instead of the terminal.
    -> (executed nb or None, the student's problem or "", the grader's problem or "").
    """
    nb, problem = read_submission(path)
    if problem:
        if nb is not None:
            graded_path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, graded_path)
        return nb, problem, ""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from .course import kernel_name

    kernel = kernel_name()
    try:
        nb = load_notebook_node(str(path))  # nbformat.read, plus the metadata papermill expects
        nb = parameterize_notebook(nb, {"smoke": smoke}, kernel_name=kernel, language="python")
    except Exception as e:  # a notebook papermill cannot parameterise
        return None, f"unreadable notebook ({_first_line(e)})", ""
    running = {"cell": None, "started": None}  # the clock starts at the first cell: a slow kernel start costs nothing

    def time_left(cell) -> int:
        running["started"] = running["started"] or time.monotonic()
        return max(1, math.ceil(running["started"] + timeout - time.monotonic()))

    def on_cell_start(cell, cell_index):
        running["cell"] = cell_index

    client = NotebookClient(nb, kernel_name=kernel, allow_errors=True, shutdown_kernel="immediate",
                            timeout_func=time_left, on_cell_start=on_cell_start,
                            resources={"metadata": {"path": str(path.parent)}})
    launch = {"preexec_fn": _memory_cap(memory_mb)} if memory_mb and sys.platform.startswith("linux") else {}
    error = grader_error = ""
    with open(kernel_log or os.devnull, "wb") as log:
        try:
            client.execute(env=env, stdout=log, stderr=log, **launch)
        except CellTimeoutError:
            error = f"timed out: cell {running['cell']} still running after {timeout} s"
        except DeadKernelError:
            error = (f"the kernel died in cell {running['cell']} (the code crashed it, called os._exit, or used "
                     "more memory than the system could give)" + _last_words(kernel_log))
        except Exception as e:  # the kernel would not start, ...: not the student's doing unless a cell ran
            if running["cell"] is None:
                grader_error = f"the kernel did not start ({_first_line(e)}){_last_words(kernel_log)}"
            else:
                error = f"the kernel failed in cell {running['cell']} ({_first_line(e)})"
    graded_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, graded_path)
    return nb, error, grader_error


def _last_words(kernel_log: Path | None) -> str:
    """The kernel's last message before it died ("Fatal Python error: ..."), if it left one."""
    try:
        lines = [ln.strip() for ln in kernel_log.read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, AttributeError):
        return ""
    lines = [ln for ln in lines if "Kernel is running over TCP" not in ln]  # jupyter_client's usual warning
    return f"; its last message: {ANSI.sub('', lines[-1])[:200]}" if lines else ""


def first_error(nb, memory_mb: int = 0) -> str:
    """Where the first error output is, in the graded copy (cells counted from 0)."""
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                text = f"first error in cell {i}: {o.ename}: {ANSI.sub('', o.evalue)[:160]}".rstrip(": ")
                if memory_mb and (o.ename.endswith("MemoryError") or "can't allocate memory" in o.evalue):
                    text += f" (out of memory: each kernel may use at most {memory_mb} MB)"
                return text
    return ""


def grade_notebook(student: str, path: Path, graded_path: Path, timeout: int, env: dict,
                   smoke: bool = True, exercises_dir: Path = EXERCISES_DIR, memory_mb: int = 0,
                   kernel_log: Path | None = None) -> dict:
    """One row of the grade table for one notebook (run where it is: give it a copy)."""
    start = time.perf_counter()
    nb, error, grader_error = run_submission(path, graded_path, timeout, env, smoke, memory_mb, kernel_log)
    exercise = (nb.metadata.get("slm_course", {}).get("exercise") if nb else None) or path.stem
    reference_path = Path(exercises_dir) / f"{exercise}.ipynb"
    reference = check_sources(nbformat.read(reference_path, as_version=4)) if reference_path.is_file() else None
    checks, passed = (check_sources(nb), check_sources(nb, passed_only=True)) if nb else ([], [])
    problems = [error, first_error(nb, memory_mb) if nb else ""]
    if reference is not None:  # one of ours: only its own, unedited checks count
        passed = [s for s in passed if s in reference]
        missing = len(set(reference) - set(checks))
        problems.append(f"{missing} check cell(s) edited or deleted (count as failed)" if nb and missing else "")
    elif nb:
        problems.append(f"not one of the exercises (no {reference_path.name} in {Path(exercises_dir).name}/): "
                        f"its own {len(checks)} check cell(s) counted")
    return {"student": student, "exercise": exercise, "passed": len(set(passed)),
            "total": len(reference if reference is not None else checks),
            "seconds": round(time.perf_counter() - start, 1), "error": "; ".join(filter(None, problems)),
            "grader_error": grader_error}


def _files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _kernel_env(scratch: Path, student: str, smoke: bool) -> dict:
    # Trained models go to a scratch folder, never to the course's models/ or outputs/. In smoke
    # mode one torch thread (unless set): on a busy CPU more threads make tiny models ~10x slower.
    env = {**({"OMP_NUM_THREADS": "1"} if smoke else {}), **os.environ, "SLM_SMOKE": "1" if smoke else "0",
           "SLM_OUTPUTS_DIR": str(scratch / "outputs" / student), "SLM_MODELS_DIR": str(scratch / "models" / student)}
    # The answers are never importable: solutions/ is dropped from the import path the kernel inherits.
    hidden = SOLUTIONS_DIR.resolve()
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
            if p and not (Path(p).resolve() == hidden or hidden in Path(p).resolve().parents)]
    env["PYTHONPATH"] = os.pathsep.join(kept)
    return env


def grade_one(sub: Submission, graded_dir: Path, scratch: Path, timeout: int, smoke: bool,
              exercises_dir: Path, memory_mb: int) -> dict:
    """Grade one submission in a fresh copy of it (the handed-in files are never run in place).

    The executed copy goes to graded_dir, laid out as the student's folder (or student/notebook).
    """
    graded_path = graded_dir / (sub.name if sub.copy.is_dir() else f"{sub.student}/{sub.path.name}")
    work = Path(tempfile.mkdtemp(prefix="work-", dir=scratch))
    try:
        if sub.copy.is_dir():
            shutil.copytree(sub.copy, work / sub.copy.name, ignore=shutil.ignore_patterns(".*"), symlinks=True)
            path = work / sub.copy.name / sub.path.relative_to(sub.copy)
        else:
            path = work / sub.path.name
            shutil.copy2(sub.path, path)
        before = _files_in(work)
        row = grade_notebook(sub.student, path, graded_path, timeout, _kernel_env(scratch, sub.student, smoke),
                             smoke, exercises_dir, memory_mb, kernel_log=work.with_suffix(".log"))
        deleted = len(before - _files_in(work))
        if deleted:
            row["error"] = "; ".join(filter(None, [row["error"], f"deleted {deleted} file(s) in its working folder "
                                                   "(a copy: the submission is intact)"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        work.with_suffix(".log").unlink(missing_ok=True)
    return {**row, "notebook": sub.name, "sha256": sub.sha256}


def _start_worker() -> None:
    # Its own session: Ctrl-C in the terminal reaches only the main process, which stops the workers.
    if hasattr(os, "setsid"):
        os.setsid()


def grade_report(rows: list[dict], timeout: int, smoke: bool) -> str:
    from .tables import format_table

    students = []
    for name in dict.fromkeys(r["student"] for r in rows):
        mine = [r for r in rows if r["student"] == name]
        passed, total = sum(int(r["passed"]) for r in mine), sum(int(r["total"]) for r in mine)
        students.append({"student": name, "notebooks": len(mine), "passed": passed, "total": total,
                         "score": f"{100 * passed / total:.0f}%" if total else "-"})
    problems = [f"- {r['notebook']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join([
        "# Exercise grades", "",
        f"{len(rows)} notebook(s) from {len(students)} student(s); {'smoke' if smoke else 'full'} mode, "
        f"at most {timeout} s per notebook. A task counts as passed when its `# CHECK` cell ran without an error.",
        "", "## Per student", "", format_table(students, ["student", "notebooks", "passed", "total", "score"]),
        "", "## Per notebook", "", format_table([{**r, "error": r["error"].replace("|", "/")} for r in rows],
                                                GRADE_COLUMNS[:-1]),
        "", "## Problems", "", *(problems or ["None."]), ""])


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot be written, before any notebook runs."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the CSV file to write, e.g. {out / 'grades.csv'}")
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out {out}: give a .csv file name (the report is written beside it as .md)")
    for folder in (out.parent, out.parent / "graded"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {out}: cannot make the folder {folder} ({e.strerror}); "
                             "give a CSV path in a folder you can write") from None
        if not os.access(folder, os.W_OK):
            raise UsageError(f"--out {out}: the folder {folder} is not writable; give a CSV path you can write")


def _earlier_rows(out: Path, subs: list[Submission]) -> tuple[dict[str, dict], list[str]]:
    """Rows of an earlier (perhaps interrupted) run of this batch that still hold: {notebook: row}, notes."""
    if not out.is_file():
        return {}, []
    try:
        with open(out, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if all(r.get(c) is not None for c in GRADE_COLUMNS)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return {}, [f"{out} could not be read ({_first_line(e)}): grading every notebook again"]
    current = {s.name: s.sha256 for s in subs}
    kept = {r["notebook"]: {**r, "passed": int(r["passed"]), "total": int(r["total"]), "seconds": float(r["seconds"])}
            for r in rows if current.get(r["notebook"]) == r["sha256"]}
    notes = []
    if kept:
        notes.append(f"{out} already holds {len(kept)} of these notebook(s), unchanged since they were graded: "
                     f"skipping them (delete {out.name} to grade everything again)")
    changed = [r["notebook"] for r in rows if r["notebook"] in current and r["notebook"] not in kept]
    if changed:
        notes.append(f"grading again {len(changed)} notebook(s) changed since they were graded: {', '.join(changed[:5])}"
                     + (" ..." if len(changed) > 5 else ""))
    gone = [r["notebook"] for r in rows if r["notebook"] not in current]
    if gone:
        notes.append(f"dropping {len(gone)} row(s) of notebooks no longer handed in: {', '.join(gone[:5])}"
                     + (" ..." if len(gone) > 5 else ""))
    return kept, notes


def _write_results(out: Path, rows: list[dict], timeout: int, smoke: bool) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=GRADE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out, lambda tmp: Path(tmp).write_text(buffer.getvalue(), encoding="utf-8"))
    report = grade_report(rows, timeout, smoke)
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(report, encoding="utf-8"))


def _listing(items: list[str], limit: int = 10) -> str:
    return "\n".join(f"  {s}" for s in items[:limit]) + (f"\n  ... and {len(items) - limit} more" if len(items) > limit else "")


def grade_submissions(submissions: Path, out: Path = Path("grades.csv"), timeout: int = 600,
                      smoke: bool = True, exercises_dir: Path = EXERCISES_DIR, jobs: int = 1,
                      memory_mb: int = MEMORY_MB) -> list[dict]:
    """Grade every submitted notebook, `jobs` at a time; -> the rows, in submission order.

    Writes `out` (CSV) and a markdown report beside it (`grades.md`) after each notebook, and the
    executed copies in `graded/` beside it. The submitted files are never run in place nor modified.
    A rerun keeps the rows of notebooks that are unchanged since they were graded.
    """
    out = Path(out)
    if jobs < 1 or timeout < 1 or memory_mb < 0:
        raise UsageError(f"jobs and timeout must be >= 1 and memory_mb >= 0 (got {jobs}, {timeout}, {memory_mb})")
    _check_out(out)
    graded_dir = out.parent / "graded"
    subs, skipped = find_submissions(Path(submissions), exclude=graded_dir)
    print(f"found {len(subs)} notebook(s) from {len({s.student for s in subs})} student(s) in {submissions}")
    if skipped:
        print(f"skipped {len(skipped)}:\n{_listing(skipped)}")
    rows, notes = _earlier_rows(out, subs)
    for note in notes:
        print(note)
    if memory_mb and not sys.platform.startswith("linux"):
        print(f"note: the {memory_mb} MB memory cap per kernel works on Linux only; not applied here")

    def record(sub: Submission | None = None, row: dict | None = None) -> list[dict]:
        if sub is not None:
            rows[sub.name] = row
        table = [rows[s.name] for s in subs if s.name in rows]
        _write_results(out, table, timeout, smoke)
        return table

    record()
    try:
        failed = _grade_all([s for s in subs if s.name not in rows], jobs, record,
                            functools.partial(grade_one, graded_dir=graded_dir, timeout=timeout, smoke=smoke,
                                              exercises_dir=Path(exercises_dir), memory_mb=memory_mb))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(record())} of {len(subs)} notebook(s) graded and kept in {out}; "
              "run the same command again to grade the rest", file=sys.stderr)
        raise
    table = record()
    print(f"graded {len(table)} notebook(s): {out}, {out.with_suffix('.md')}, executed copies in {graded_dir}/")
    if failed:
        raise GradingError(f"could not grade {len(failed)} notebook(s), not the students' doing "
                           f"(run the same command again to retry them): {'; '.join(failed[:3])}")
    return table


def _grade_all(todo: list[Submission], jobs: int, record, grade) -> list[str]:
    """Grade `todo` and record each row as it comes; -> the grader's own failures ("notebook: why")."""
    from tqdm.auto import tqdm

    failed = []
    with tempfile.TemporaryDirectory(prefix="slm-grade-", ignore_cleanup_errors=True) as scratch:
        grade = functools.partial(grade, scratch=Path(scratch))
        for sub in [s for s in todo if read_submission(s.path)[1]]:  # no code to run: graded here, at once
            record(sub, {k: v for k, v in grade(sub).items() if k != "grader_error"})
            todo.remove(sub)
        if not todo:
            return failed
        with _worker_pool(min(jobs, len(todo))) as pool, tqdm(total=len(todo), desc="grading", unit="notebook") as bar:
            futures = {pool.submit(grade, sub): sub for sub in todo}
            for future in as_completed(futures):
                sub = futures[future]
                try:
                    row = future.result()
                except BrokenProcessPool:  # also when a script calls this without `if __name__ == "__main__":`
                    raise GradingError(f"a grading process died (out of memory?); the notebooks graded so far "
                                       "are kept: run the same command again for the rest") from None
                except Exception as e:  # a fault of the grader, not of the notebook: report it, grade the rest
                    row = {"grader_error": _first_line(e)}
                grader_error = row.pop("grader_error", "")
                if grader_error:
                    failed.append(f"{sub.name}: {grader_error}")
                else:
                    record(sub, row)
                bar.update()
                bar.set_postfix_str(f"{sub.name}: {row.get('passed', '?')}/{row.get('total', '?')}")
    return failed


@contextmanager
def _worker_pool(workers: int):
    """Worker processes for grading; on Ctrl-C the workers and their kernels are killed at once."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker)
    try:
        yield pool
    except KeyboardInterrupt:
        import psutil  # (ipykernel's own dependency)

        processes = list(getattr(pool, "_processes", {}).values())  # no public way before Python 3.14
        kernels = []
        for worker in processes:
            with suppress(psutil.Error):
                kernels += psutil.Process(worker.pid).children(recursive=True)
        for process in [*processes, *kernels]:  # at once: the scratch folders go next
            with suppress(psutil.Error, OSError):
                process.kill()
        psutil.wait_procs(kernels, timeout=5)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
