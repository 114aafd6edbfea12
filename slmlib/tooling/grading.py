"""Batch grading of the exercise notebooks students hand in.

Grading trusts the reference, not the submission:
- Which checks exist, and what they say, comes from the instructor's `exercises/`, read once when the
  batch starts and kept in the grader's memory. A submission only chooses which exercise it is (its
  metadata or file name, and only among those exercises); a notebook that is none of them is reported,
  not scored. Its own `# CHECK` cells never run: the reference check cells run in their place (in the
  same order), and a missing one runs at the end.
- A check's outcome is read by the grader from the kernel's reply, not from anything in the notebook.
  Before each check the grader removes the input and AST transformers, event callbacks, custom
  exception handlers and method overrides that the notebook's own code installed, and refuses to run
  the check (failed) if the notebook replaced the shell's, the kernel's, a builtin's or a library
  module's functions. Code running in the same process can still forge what a check computes (a
  notebook could rebind names the check uses); the executed copy in graded/ keeps the evidence.
- Each notebook runs in a process of its own: one that dies is recorded against its notebook and
  the batch goes on. Its kernel runs in a bubblewrap sandbox where one works (see sandbox.py);
  elsewhere the grader says so at the start and runs it as you, with an address-space cap only.
- A rerun reuses a row only if the notebook, its reference exercise, the grader's settings and the
  course version are unchanged, the row is intact and it was not a grader-side failure.
The reports it writes from the graded rows (CSV, class report, feedback pages) are grade_report.py's.
"""
from __future__ import annotations

import asyncio
import copy
import csv
import functools
import hashlib
import json
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import nbformat

from .. import __version__
from ..errors import CourseError, UsageError
from ..exercises import ANSI, EXERCISES_DIR, SOLUTIONS_DIR, is_check_cell
from ..paths import ROOT
from ..workers import end_with_parent
from .grade_report import (GRADE_COLUMNS, HTML_FIRST, STUDENTS_FIRST, escape, is_ours, not_run, report_paths,
                           write_results)

# "checks" (added in issue 25): each check's outcome and the hint it printed, as JSON; row_check stays last.
# Address space per grading kernel. Measured: the solutions' kernels peak at 1.35-1.6 GB (VmPeak) in
# smoke mode, most of it reserved but never touched; 4 GB leaves room and stops a runaway cell.
MEMORY_MB = 4096
GRADER_KEY = "slm_grader"  # metadata of the check cells the grader put in (stripped from the student's cells)
SLACK_S = 180  # a worker may take this long beyond --timeout (copying, starting the kernel) before it is killed


class GradingError(CourseError):
    """A batch that could not grade every notebook (the rows it did grade are kept)."""


class OutputExistsError(CourseError):
    """--out would overwrite a file the grader did not write."""


# ---------------------------------------------------------------- the reference

def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


@dataclass(frozen=True)
class Reference:
    """One exercise as the instructor's exercises/ has it: its check cells, the file's hash, each task's title."""
    name: str
    checks: tuple[str, ...]
    sha256: str
    tasks: tuple[str, ...] = ()  # one title per check ("Task 1: text to tokens")


def read_references(exercises_dir: Path = EXERCISES_DIR) -> dict[str, Reference]:
    """Every exercise in exercises_dir, read now (later changes to the folder change nothing)."""
    refs = {}
    for path in sorted(Path(exercises_dir).glob("*.ipynb")):
        data = path.read_bytes()
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        except Exception as e:
            raise UsageError(f"reference exercise {path} cannot be read ({_first_line(e)}); "
                             "run `python -m slmlib exercises build`") from None
        checks = tuple(c.source for c in nb.cells if is_check_cell(c))
        refs[path.stem] = Reference(path.stem, checks, hashlib.sha256(data).hexdigest()[:16], task_titles(nb))
    if not refs:
        raise UsageError(f"no exercises in {exercises_dir}: run `python -m slmlib exercises build`")
    return refs


def task_titles(nb) -> tuple[str, ...]:
    """The title of the task each check cell checks: the last `## Task ...` heading above it."""
    titles, heading = [], ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("## Task")]
            heading = found[-1] if found else heading
        elif is_check_cell(cell):
            titles.append(heading or f"Task {len(titles) + 1}")
            heading = ""
    return tuple(titles)


def exercise_of(nb, stem: str, refs: dict[str, Reference]) -> str | None:
    """Which exercise a submission is: its metadata's name if that is one of ours, else its file name."""
    meta = nb.metadata.get("slm_course", {}) if nb is not None else {}
    name = meta.get("exercise") if isinstance(meta, dict) else None
    if isinstance(name, str) and name in refs:
        return name
    return stem if stem in refs else None


