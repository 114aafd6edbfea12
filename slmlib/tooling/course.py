"""Run the lesson notebooks end to end with papermill (what `make course` does)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from .. import KERNEL_NAME, paths
from ..paths import MODELS_DIR, OUTPUTS_DIR, atomic_write
from ..progress import BATCH


def notebooks_dir() -> Path:
    """The lessons: notebooks/ in the project folder (paths.root(), read now)."""
    return paths.root() / "notebooks"


NOTEBOOKS_DIR = notebooks_dir()  # as it was at import: tests name a lesson's file by it


def lesson_paths(folder: Path | None = None, only: Sequence[str] | None = None) -> list[Path]:
    lessons = sorted((Path(folder) if folder is not None else notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))
    if only:
        lessons = [p for p in lessons if any(o in p.name for o in only)]
    return lessons


def kernel_name() -> str:
    """The venv's own kernel when it is registered (make does that), else the default one."""
    from jupyter_client.kernelspec import find_kernel_specs

    return KERNEL_NAME if KERNEL_NAME in find_kernel_specs() else "python3"


# ipykernel logs this at every start (ipykernel/kernelapp.py, init_sockets) to the stderr it inherits,
# so it is the kernel process, not papermill's logging, that prints it: eleven times in `make course`.
# The kernel listens on localhost and the user cannot act on it; every other line passes through.
KERNEL_NOISE = b"Kernel is running over TCP without encryption"


def _forward_stderr(fd: int) -> None:
    with open(fd, "rb") as lines:
        for line in lines:
            if KERNEL_NOISE not in line:
                sys.stderr.write(line.decode(errors="replace"))
                sys.stderr.flush()


def quiet_kernel_manager():
    """jupyter_client's AsyncKernelManager, with the kernel's stderr read through a pipe that
    drops KERNEL_NOISE (a class made here, so importing this module does not import jupyter_client)."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if kw.get("stderr") is not None:  # someone else chose where it goes
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            read, write = os.pipe()
            try:
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": write})
            except BaseException:
                os.close(read)
                raise
            finally:
                os.close(write)  # the kernel holds its own copy; the pipe ends when the kernel does
            threading.Thread(target=_forward_stderr, args=(read,), daemon=True).start()

    return QuietKernelManager


def run_notebook(path: Path, out_path: Path, parameters: dict, timeout: int | None = None,
                 cwd: Path | None = None) -> dict:
    """Execute one notebook; returns {notebook, seconds, status, error}.

    papermill writes its copy as it goes; it writes to a temp file here and the copy appears
    under its name only when the run ends, so a Ctrl-C never leaves a half-run notebook that
    looks finished. A failed run is kept too, with the traceback in its failing cell.
    """
    import papermill as pm

    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.stem}.running.ipynb")
    start = time.perf_counter()
    row = {"notebook": path.name, "status": "ok", "error": ""}
    try:
        pm.execute_notebook(str(path), str(partial), parameters=parameters, kernel_name=kernel_name(),
                            cwd=str(cwd or path.parent), progress_bar=False, execution_timeout=timeout,
                            kernel_manager_class=quiet_kernel_manager())
    except pm.PapermillExecutionError as e:
        row.update(status="failed", error=f"cell {e.exec_count}: {e.ename}: {e.evalue}")
    except Exception as e:  # kernel died, bad parameters, unreadable notebook...
        row.update(status="failed", error=f"{type(e).__name__}: {e}")
    except KeyboardInterrupt:
        partial.unlink(missing_ok=True)
        raise
    if partial.exists():
        partial.replace(out_path)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


STATE_FILE = "course_state.json"
SMOKE_DIR = OUTPUTS_DIR / "smoke"


def run_folders(smoke: bool) -> tuple[Path, Path]:
    """(outputs, models) a course run writes to. A smoke run keeps to outputs/smoke/ (its models in
    outputs/smoke/models/), so it never replaces the real run's results, plots, executed copies or models."""
    return (SMOKE_DIR, SMOKE_DIR / "models") if smoke else (OUTPUTS_DIR, MODELS_DIR)


@contextmanager
def kernel_folders(outputs: Path, models: Path, threads: int | None = None) -> Iterator[None]:
    """The kernels papermill starts inherit this process's environment: point their slmlib.paths there
    (and, given threads, cap torch's threads: one core is busy with the runs trained beside the lessons)."""
    with environment({"SLM_OUTPUTS_DIR": str(outputs), "SLM_MODELS_DIR": str(models), BATCH: "1",
                      **({"OMP_NUM_THREADS": str(threads)} if threads else {})}):
        yield


