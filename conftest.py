"""Test-wide setup, for pytest's unit tests and for nbval running the notebooks.

Tests must never touch the real models/ or outputs/, and notebooks run in smoke mode.
This runs before slmlib is imported anywhere: slmlib.paths reads these variables when a folder is
asked for, but a few modules (tests/test_paths.py's NOT_YET) still bind a folder at import. The
kernels that papermill and nbval start inherit these variables.
"""
import os
import signal
import tempfile
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="slm-test-"))
os.environ["SLM_MODELS_DIR"] = str(_TMP / "models")
os.environ["SLM_OUTPUTS_DIR"] = str(_TMP / "outputs")
os.environ["SLM_SMOKE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Test models are tiny: one thread each avoids two busy processes (pytest + a notebook kernel)
# fighting over 2 cores with spinning OpenMP threads, which was measured to slow runs 10x.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets a debugger warning in kernels

# Keep freed memory for the next step (slmlib/allocator.py says why: a third of a small model's training step
# was the kernel zeroing pages). train() sets it in its own process; these variables give the same thresholds,
# from their start, to every process the tests start (kernels, the background pool, `python -m slmlib`), for
# the work outside train() too (lesson 08's evaluation, generation). slmlib.allocator imports nothing heavy.
from slmlib.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD, keep_freed_blocks  # noqa: E402  (after the folders)

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD))
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(TRIM_THRESHOLD))
keep_freed_blocks()  # and this process, which started before they were set

# Ctrl-C as in a terminal. A shell starts a background job (`make test &` in a script) with SIGINT ignored, and
# every process it starts inherits that: the tests that press Ctrl-C (training, grading) then saw nothing happen.
# A Python handler here is reset to the default in each child at exec, so the kernels and commands get Ctrl-C too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_ignore_collect(collection_path, config):
    """nbval re-runs only the lessons that have cells whose outputs it compares.

    Every lesson already runs end to end in tests/test_notebooks.py (papermill, smoke mode), and
    for a lesson without checked cells nbval would only repeat that same run.
    """
    if collection_path.suffix != ".ipynb" or collection_path.parent.name != "notebooks":
        return None
    from slmlib.tooling.course import NBVAL_MARK  # here, not at the top: slmlib reads the variables set above

    return None if NBVAL_MARK in collection_path.read_text(encoding="utf-8") else True


def pytest_collection_modifyitems(config, items):
    """Note which lessons nbval runs in this session: tests/test_notebooks.py does not run them again.

    nbval executes such a lesson whole, in smoke mode (SLM_SMOKE above), and fails on an error in any cell,
    which is all that test's papermill run checks; `pytest tests` alone (no nbval) still runs every lesson.
    """
    config.nbval_lessons = {item.path.name for item in items if type(item).__name__ == "IPyNbCell"}


def pytest_collection_finish(session):
    """`pytest notebooks --nbval-lax` alone: lesson 10 scores the levels' saved models. In `make test` the
    lessons 03-07 of tests/test_notebooks.py (the lesson_runs fixture) have saved them by the time nbval gets
    there; without tests/ in the session nothing would, so the five levels are trained here, at the lessons'
    smoke settings (seconds), before the first test. (nbval's cells take no fixtures: hence a hook.)"""
    items = session.items
    lesson_10 = any(type(i).__name__ == "IPyNbCell" and i.path.name.startswith("10_") for i in items)
    if not lesson_10 or any("lesson_runs" in getattr(i, "fixturenames", ()) for i in items):
        return
    from slmlib.config import LEVELS
    from slmlib.lesson import level_config
    from slmlib.train import train

    for name in LEVELS:
        train(level_config(name, smoke=True), progress=False)