def with_reference_checks(nb, ref: Reference) -> tuple:
    """(a copy of nb whose check cells are the reference's, how many of them the student had changed)."""
    nb = copy.deepcopy(nb)
    cells, k, changed = [], 0, 0
    for cell in nb.cells:
        cell.metadata.pop(GRADER_KEY, None)
        if not is_check_cell(cell):
            cells.append(cell)
        elif k < len(ref.checks):  # an extra check cell is dropped
            changed += _normalised(cell.source) != _normalised(ref.checks[k])
            cells.append(_check_cell(ref, k))
            k += 1
    cells += [_check_cell(ref, j) for j in range(k, len(ref.checks))]
    nb.cells = cells
    return nb, changed + len(ref.checks) - k


def _check_cell(ref: Reference, k: int):
    return nbformat.v4.new_code_cell(ref.checks[k], metadata={GRADER_KEY: {"check": k}})


@functools.lru_cache(maxsize=1)
def course_version() -> str:
    """The package version plus a hash of its code: grades from another version are graded again."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "slmlib").rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:10]}"


# ---------------------------------------------------------------- finding submissions

@dataclass(frozen=True)
class Submission:
    student: str
    path: Path  # the notebook handed in
    copy: Path  # what its working folder holds: the student's folder, or the notebook alone
    name: str  # the notebook's path in the submissions folder: the key of its row
    sha256: str  # of the notebook: a resubmitted notebook is graded again
    graded: str = ""  # where its executed copy goes, relative to graded/


def _submission(student: str, path: Path, copy: Path, top: Path) -> Submission:
    try:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:  # graded as an unreadable notebook, and again on every rerun
        sha = "unreadable"
    name = path.relative_to(top).as_posix()
    return Submission(student, path, copy, name, sha, name if copy.is_dir() else f"{student}/{path.name}")


def find_submissions(target: Path, exclude: Path | None = None) -> tuple[list[Submission], list[str]]:
    """(submissions, skipped): `alice.ipynb` is one student; so is a folder `alice/`, notebooks at any depth.

    target may also be one notebook. Skipped: hidden files and folders (.ipynb_checkpoints), files that
    are not notebooks, student folders without a notebook, and `exclude` (an earlier grading's copies).
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
            before = len(found)
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
            if len(found) == before:
                skipped.append(f"{entry.name}/ (student folder without a notebook: nothing graded)")
    if not found:
        raise UsageError(f"no notebooks in {target}: expected alice.ipynb, or alice/ex01_tokens.ipynb, ...")
    return _apart(found), skipped


def _apart(subs: list[Submission]) -> list[Submission]:
    """Give `dave.ipynb` its own executed copy when a folder `dave/` holds a `dave.ipynb` too."""
    taken = {s.graded for s in subs if s.copy.is_dir()}
    return [s if s.copy.is_dir() or s.graded not in taken else
            Submission(s.student, s.path, s.copy, s.name, s.sha256, s.name) for s in subs]


def same_student_notes(subs: list[Submission]) -> list[str]:
    """A student who handed in both `dave.ipynb` and a folder `dave/`: said, since they may be two people."""
    notes = []
    for student in dict.fromkeys(s.student for s in subs):
        mine = [s for s in subs if s.student == student]
        if any(s.copy.is_dir() for s in mine) and any(not s.copy.is_dir() for s in mine):
            notes.append(f"student {escape(student)} handed in both {escape(student)}.ipynb and a folder "
                         f"{escape(student)}/: graded as one student (rename one if they are two people)")
    return notes


# ---------------------------------------------------------------- running one notebook

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


# Run by the grader, through a user expression (which IPython evaluates without input transformers),
# before each check. NOTEBOOK_FILES: where code the notebook wrote lives (its cells, its own files).
RESET = r'''
import builtins, inspect, sys, tempfile, types
ip = sys.modules["IPython"].get_ipython()
mine = NOTEBOOK_FILES + (tempfile.gettempdir().rstrip("/") + "/ipykernel_",)

def student(f, deep=True):
    try:
        for g in (f, getattr(f, "__func__", None), getattr(f, "func", None), getattr(f, "fget", None)):
            code = None if isinstance(g, type) else getattr(g, "__code__", None)
            if isinstance(code, types.CodeType) and code.co_filename.startswith(mine):
                return True
        if deep and not inspect.isroutine(f):
            cls = f if isinstance(f, type) else type(f)
            return any(student(v, False) for c in cls.__mro__[:-1] for v in list(vars(c).values()))
    except Exception:  # an object that will not say: not the notebook's, as far as the grader can tell
        pass
    return False

tm = ip.input_transformer_manager
for hooks in (tm.cleanup_transforms, tm.line_transforms, tm.token_transformers, ip.input_transformers_post,
              ip.ast_transformers, *ip.events.callbacks.values()):
    hooks[:] = [h for h in hooks if not student(h)]
ip.set_custom_exc((), None)
if student(sys.excepthook):
    sys.excepthook = sys.__excepthook__
objects = [ip, ip.kernel, ip.displayhook, ip.display_pub, tm, ip.compile, ip.kernel.session]
for obj in objects:
    for name, value in list(vars(obj).items()):
        if callable(value) and student(value):
            delattr(obj, name)
replaced = {f"{c.__name__}.{n}" for obj in objects for c in type(obj).__mro__ for n, v in list(vars(c).items())
            if student(v, False)}
replaced |= {f"builtins.{n}" for n, v in list(vars(builtins).items()) if student(v)}
for mname, module in list(sys.modules.items()):
    where = getattr(module, "__file__", None) or ""
    if mname == "__main__" or not where or where.startswith(mine) or vars(module) is ip.user_ns:
        continue
    replaced |= {f"{mname}.{n}" for n, v in list(vars(module).items()) if student(v, False)}
if "torch" in sys.modules:
    replaced |= {f"torch.Tensor.{n}" for n, v in list(vars(sys.modules["torch"].Tensor).items()) if student(v, False)}
if replaced:
    raise RuntimeError(f"the notebook replaced {', '.join(sorted(replaced)[:4])}: the checks run only with the real ones")
result = NONCE
'''


def _reset_expression(notebook_files: tuple[str, ...], nonce: str) -> str:
    source = RESET.replace("NOTEBOOK_FILES", repr(notebook_files)).replace("NONCE", repr(nonce))
    # No name the notebook could rebind: builtins are reached from a literal.
    gadget = ("[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_ModuleLock'][0]"
              ".__init__.__globals__['sys'].modules['builtins']")
    return f"[b.exec({source!r}, d) or d.get('result') for b in [{gadget}] for d in [{{}}]][0]"


def _grading_client():
    from jupyter_core.utils import ensure_async
    from nbclient import NotebookClient

    class GradingClient(NotebookClient):
        """Runs the notebook; before each check cell the grader put in, resets the notebook's hooks;
        records each check's outcome itself (`outcomes[k]`, `reasons[k]`)."""

        def __init__(self, nb, notebook_files: tuple[str, ...], **kw):
            self.replies = {}
            super().__init__(nb, on_cell_executed=self._executed, **kw)
            self.notebook_files, self.outcomes, self.reasons = notebook_files, {}, {}

        def _executed(self, cell, cell_index, execute_reply):
            self.replies[cell_index] = execute_reply.get("content", {}).get("status")

        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            k = cell.metadata.get(GRADER_KEY, {}).get("check")
            if k is None:
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            self.outcomes[k] = False
            why = await self._reset(cell)
            if why:
                self.reasons[k] = why
                cell.outputs = [nbformat.v4.new_output("stream", name="stderr",
                                                       text=f"grader: this check did not run: {why}\n")]
                return cell
            self.replies.pop(cell_index, None)
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            self.outcomes[k] = (self.replies.get(cell_index) == "ok"
                                and not any(o.output_type == "error" for o in cell.outputs))
            return cell

        async def _reset(self, cell) -> str:
            nonce = secrets.token_hex(8)
            msg_id = await ensure_async(self.kc.execute(
                "", silent=True, store_history=False,
                user_expressions={"reset": _reset_expression(self.notebook_files, nonce)}))
            reply = await self.async_wait_for_reply(msg_id, cell) or {}
            value = reply.get("content", {}).get("user_expressions", {}).get("reset", {})
            if value.get("status") == "ok" and value.get("data", {}).get("text/plain") == repr(nonce):
                return ""
            if value.get("status") == "error":
                return ANSI.sub("", f"{value.get('evalue', '')}")[:200] or value.get("ename", "error")
            return "the kernel did not run the grader's reset (its input or hooks were tampered with)"

    return GradingClient


@dataclass(frozen=True)
class Run:
    """How to run one notebook: the grader's settings and, where it works, the sandbox."""
    timeout: int
    smoke: bool = True
    memory_mb: int = 0
    bwrap: str = ""  # a working bwrap, or "" to run the kernel unsandboxed
    hidden: tuple[Path, ...] = ()  # paths the sandbox hides (submissions, grades, solutions)

    @property
    def settings(self) -> str:
        return (f"timeout={self.timeout};memory_mb={self.memory_mb};smoke={int(self.smoke)};"
                f"sandbox={'bwrap' if self.bwrap else 'none'}")


def run_submission(path: Path, graded_path: Path, ref: Reference, run: Run, env: dict, work: Path,
                   kernel_log: Path | None = None) -> tuple:
    """Execute one notebook with the reference's checks, errors allowed, in a kernel of its own.

    -> (executed nb or None, [[status, why] per check], notes, the student's problem or "",
        the grader's problem or "").
    """
    import psutil
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from .course import kernel_name
    from .sandbox import MemoryWatch, SandboxedKernelManager, kill_tree, sandbox_args

    kernel = kernel_name()
    try:
        nb, changed = with_reference_checks(nbformat.read(str(path), as_version=4), ref)
        built = work.with_suffix(".ipynb")  # outside the working copy
        nbformat.write(nb, built)
        nb = load_notebook_node(str(built))  # nbformat.read, plus the metadata papermill expects
        nb = parameterize_notebook(nb, {"smoke": run.smoke}, kernel_name=kernel, language="python")
    except Exception as e:  # a notebook papermill cannot parameterise
        return None, [], [], f"unreadable notebook ({_first_line(e)})", ""
    notes = [f"{changed} check cell(s) edited or deleted (the reference checks ran in their place)"] if changed else []
    on_sigterm = signal.getsignal(signal.SIGTERM)  # nbclient replaces it while the notebook runs
    running = {"cell": None, "started": None}  # the clock starts at the first cell: a slow kernel start costs nothing

    def time_left(cell) -> int:
        running["started"] = running["started"] or time.monotonic()
        return max(1, math.ceil(running["started"] + run.timeout - time.monotonic()))

    def on_cell_start(cell, cell_index):
        running["cell"] = cell_index

    def on_notebook_start(notebook):
        kernel_pid()  # the sandbox's process, taken while it runs
        if callable(on_sigterm):  # the worker's: nbclient's own would stop the kernel and blame the notebook
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm, signal.SIGTERM, None)
            except (RuntimeError, ValueError, NotImplementedError):  # not the main thread, not POSIX
                pass

    ipc = Path(tempfile.mkdtemp(prefix="k", dir=work.parent)) if run.bwrap else None
    if run.bwrap:
        km = SandboxedKernelManager(kernel_name=kernel, transport="ipc", ip=str(ipc / "k"),
                                    connection_file=str(ipc / "kernel.json"))
        writable = [Path(env["SLM_OUTPUTS_DIR"]), Path(env["SLM_MODELS_DIR"]), ipc]
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True)
        km.prefix = sandbox_args(run.bwrap, work, writable, list(run.hidden), env, cwd=path.parent)
        env = {"PATH": env["PATH"]}
    else:
        from jupyter_client import AsyncKernelManager

        km = AsyncKernelManager(kernel_name=kernel)
    client = _grading_client()(nb, (str(work) + os.sep, "<ipython-input-", "<string>"), km=km, kernel_name=kernel,
                               allow_errors=True, shutdown_kernel="immediate", timeout_func=time_left,
                               on_cell_start=on_cell_start, on_notebook_start=on_notebook_start,
                               resources={"metadata": {"path": str(path.parent)}})
    launch = {"preexec_fn": _memory_cap(run.memory_mb)} if run.memory_mb and sys.platform.startswith("linux") else {}
    error = grader_error = ""
    started = []  # the kernel's process (the sandbox's outer bwrap), taken while it runs

    def kernel_pid():
        process = getattr(getattr(km, "provisioner", None), "process", None)
        pid = getattr(process, "pid", None)
        if pid and not started:
            try:
                started.append(psutil.Process(pid))
            except psutil.Error:
                pass
        return pid

    with open(kernel_log or os.devnull, "wb") as log, MemoryWatch(kernel_pid, run.memory_mb) as watch:
        try:
            client.execute(env=env, stdout=log, stderr=log, **launch)
        except CellTimeoutError:
            error = f"timed out: cell {running['cell']} still running after {run.timeout} s"
        except DeadKernelError:
            if watch.killed_at_mb:
                error = (f"stopped in cell {running['cell']}: its processes together used {watch.killed_at_mb} MB "
                         f"(out of memory: each notebook may use at most {run.memory_mb} MB)")
            else:
                error = (f"the kernel died in cell {running['cell']} (the code crashed it, called os._exit, or used "
                         "more memory than the system could give)" + _last_words(kernel_log))
        except Exception as e:  # the kernel would not start, ...: not the student's doing unless a cell ran
            if running["cell"] is None:
                grader_error = f"the kernel did not start ({_first_line(e)}){_last_words(kernel_log)}"
            else:
                error = f"the kernel failed in cell {running['cell']} ({_first_line(e)})"
        finally:
            watch.stop()
            if started:  # first the whole sandbox (unsandboxed: the kernel and all it started), at once
                kill_tree(started[0])
            try:  # then the kernel manager's own shutdown: its sockets, connection file, client channels
                client._cleanup_kernel()
            except Exception:  # noqa: BLE001 - the kernel is gone either way
                pass
            if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
                signal.signal(signal.SIGTERM, on_sigterm)  # nbclient left SIGTERM at its default
    notes += [f"check {k + 1} not run: {why}" for k, why in sorted(client.reasons.items())]
    graded_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, graded_path)
    checks = check_results(nb, client.outcomes, client.reasons, len(ref.checks), error or grader_error)
    return nb, checks, notes, error, grader_error