@contextmanager
def environment(variables: dict) -> Iterator[None]:
    """Set these environment variables (which processes started inside inherit), then put back what was."""
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (kill, a scheduler's timeout) stops the course as Ctrl-C does: the running lesson's kernel is
    shut down and the worker beside it stopped, instead of both running on without their parent."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def runs_beside_the_lessons() -> list:
    """The small runs lessons 04 and 08 need (the remedies, then the sweep), in the order they need them."""
    from ..experiments import remedy_plan
    from ..sweep import sweep_configs

    configs, seen = [], set()
    for cfg in [c for _, c in remedy_plan()] + sweep_configs():
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            configs.append(cfg)
    return configs


def _train_each(configs: list, runs_dir: str) -> None:
    from ..sweep import train_many
    from ..workers import end_with_parent

    end_with_parent()

    train_many(configs, jobs=1, progress=False, runs_dir=runs_dir, threads=1)


@contextmanager
def training_beside(configs: list, runs_dir: Path) -> Iterator:
    """Train `configs` in one worker process (one thread) while the lessons run on the other core.

    Lessons 03-07 train one model at a time and leave a core idle; this worker fills it with the
    runs lessons 04 and 08 will ask for. Each run is kept in runs_dir the moment it finishes, under
    a lock, so a lesson that gets there first waits for the run in flight and loads it, never
    training it twice. Stopped when the course stops; finished runs are kept.
    """
    from multiprocessing import get_context

    worker = get_context("spawn").Process(target=_train_each, args=(configs, str(runs_dir)), daemon=True)
    worker.start()
    try:
        yield worker
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join(10)


def _fingerprint(path: Path, parameters: dict) -> str:
    """What a lesson's result depends on: its source, the library's code, its parameters."""
    h = hashlib.sha256(path.read_bytes())
    for source in sorted((paths.root() / "slmlib").rglob("*.py")):
        h.update(source.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    return h.hexdigest()


def _models_still_there(path: Path, smoke: bool, models_dir: Path) -> bool:
    """A lesson that trains a level is only skipped while the model it saved is still there."""
    from ..checkpoint import model_path
    from ..config import LEVELS
    from ..lesson import level_config

    level = next((name for name in LEVELS if path.stem.endswith(f"_{name}")), None)
    return level is None or model_path(level_config(level, smoke=smoke), models_dir).is_file()


def _read_state(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(out_dir: Path, state: dict) -> None:
    atomic_write(out_dir / STATE_FILE, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2)))


def _run_lessons(lessons: list[Path], smoke: bool, out_dir: Path, outputs_dir: Path, models_dir: Path,
                 state: dict, worker=None) -> list[dict]:
    """Run the lessons in order, skipping those that already finished; stop at the first failure."""
    rows = []
    chain_intact = True  # a lesson is only skipped if every lesson before it was too (they build on each other)
    for i, path in enumerate(lessons, 1):
        params = {"smoke": smoke}
        key = _fingerprint(path, params)
        if (chain_intact and state.get(path.name) == key and (out_dir / path.name).is_file()
                and _models_still_there(path, smoke, models_dir)):
            print(f"[{i}/{len(lessons)}] {path.name}: skipped, it already ran to the end from the same "
                  "notebook, code and settings (`python -m slmlib course --fresh` reruns everything)", flush=True)
            rows.append({"notebook": path.name, "status": "ok", "error": "", "seconds": 0.0, "skipped": True})
            continue
        chain_intact = False
        print(f"[{i}/{len(lessons)}] {path.name} ...", flush=True)
        # One torch thread while the worker beside fills the other core (lesson 00 still checks the
        # machine as a student's kernel sees it).
        threads = 1 if worker is not None and worker.is_alive() and not path.name.startswith("00") else None
        with kernel_folders(outputs_dir, models_dir, threads):
            row = run_notebook(path, out_dir / path.name, params)
        rows.append(row)
        state[path.name] = key if row["status"] == "ok" else None
        _write_state(out_dir, state)
        print(f"      {row['status']} in {row['seconds']:.1f} s", flush=True)
        if row["status"] != "ok":
            print(f"\nSTOPPED: {path.name} failed at {row['error']}\n"
                  f"Open {Path(out_dir) / path.name} to see the failing cell and its traceback.")
            break
    return rows


def run_course(smoke: bool = False, only: Sequence[str] | None = None,
               out_dir: Path | None = None, fresh: bool = False) -> bool:
    """Run the lessons in order, stop at the first failure, print a summary. True if all passed.

    Everything the lessons write goes to run_folders(smoke): outputs/ and models/, or for a smoke
    run outputs/smoke/ alone; the executed copies to out_dir (default: executed/ in that folder).

    After an interruption, a rerun skips the lessons that already finished from the same
    notebook, library code and parameters (and says so); fresh=True reruns them all.
    """
    from ..experiments import LADDER_COLUMNS
    from ..tables import format_table

    lessons = lesson_paths(only=only)
    if not lessons:
        print(f"no lesson notebooks found in {notebooks_dir()}" + (f" matching {only}" if only else ""))
        return False
    outputs_dir, models_dir = run_folders(smoke)
    out_dir = Path(out_dir) if out_dir is not None else outputs_dir / "executed"
    mode = "smoke (tiny settings)" if smoke else "full settings"
    print(f"Running {len(lessons)} lessons with papermill, {mode}, kernel {kernel_name()!r}.")
    print(f"Executed copies go to {out_dir}/. Models are retrained by lessons 03-07, then loaded by the rest.")
    print(f"Results and plots go to {outputs_dir}/, models to {models_dir}/"
          + (" (a smoke run touches nothing outside it)" if smoke else "") + ".")
    if not (smoke or only):
        print(f"Beside the lessons, one worker trains the small runs of lessons 04 and 08 on the other core "
              f"({outputs_dir / 'runs'}/); the lessons load them.")
    print()
    start, started = time.perf_counter(), time.time()
    out_dir = Path(out_dir)
    state = {} if fresh else _read_state(out_dir)
    # A full run of every lesson trains lesson 04's and 08's small runs beside the lessons.
    beside = training_beside(runs_beside_the_lessons(), outputs_dir / "runs") if not (smoke or only) else nullcontext()
    with _sigterm_as_ctrl_c(), beside as worker:
        rows = _run_lessons(lessons, smoke, out_dir, outputs_dir, models_dir, state, worker)
    total = round(time.perf_counter() - start, 1)
    print("\n" + format_table(rows, ["notebook", "seconds", "status"]))
    print(f"\nTotal: {total:.0f} s ({total / 60:.1f} min)")
    results = outputs_dir / "ladder_results.json"
    if results.is_file() and results.stat().st_mtime >= started:  # written by this run, not left from another
        print(f"\nLadder results ({results}):")
        print(format_table(json.loads(results.read_text())["levels"], LADDER_COLUMNS))
    if not smoke and not only:
        report_lesson_check()
    return all(r["status"] == "ok" for r in rows) and len(rows) == len(lessons)


def report_lesson_check(out_dir: Path | None = None) -> list[dict]:
    """Print whether the lessons' promises held in the run that just finished; save it in out_dir (outputs/)."""
    from .lesson_check import check_lesson, format_checks

    checks = check_lesson()
    report = format_checks(checks)
    print("\nDoes the lesson hold on this machine? (from the models this run trained)\n" + report)
    atomic_write(paths.outputs_dir(out_dir) / "lesson_check.md",
                 lambda tmp: Path(tmp).write_text("# Does the lesson hold?\n\n" + report + "\n"))
    return checks


# First line of a lesson cell whose recorded output nbval compares (`make test`); every other lesson cell is
# committed without outputs. Not exercises.TASK_CHECK_MARK, which starts an exercise's check cell.
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"


def is_nbval_checked(cell) -> bool:
    return cell.cell_type == "code" and cell.source.startswith(NBVAL_MARK)


def strip_notebook(nb, executed=None):
    """Clear outputs, except cells nbval checks (taken from `executed`, a run of the same notebook)."""
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if is_nbval_checked(cell) and executed is not None:
            ran = next(c for c in executed.cells if c.cell_type == "code" and c.source == cell.source)
            cell.outputs = [o for o in ran.outputs if o.get("name") != "stderr"]
            count += 1
            cell.execution_count = count  # nbval refuses outputs of a cell that never ran
        elif not (is_nbval_checked(cell) and executed is None):
            cell.outputs, cell.execution_count = [], None
    return nb


def refresh_notebooks(paths: Sequence[Path] | None = None, record: bool = True) -> None:
    """Maintainers: strip outputs from lessons, re-recording the nbval-checked ones (smoke run)."""
    import tempfile

    import nbformat

    for path in paths or lesson_paths():
        nb = nbformat.read(path, as_version=4)
        executed = None
        if record and any(is_nbval_checked(c) for c in nb.cells):
            with tempfile.TemporaryDirectory() as tmp:
                row = run_notebook(path, Path(tmp) / path.name, {"smoke": True})
                if row["status"] != "ok":
                    raise RuntimeError(f"{path.name}: {row['error']}")
                executed = nbformat.read(Path(tmp) / path.name, as_version=4)
        nbformat.write(strip_notebook(nb, executed), path)
        print(f"{'refreshed' if executed else 'stripped'} {path}")
