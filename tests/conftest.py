"""Fixtures for the unit tests (the environment is set up by the root conftest.py).

The expensive ones are session-scoped and shared by the test files: each notebook of solutions/ and
exercises/ runs once per session, however many files read its run.
"""
import concurrent.futures as cf
import multiprocessing
import os

import pytest

from slmlib.config import LevelConfig

# The notebooks run two at a time in worker processes (papermill + a kernel each), one torch thread per
# kernel: on a busy 2-core machine, two torch threads per kernel make smoke training ~10x slower. They start
# with the session (below), beside the tests in this process, which use one core.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKERS = 2
# The longest solutions first, so the pool's last minutes are not one long notebook alone.
LONGEST_FIRST = ["ex10_open_experiment", "ex06_predict_the_gap", "ex08_compare_levels", "ex05_memorisation",
                 "ex03_first_model", "ex01_tokens"]


TINY = LevelConfig("ultra_tiny", 1, stories=20, n_layer=1, n_head=2, n_embd=16, max_iters=30,
                   batch_size=4, block_size=32, eval_interval=10, eval_windows=16, warmup_iters=5)


@pytest.fixture
def tiny_config() -> LevelConfig:
    """A model and run small enough for a unit test (about a second)."""
    return TINY


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """tiny_config trained once per session and saved where `python -m slmlib test` finds it:
    (config, model, vocab, checkpoint path, models dir). Shared: read it, never change it."""
    from slmlib.checkpoint import model_path
    from slmlib.data import load_data
    from slmlib.train import train

    models = tmp_path_factory.mktemp("trained-tiny") / "models"
    history = train(TINY, data=load_data(TINY), out=model_path(TINY, models), progress=False)
    return TINY, history.model, history.data.vocab, history.path, models


@pytest.fixture(scope="session")
def little_model():
    """An untrained 1-layer model with a one-sentence vocabulary: (model, vocab, config). Read it, never change it."""
    import torch

    from slmlib.model import TinyGPT
    from slmlib.tokenizer import Vocab

    vocab = Vocab.from_texts(["Once upon a time there was a cat."])
    torch.manual_seed(0)
    cfg = LevelConfig("ultra_tiny", 1, stories=20, n_layer=1, n_head=2, n_embd=16, max_iters=30, block_size=32)
    return TinyGPT.from_config(cfg, len(vocab)), vocab, cfg


def _set_env(env):
    os.environ.update(env)


@pytest.fixture(scope="session")
def exercise_runs(tmp_path_factory):
    """Every solution and every untouched exercise notebook, each executed once in smoke mode:
    (folder of the executed copies, {("solutions" or "exercises", file name): future of run_notebook's row}).

    A solution runs with the wrong-answer probes of exercise_probes.py after its check cells, so one run serves
    both test_exercises.py (the solution passes its own checks) and test_exercise_answers.py (each wrong
    answer fails its check). A probe works in a copy of the notebook's variables and prints only its verdict.
    """
    import nbformat
    from exercise_probes import probe_notebook

    from slmlib import exercises as ex
    from slmlib.course import run_notebook

    out = tmp_path_factory.mktemp("exercise-runs")
    names = sorted((p.stem for p in ex.SOLUTIONS_DIR.glob("*.ipynb")),
                   key=lambda n: LONGEST_FIRST.index(n) if n in LONGEST_FIRST else len(LONGEST_FIRST))
    jobs = []
    for name in names:
        try:
            nb = probe_notebook(name)
        except (AssertionError, KeyError):  # a wrong answer that no longer applies: test_exercise_answers.py says so
            nb = nbformat.read(ex.SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
        probed = out / "probed" / f"{name}.ipynb"
        probed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, probed)
        jobs.append((("solutions", f"{name}.ipynb"), probed, ex.SOLUTIONS_DIR))
    jobs += [(("exercises", f"{name}.ipynb"), ex.EXERCISES_DIR / f"{name}.ipynb", ex.EXERCISES_DIR) for name in names]
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(WORKERS, mp_context=ctx, initializer=_set_env, initargs=(ONE_THREAD,)) as pool:
        futures = {key: pool.submit(run_notebook, path, out / key[0] / key[1], {"smoke": True}, cwd=cwd)
                   for key, path, cwd in jobs}
        yield out, futures


@pytest.fixture(scope="session", autouse=True)
def _start_exercise_runs_early(request):
    """Start the notebook runs with the session when a selected test will read them: they take minutes of
    one core each, and until test_exercise_answers.py asks, the tests before it keep only one core busy."""
    if any("exercise_runs" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("exercise_runs")