def check_results(nb, outcomes: dict, reasons: dict, n: int, stopped: str = "") -> list[list[str]]:
    """[status, why] for each of n checks: "passed"; "failed" with the hint it printed; "not run" with why."""
    cells = {c.metadata.get(GRADER_KEY, {}).get("check"): c for c in nb.cells} if nb is not None else {}
    results = []
    for k in range(n):
        if outcomes.get(k):
            results.append(["passed", ""])
        elif k in reasons:
            results.append(["failed", f"the check did not run: {reasons[k]}"])
        elif k in outcomes:
            results.append(["failed", _failure(cells.get(k)) or (f"stopped in this check: {stopped}" if stopped
                                                                 else "the check failed without a message")])
        else:
            results.append(["not run", f"the notebook stopped before this check ({stopped})" if stopped
                            else "the notebook stopped before this check"])
    return results


def _failure(cell) -> str:
    """The error a check cell printed, on one line: the hint alone for a failed assert."""
    for o in (cell or {}).get("outputs", []):
        if o.output_type == "error":
            text = ANSI.sub("", o.get("evalue", "")).strip()
            text = text.splitlines()[0] if text else ""
            if o.ename == "NotImplementedError" and not text:
                return "NotImplementedError: not done yet (the task's `raise NotImplementedError()` is still there)"
            return (text if o.ename == "AssertionError" and text else f"{o.ename}: {text}".rstrip(": "))[:300]
    return ""


