"""Fixtures for the unit tests (the environment is set up by the root conftest.py).

The expensive ones are session-scoped and shared by the test files: each notebook of solutions/ and
exercises/ runs once per session, however many files read its run, and levels 1-2 train once, in the
background from the session's start.
"""
import concurrent.futures as cf
import multiprocessing

import pytest

from slmlib.config import LevelConfig

# Background work (the exercise notebooks, levels 1-2 trained for real) runs in a pool of worker processes
# started with the session, beside the tests in this process, which keep about one core busy. One torch
# thread per process: on a busy 2-core machine, two torch threads per kernel make smoke training ~10x slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKERS = 3
# The longest solutions first, so the pool's last minutes are not one long notebook alone.
LONGEST_FIRST = ["ex10_open_experiment", "ex06_data_scaling_law", "ex08_compare_levels", "ex05_memorisation",
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


@pytest.fixture(scope="session")
def background():
    """The session's pool of worker processes (spawned: a fork of a process holding torch's threads can hang)."""
    from background import set_env

    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(WORKERS, mp_context=ctx, initializer=set_env, initargs=(ONE_THREAD,)) as pool:
        yield pool


@pytest.fixture(scope="session")
def level_runs(background):
    """Levels 1-2 trained at their default settings, each in a worker of its own (tests/test_lesson_holds.py):
    {name: future of (history without model and data, recital, entropy floors)}."""
    from background import train_level

    return {name: background.submit(train_level, name) for name in ("ultra_tiny", "tiny")}


@pytest.fixture(scope="session")
def exercise_runs(tmp_path_factory, background):
    """Every solution and every untouched exercise notebook, each executed once in smoke mode:
    (folder of the executed copies, {("solutions" or "exercises", file name): future of run_notebook's row}).

    A solution runs with the wrong-answer probes of exercise_probes.py after its check cells, so one run serves
    both test_exercises.py (the solution passes its own checks) and test_exercise_answers.py (each wrong
    answer fails its check). A probe works in a copy of the notebook's variables and prints only its verdict.
    """
    import nbformat
    from exercise_probes import probe_notebook

    from slmlib import exercises as ex
    from slmlib.tooling.course import run_notebook

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
    futures = {key: background.submit(run_notebook, path, out / key[0] / key[1], {"smoke": True}, cwd=cwd)
               for key, path, cwd in jobs}
    return out, futures


@pytest.fixture(scope="session", autouse=True)
def _start_background_work_early(request):
    """Start the background work with the session when a selected test will read it (the longest first):
    it takes minutes of one core each, and the tests before the ones that read it keep only one core busy."""
    wanted = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    for name in ("level_runs", "exercise_runs"):
        if name in wanted:
            request.getfixturevalue(name)
