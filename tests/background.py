"""Work that tests/conftest.py runs in background processes while the session's other tests run.

Here, not in conftest.py, so that a spawned worker process can import it by name.
"""
import contextlib
import io
import os


def set_env(env: dict, nice: int = 0) -> None:
    """A worker's start: its environment, and its priority (the kernels it starts inherit both)."""
    os.environ.update(env)
    if nice and hasattr(os, "nice"):
        os.nice(nice)


def train_level(name: str):
    """One level trained at its default settings, as its lesson does, and its recital test:
    (history without the model and data, recital, the data's entropy floors)."""
    from slmlib.config import get_level
    from slmlib.data import load_data
    from slmlib.tooling.lesson_check import level_recital
    from slmlib.train import train

    cfg = get_level(name)
    data = load_data(cfg)
    history = train(cfg, data=data, save=False, progress=False, device="cpu")
    recital = level_recital(name, history.model, data.vocab, data)
    history.model = history.data = None  # the checks read the records; the weights need not cross processes
    return history, recital, data.floor


def run_notebook(path, out_path, parameters: dict, env: dict | None = None, **kwargs) -> dict:
    """slmlib's run_notebook with these environment variables for its kernel (SLM_MODELS_DIR, ...), as
    monkeypatch.setenv gives a test's own kernel; the worker's own environment is put back afterwards."""
    from slmlib.tooling.course import environment, run_notebook

    with environment(env or {}):
        return run_notebook(path, out_path, parameters, **kwargs)


def quick_benchmark(out_dir) -> dict:
    """`slmlib bench --quick` into out_dir, its report and progress bar kept out of the test's output."""
    from slmlib.tooling.bench import run_benchmarks

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run_benchmarks(quick=True, out_dir=out_dir)