def _last_words(kernel_log: Path | None) -> str:
    """The kernel's last message before it died ("Fatal Python error: ..."), if it left one."""
    try:
        lines = [ln.strip() for ln in kernel_log.read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, AttributeError):
        return ""
    lines = [ln for ln in lines if "Kernel is running over TCP" not in ln and "--existing" not in ln
             and "To connect another client" not in ln]
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


def _files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _kernel_env(scratch: Path, student: str, smoke: bool, clean: bool, work: Path) -> dict:
    # Trained models go to a scratch folder, never to the course's models/ or outputs/. In smoke
    # mode one torch thread (unless set): on a busy CPU more threads make tiny models ~10x slower.
    slm = {"SLM_SMOKE": "1" if smoke else "0", "SLM_OUTPUTS_DIR": str(scratch / "outputs" / work.name),
           "SLM_MODELS_DIR": str(scratch / "models" / work.name)}
    # The answers are never importable: solutions/ is dropped from the import path the kernel inherits.
    hidden = SOLUTIONS_DIR.resolve()
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and not (Path(p).resolve() == hidden or hidden in Path(p).resolve().parents)]
    if clean:  # in the sandbox: nothing of the grader's environment but the import path
        path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        return {"PATH": path, "HOME": str(work), "TMPDIR": "/tmp", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1" if smoke
                else str(os.cpu_count() or 1), "PYTHONPATH": os.pathsep.join(kept), **slm}
    return {**({"OMP_NUM_THREADS": "1"} if smoke else {}), **os.environ, **slm, "PYTHONPATH": os.pathsep.join(kept)}


