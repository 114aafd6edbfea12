"""Fixtures for the unit tests (the environment is set up by the root conftest.py).

The expensive ones are session-scoped and shared by the test files, and run in a pool of worker processes
from the session's start, beside the tests in this process: each lesson, solution and exercise notebook
runs once per session, however many files read its run, levels 1-2 train once, and the quick benchmark
runs once. The tests that read their results run last (pytest_collection_modifyitems), so this process
is busy with the other tests, not waiting, while the pool works.
"""
import concurrent.futures as cf
import itertools
import multiprocessing
import os
import queue
import threading
from functools import partial

import pytest

from slmlib.config import LevelConfig

# Background work runs in a pool of worker processes started with the session, beside the tests in this
# process, which keep about one core busy. One torch thread per process: on a busy 2-core machine, two torch
# threads per kernel make smoke training ~10x slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKERS = 3
# The pool runs at a lower priority than this process (nice, Unix), which keeps its own core while it works and
# leaves the pool the other: this process's tests are one chain of waits on their own subprocesses (grading,
# the browser, the command line), the pool's work is any order, so the pool is what should yield.
POOL_NICE = int(os.environ.get("SLM_TEST_POOL_NICE", "10"))
# What each task costs, in seconds of one core (measured on 2 cores): the pool starts the costliest ready task
# first, so that its last minutes are short tasks side by side, not one long task alone.
LEVEL_COST = 115  # levels 1 and 2 at their default settings, each
BENCH_COST = 33
LESSON_COST = {"00": 2, "03": 7, "04": 24, "05": 10, "06": 10, "07": 12, "08": 30, "09": 7, "10": 15}
# The longest solutions first (with their probes, about 5-10 s each, their exercises about 3 s).
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


class Background:
    """The session's worker processes, fed the costliest ready task each time one is free.

    `submit(fn, *args, cost=, after=)` returns a future at once; the task waits here, not in the pool's own
    first-come queue, until the futures in `after` are done and a worker is free. So a task that becomes ready
    late (a lesson after the one before it) goes ahead of cheaper work submitted before it.
    """

    def __init__(self, pool: cf.ProcessPoolExecutor, workers: int):
        self._pool, self._free, self._ready = pool, threading.Semaphore(workers), queue.PriorityQueue()
        self._order = itertools.count()
        threading.Thread(target=self._feed, name="background-feeder", daemon=True).start()

    def submit(self, fn, *args, cost: float = 0, after=(), **kwargs) -> cf.Future:
        result = cf.Future()
        task = (-cost, next(self._order), result, fn, args, kwargs)
        waiting, lock = [len(after)], threading.Lock()

        def one_done(_):
            with lock:
                waiting[0] -= 1
                ready = waiting[0] == 0
            if ready:
                self._ready.put(task)

        for future in after:
            future.add_done_callback(one_done)
        if not after:
            self._ready.put(task)
        return result

    def close(self) -> None:
        self._ready.put((float("-inf"), next(self._order), None, None, (), {}))  # before any task still waiting

    def _feed(self) -> None:
        while True:
            self._free.acquire()
            _, _, result, fn, args, kwargs = self._ready.get()
            if fn is None:
                return
            try:
                task = self._pool.submit(fn, *args, **kwargs)
            except Exception as e:  # the pool broke (a worker was killed) or is shut down
                self._free.release()
                result.set_exception(e)
                continue
            task.add_done_callback(partial(self._finished, result))

    def _finished(self, result: cf.Future, task: cf.Future) -> None:
        self._free.release()
        if task.exception() is not None:
            result.set_exception(task.exception())
        else:
            result.set_result(task.result())


@pytest.fixture(scope="session")
def background():
    """The session's pool of worker processes (spawned: a fork of a process holding torch's threads can hang)."""
    from background import set_env

    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(WORKERS, mp_context=ctx, initializer=set_env, initargs=(ONE_THREAD, POOL_NICE)) as pool:
        feeder = Background(pool, WORKERS)
        yield feeder
        feeder.close()


@pytest.fixture(scope="session")
def level_runs(background):
    """Levels 1-2 trained at their default settings, each in a worker of its own (tests/test_lesson_holds.py):
    {name: future of (history without model and data, recital, entropy floors)}."""
    from background import train_level

    return {name: background.submit(train_level, name, cost=LEVEL_COST) for name in ("ultra_tiny", "tiny")}


@pytest.fixture(scope="session")
def exercise_runs(tmp_path_factory, background):
    """Every solution and every untouched exercise notebook, each executed once in smoke mode:
    (folder of the executed copies, {("solutions" or "exercises", file name): future of run_notebook's row}).

    A solution runs with the wrong-answer probes of exercise_probes.py after its check cells, so one run serves
    both test_exercises.py (the solution passes its own checks) and test_exercise_answers.py (each wrong
    answer fails its check). A probe works in a copy of the notebook's variables and prints only its verdict.
    """
    import nbformat
    from background import run_notebook
    from exercise_probes import probe_notebook

    from slmlib import exercises as ex

    out = tmp_path_factory.mktemp("exercise-runs")
    names = sorted(p.stem for p in ex.SOLUTIONS_DIR.glob("*.ipynb"))
    rank = {name: len(LONGEST_FIRST) - LONGEST_FIRST.index(name) for name in LONGEST_FIRST}
    jobs = []
    for name in names:
        try:
            nb = probe_notebook(name)
        except (AssertionError, KeyError):  # a wrong answer that no longer applies: test_exercise_answers.py says so
            nb = nbformat.read(ex.SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
        probed = out / "probed" / f"{name}.ipynb"
        probed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, probed)
        jobs.append((("solutions", f"{name}.ipynb"), probed, ex.SOLUTIONS_DIR, 4 + rank.get(name, 0)))
    jobs += [(("exercises", f"{name}.ipynb"), ex.EXERCISES_DIR / f"{name}.ipynb", ex.EXERCISES_DIR, 3) for name in names]
    futures = {key: background.submit(run_notebook, path, out / key[0] / key[1], {"smoke": True}, cwd=cwd, cost=cost)
               for key, path, cwd, cost in jobs}
    return out, futures


@pytest.fixture(scope="session")
def lesson_runs(tmp_path_factory, background, request):
    """Every lesson that nbval does not run this session, executed once in smoke mode by papermill
    (tests/test_notebooks.py): (folder of the executed copies, {file name: future of run_notebook's row}).

    One after the other, as a student takes them: lessons 04-07 compare with the level before (its saved model),
    08 and 09 read the models of 03-07. Each is a task of its own, so the pool runs other work beside them.
    """
    from background import run_notebook

    from slmlib.tooling.course import lesson_paths

    out = tmp_path_factory.mktemp("executed")
    lessons = [p for p in lesson_paths() if p.name not in getattr(request.config, "nbval_lessons", ())]
    costs = [LESSON_COST.get(p.name[:2], 10) for p in lessons]
    runs, previous = {}, ()
    for i, path in enumerate(lessons):
        future = background.submit(run_notebook, path, out / path.name, {"smoke": True},
                                   cost=sum(costs[i:]), after=previous)  # the rest of the chain: it goes first
        runs[path.name], previous = future, (future,)
    return out, runs


@pytest.fixture(scope="session")
def papermill_runs(tmp_path_factory, background):
    """The other papermill runs of tests/test_notebooks.py, side by side in the pool: {name: (folder, future of
    run_notebook's row)}. A run's models folder is set up before it starts, as the test describes."""
    from background import run_notebook

    from slmlib.tooling.course import NOTEBOOKS_DIR

    def submit(name, lesson, parameters, env=None, cost=3):
        folder = tmp_path_factory.mktemp(name)
        env = {k: str(folder / v) for k, v in (env or {}).items()}
        return folder, background.submit(run_notebook, NOTEBOOKS_DIR / lesson, folder / lesson, parameters, env=env,
                                         cost=cost)

    runs = {f"bad {key}": submit(f"bad-{key}", "03_ultra_tiny.ipynb", {"smoke": True, **params} if smoke else params)
            for key, params, smoke in (("level", {"level": "huge"}, True), ("max_iters", {"max_iters": "ten"}, True),
                                       ("smoke", {"smoke": "yes"}, False), ("lesson", {"level": "tiny"}, True))}
    runs["08 before training"] = submit("before-training", "08_compare_levels.ipynb", {"smoke": True},
                                        {"SLM_MODELS_DIR": "empty"})
    quick_try = tmp_path_factory.mktemp("quick-try")
    own = quick_try / "models" / "model_medium_3000_stories.pt"
    own.parent.mkdir()
    own.write_bytes(b"medium's trained model")
    runs["quick try"] = (quick_try, background.submit(
        run_notebook, NOTEBOOKS_DIR / "06_medium.ipynb", quick_try / "06.ipynb",
        {"smoke": True, "level": "medium", "max_iters": 3}, env={"SLM_MODELS_DIR": str(quick_try / "models")}, cost=7))
    return runs


@pytest.fixture(scope="session")
def bench_run(tmp_path_factory, background):
    """`slmlib bench --quick` (tests/test_bench.py): (its output folder, future of its results)."""
    from background import quick_benchmark

    out = tmp_path_factory.mktemp("bench")
    return out, background.submit(quick_benchmark, out, cost=BENCH_COST)


BACKGROUND = ("level_runs", "lesson_runs", "papermill_runs", "exercise_runs", "bench_run")


def pytest_collection_modifyitems(config, items):
    """The tests that read the pool's results run after the others of tests/, so this process works while the pool
    works. nbval's lessons that read the models the pool's lessons save (10) come last; the ones that read none
    (01, 02) come first, so that the session does not end with one core idle while they run alone."""
    reads = [i for i in items if i.path.parent.name == "tests" and set(getattr(i, "fixturenames", ())) & set(BACKGROUND)]
    if not reads:
        return
    notebooks = [i for i in items if i.path.suffix == ".ipynb"]
    early = [i for i in notebooks if i.path.name[:2] < "03"]  # lessons 00-02 train and load no level
    moved = set(reads) | set(notebooks)
    rest = [i for i in items if i not in moved]
    # after the first test, whose set-up starts the pool (_start_background_work_early: nbval's cells take no fixtures)
    items[:] = rest[:1] + early + rest[1:] + reads + [i for i in notebooks if i not in set(early)]


@pytest.fixture(scope="session", autouse=True)
def _start_background_work_early(request):
    """Start the background work with the session when a selected test will read it: it takes minutes of
    one core, and the tests that run meanwhile keep only one core busy."""
    wanted = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    for name in BACKGROUND:
        if name in wanted:
            request.getfixturevalue(name)