def grade_one(sub: Submission, ref: Reference, graded_dir: Path, scratch: Path, run: Run) -> dict:
    """Grade one submission in a fresh copy of it (the handed-in files are never run in place)."""
    start = time.perf_counter()
    graded_path = graded_dir / sub.graded
    work = Path(tempfile.mkdtemp(prefix="w", dir=scratch))
    try:
        if sub.copy.is_dir():
            shutil.copytree(sub.copy, work / sub.copy.name, ignore=shutil.ignore_patterns(".*"), symlinks=True)
            path = work / sub.copy.name / sub.path.relative_to(sub.copy)
        else:
            path = work / sub.path.name
            shutil.copy2(sub.path, path)
        before = _files_in(work)
        env = _kernel_env(scratch, sub.student, run.smoke, bool(run.bwrap), work)
        nb, checks, notes, error, grader_error = run_submission(path, graded_path, ref, run, env, work,
                                                                kernel_log=work.with_suffix(".log"))
        deleted = len(before - _files_in(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        work.with_suffix(".log").unlink(missing_ok=True)
        work.with_suffix(".ipynb").unlink(missing_ok=True)
    problems = [error, *notes, first_error(nb, run.memory_mb) if nb else "",
                f"deleted {deleted} file(s) in its working folder (a copy: the submission is intact)" if deleted else ""]
    checks = checks or not_run(len(ref.checks), error)
    return {"student": sub.student, "exercise": ref.name, "passed": sum(s == "passed" for s, _ in checks),
            "total": len(ref.checks), "seconds": round(time.perf_counter() - start, 1),
            "error": "; ".join(filter(None, problems)), "grader_error": grader_error, "checks": _json(checks)}


def _json(checks: list) -> str:
    return json.dumps(checks, ensure_ascii=False, separators=(",", ":"))


def graded_at_once(sub: Submission, refs: dict[str, Reference], graded_dir: Path) -> dict | None:
    """The row of a notebook that needs no kernel (unreadable, empty, not an exercise), else None."""
    nb, problem = read_submission(sub.path)
    exercise = exercise_of(nb, sub.path.stem, refs)
    if exercise is None:
        problem = "; ".join(filter(None, [problem, f"not one of the exercises ({', '.join(sorted(refs))}): "
                                                   "not run, not scored (name it after its exercise)"]))
        return {"student": sub.student, "exercise": "", "passed": 0, "total": 0, "seconds": 0.0, "error": problem,
                "checks": "[]"}
    if not problem:
        return None
    ref = refs[exercise]
    if nb is not None:
        problem += f"; {len(ref.checks)} check cell(s) edited or deleted (count as failed)"
        (graded_dir / sub.graded).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, graded_dir / sub.graded)
    return {"student": sub.student, "exercise": exercise, "passed": 0, "total": len(ref.checks), "seconds": 0.0,
            "error": problem, "checks": _json(not_run(len(ref.checks), problem.split(";")[0]))}


# ---------------------------------------------------------------- the table

def _row_check(row: dict) -> str:
    text = "\x1f".join(str(row.get(c, "")) for c in GRADE_COLUMNS[:-1])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _keyed(row: dict, sub: Submission, refs: dict[str, Reference], run: Run, grader_failure: bool = False) -> dict:
    ref = refs.get(row.get("exercise") or "")
    row = {**row, "notebook": sub.name, "sha256": sub.sha256, "reference": ref.sha256 if ref else "-",
           "settings": run.settings, "course": course_version(), "grader_failure": "1" if grader_failure else ""}
    row.pop("grader_error", None)
    return {**row, "row_check": _row_check(row)}


def _check_out(out: Path, force: bool) -> None:
    """Refuse an --out that cannot be written, or would overwrite files the grader did not write."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the CSV file to write, e.g. {out / 'grades.csv'}")
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out {out}: give a .csv file name (the report is written beside it as .md)")
    paths = report_paths(out)
    folders = {"graded": out.parent / "graded", "feedback": paths["feedback"]}
    if not force:
        for path, first in ((out, "student,exercise,passed,total"), (paths["md"], "# Exercise grades"),
                            (paths["html"], HTML_FIRST), (paths["students"], STUDENTS_FIRST)):
            if path.exists() and not is_ours(path, first):
                raise OutputExistsError(f"{path} exists and is not a grade table written by `grade`: "
                                        "give another --out, or add --force to replace it")
        for what, folder in folders.items():
            if folder.exists() and not folder.is_dir():
                raise OutputExistsError(f"{folder} is a file ({'executed copies' if what == 'graded' else what} "
                                        "go there): give another --out, or add --force to replace it")
    else:
        for folder in folders.values():
            if folder.is_file():
                folder.unlink()
    for folder in (out.parent, *folders.values()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {out}: cannot make the folder {folder} ({e.strerror}); "
                             "give a CSV path in a folder you can write") from None
        if not os.access(folder, os.W_OK):
            raise UsageError(f"--out {out}: the folder {folder} is not writable; give a CSV path you can write")


def _earlier_rows(out: Path, subs: list[Submission], refs: dict[str, Reference], run: Run) -> tuple:
    """Rows of an earlier (perhaps interrupted) run of this batch that still hold: {notebook: row}, notes."""
    if not out.is_file():
        return {}, []
    try:
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return {}, [f"{out} could not be read ({_first_line(e)}): grading every notebook again"]
    current = {s.name: s.sha256 for s in subs}
    kept, why = {}, {}

    def reason(r: dict) -> str:
        if any(r.get(c) is None for c in GRADE_COLUMNS):
            return "written by an older grader"
        if r["row_check"] != _row_check(r):
            return "edited after grading"
        if r["sha256"] != current[r["notebook"]]:
            return "changed since they were graded"
        ref = refs.get(r["exercise"])
        if r["reference"] != (ref.sha256 if ref else "-"):
            return "graded against another version of the exercise"
        if r["settings"] != run.settings:
            return f"graded with other settings ({r['settings']})"
        if r["course"] != course_version():
            return "graded by another version of the course"
        if r["grader_failure"]:
            return "not graded last time (the grader's failure)"
        return ""

    for r in rows:
        if r.get("notebook") not in current:
            continue
        because = reason(r)
        if because:
            why.setdefault(because, []).append(r["notebook"])
        else:
            kept[r["notebook"]] = {**r, "passed": int(r["passed"]), "total": int(r["total"]),
                                   "seconds": float(r["seconds"])}
    notes = []
    if kept:
        notes.append(f"{out} already holds {len(kept)} of these notebook(s), unchanged since they were graded: "
                     f"skipping them (delete {out.name} to grade everything again)")
    for because, names in why.items():
        notes.append(f"grading again {len(names)} notebook(s) {because}: {', '.join(map(escape, names[:5]))}"
                     + (" ..." if len(names) > 5 else ""))
    gone = [r.get("notebook", "") for r in rows if r.get("notebook") not in current]
    if gone:
        notes.append(f"dropping {len(gone)} row(s) of notebooks no longer handed in: "
                     f"{', '.join(map(escape, gone[:5]))}" + (" ..." if len(gone) > 5 else ""))
    return kept, notes


def default_jobs(memory_mb: int = MEMORY_MB, smoke: bool = True) -> int:
    """How many notebooks to grade at once here: one per two cores, and no more kernels than free memory holds.

    Measured (issue 25): a class graded with --jobs 2 on 2 cores took 26 min 40 s, against 23 min 50 s with
    one job. A notebook keeps one core busy (its kernel: one torch thread in smoke mode), and, we think, its
    grading process (nbclient's loop, the memory watch) and each kernel's start (importing torch) take much of
    another, so two at once on two cores only took turns and paid for the switching. Hence one per two cores.
    Memory: each kernel may grow to memory_mb (the default cap when there is none), so no more jobs than the
    free memory holds at that size. In full mode a kernel uses every core (OMP_NUM_THREADS): one at a time.
    """
    import psutil

    if not smoke:
        return 1
    fits = psutil.virtual_memory().available // ((memory_mb or MEMORY_MB) * 2**20)
    return max(1, min(cores() // 2, fits))


def cores() -> int:
    """The cores this process may use (a container's or taskset's share where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _listing(items: list[str], limit: int = 10) -> str:
    return "\n".join(f"  {escape(s)}" for s in items[:limit]) + (
        f"\n  ... and {len(items) - limit} more" if len(items) > limit else "")


def grade_submissions(submissions: Path, out: Path = Path("grades.csv"), timeout: int = 600,
                      smoke: bool = True, exercises_dir: Path = EXERCISES_DIR, jobs: int | None = None,
                      memory_mb: int = MEMORY_MB, force: bool = False, sandbox: bool | None = None) -> list[dict]:
    """Grade every submitted notebook, `jobs` at a time (None: default_jobs()); -> the rows, in submission order.

    Writes `out` (CSV) and, beside it, a markdown report (`grades.md`), an HTML class report (`grades.html`),
    one row per student with a column per task (`grades_by_student.csv`) and a page per student
    (`feedback/NAME.md`), all after each notebook; and the executed copies in `graded/` beside it. The submitted files are never run in place nor modified.
    sandbox: None uses bubblewrap where it works; False never does (True: it must).
    """
    from .sandbox import probe

    out = Path(out)
    chosen = jobs is None
    jobs = default_jobs(memory_mb, smoke) if chosen else jobs
    if jobs < 1 or timeout < 1 or memory_mb < 0:
        raise UsageError(f"jobs and timeout must be >= 1 and memory_mb >= 0 (got {jobs}, {timeout}, {memory_mb})")
    _check_out(out, force)
    refs = read_references(exercises_dir)  # once: nothing a notebook does later changes the checks
    graded_dir = out.parent / "graded"
    subs, skipped = find_submissions(Path(submissions), exclude=graded_dir)
    bwrap, why_not = probe() if sandbox is not False else ("", "")
    if sandbox and not bwrap:
        raise UsageError(f"no sandbox: {why_not}")
    hidden = (Path(submissions).resolve(), out.resolve(), *(p.resolve() for p in report_paths(out).values()),
              graded_dir.resolve(), SOLUTIONS_DIR.resolve())
    run = Run(timeout, smoke, memory_mb, bwrap, hidden)
    print(f"found {len(subs)} notebook(s) from {len({s.student for s in subs})} student(s) in {submissions}")
    print(f"grading {jobs} notebook(s) at a time" + (f" (the default for {cores()} core(s): one per two cores, "
                                                     "as memory allows; --jobs to change)" if chosen else ""))
    batch = {"jobs": jobs, "cores": cores(), "started": time.monotonic()}
    if bwrap:
        print("each notebook runs in a bubblewrap sandbox: no network, only its own copy writable")
    else:
        print(f"no sandbox{f' ({why_not})' if why_not else ''}: the notebooks run as you, "
              "with your files and network in reach; grade in an account you don't mind them using")
    notes = [*skipped, *same_student_notes(subs)]
    if skipped:
        print(f"skipped {len(skipped)}:\n{_listing(skipped)}")
    for note in same_student_notes(subs):
        print(note)
    rows, earlier = _earlier_rows(out, subs, refs, run)
    for note in earlier:
        print(note)
    if memory_mb and not sys.platform.startswith("linux"):
        print(f"note: the {memory_mb} MB memory cap per kernel works on Linux only; not applied here")

    def record(sub: Submission | None = None, row: dict | None = None) -> list[dict]:
        if sub is not None:
            rows[sub.name] = row
        table = [rows[s.name] for s in subs if s.name in rows]
        write_results(out, table, run, notes, refs, batch)
        return table

    record()
    try:
        failed = _grade_all([s for s in subs if s.name not in rows], refs, jobs, record, graded_dir, run)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(record())} of {len(subs)} notebook(s) graded and kept in {out}; "
              "run the same command again to grade the rest", file=sys.stderr)
        raise
    table = record()
    paths = report_paths(out)
    print(f"graded {len(table)} notebook(s): {out}; reports {paths['md']}, {paths['html']}, {paths['students']}; "
          f"a page per student in {paths['feedback']}/; executed copies in {graded_dir}/")
    if failed:
        raise GradingError(f"could not grade {len(failed)} notebook(s), not the students' doing "
                           f"(run the same command again to retry them): {'; '.join(failed[:3])}")
    return table


def _start_worker() -> None:
    # Its own session: Ctrl-C in the terminal reaches only the main process, which stops the workers.
    if hasattr(os, "setsid"):
        os.setsid()
    signal.signal(signal.SIGTERM, _stop_worker)
    end_with_parent()  # the grader killed, even with kill -9: the worker and its sandbox go too


def _stop_worker(signum=signal.SIGTERM, frame=None) -> None:
    """SIGTERM in a worker: kill the sandbox of the notebook it runs (every process under the worker),
    then end as SIGTERM ends a process (the batch records a grader failure: graded again on a rerun)."""
    import psutil

    from .sandbox import kill_tree

    for child in psutil.Process().children():
        kill_tree(child)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker(conn, sub: Submission, ref: Reference, graded_dir: Path, scratch: Path, run: Run) -> None:
    _start_worker()
    try:
        row = grade_one(sub, ref, graded_dir, scratch, run)
    except Exception as e:  # a fault of the grader, not of the notebook
        row = {"grader_error": _first_line(e)}
    conn.send(row)
    conn.close()


def _grade_all(todo: list[Submission], refs: dict[str, Reference], jobs: int, record, graded_dir: Path,
               run: Run) -> list[str]:
    """Grade `todo`, each in a process of its own, and record each row as it comes.

    -> the grader's own failures ("notebook: why"); their rows are recorded too, and graded again on a rerun.
    """
    from ..progress import progress_bar
    from .sandbox import kill_tree

    failed = []

    def fail(sub: Submission, exercise: str, why: str) -> None:
        failed.append(f"{escape(sub.name)}: {why}")
        total = len(refs[exercise].checks) if exercise in refs else 0
        record(sub, _keyed({"student": sub.student, "exercise": exercise, "passed": 0, "total": total,
                            "seconds": 0.0, "error": f"not graded: {why}",
                            "checks": _json(not_run(total, f"not graded: {why}"))}, sub, refs, run,
                           grader_failure=True))

    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="slm-grade-", ignore_cleanup_errors=True) as scratch:
        pending = []
        for sub in todo:
            row = graded_at_once(sub, refs, graded_dir)
            if row is not None:
                record(sub, _keyed(row, sub, refs, run))
            else:
                pending.append((sub, exercise_of(read_submission(sub.path)[0], sub.path.stem, refs)))
        if not pending:
            return failed
        running = {}  # connection -> (process, submission, exercise, deadline)
        with progress_bar(total=len(pending), desc="grading", unit="notebook") as bar:
            try:
                while pending or running:
                    while pending and len(running) < jobs:
                        sub, exercise = pending.pop(0)
                        receive, send = ctx.Pipe(duplex=False)
                        process = ctx.Process(target=_worker, args=(send, sub, refs[exercise], graded_dir,
                                                                    Path(scratch), run))
                        process.start()
                        send.close()
                        running[receive] = (process, sub, exercise, time.monotonic() + run.timeout + SLACK_S)
                    for conn in wait(list(running), timeout=5):
                        process, sub, exercise, _ = running.pop(conn)
                        try:
                            row = conn.recv()
                        except (EOFError, OSError):
                            row = None
                        process.join(10)
                        if row is None:  # it died: the notebook's doing, or the system's
                            code = process.exitcode
                            fail(sub, exercise, f"the grading process died while it ran this notebook (exit code "
                                 f"{code}{': killed by signal ' + str(-code) if code and code < 0 else ''})")
                        elif row.get("grader_error"):
                            fail(sub, exercise, row["grader_error"])
                        else:
                            record(sub, _keyed(row, sub, refs, run))
                        bar.update()
                        bar.set_postfix_str(f"{escape(sub.name)}: {(row or {}).get('passed', '?')}/"
                                            f"{(row or {}).get('total', '?')}")
                    for conn, (process, sub, exercise, deadline) in list(running.items()):
                        if time.monotonic() > deadline:
                            kill_tree(process.pid)
                            process.join(10)
                            del running[conn]
                            fail(sub, exercise, f"the grading process did not finish within {run.timeout} s "
                                 f"+ {SLACK_S} s: killed")
                            bar.update()
            except BaseException:
                for process, *_ in running.values():  # at once: the scratch folders go next
                    kill_tree(process.pid)
                raise
    return failed

