"""The folders are read when used, not when slmlib is imported (issue 23).

A default argument `models_dir=MODELS_DIR` binds the folder once, at import: setting SLM_MODELS_DIR
afterwards (a lesson, a test, a notebook kernel) was silently ignored, which is why the root
conftest.py had to run before anything imported slmlib.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import slmlib
from slmlib import paths
from slmlib.checkpoint import default_path, model_path, read_index
from slmlib.train import train
from slmlib.widgets import saved_models

# Modules still binding a folder in a default argument, to be moved to paths.*_dir() (issue 23):
# other changes were under way in them. Empty this set as they are fixed.
NOT_YET = {"slmlib.__main__", "slmlib.exercises", "slmlib.experiments", "slmlib.tooling.grading", "slmlib.sweep",
           "slmlib.tokenizer", "slmlib.tooling.nbgrader_export"}


def test_a_models_folder_set_after_import_is_where_training_saves_and_looks(tiny_config, tmp_path, monkeypatch):
    models = tmp_path / "set after import"
    monkeypatch.setenv("SLM_MODELS_DIR", str(models))
    assert paths.models_dir() == models and paths.MODELS_DIR == models
    assert default_path(tiny_config).parent == models
    history = train(tiny_config.replace(max_iters=2), progress=False)
    assert Path(history.path) == model_path(tiny_config.replace(max_iters=2))
    assert Path(history.path).is_relative_to(models)
    assert [e["file"] for e in read_index()["models"].values()] == [Path(history.path).relative_to(models).as_posix()]
    assert list(saved_models().values()) == [Path(history.path)]


def test_outputs_and_root_set_after_import_are_used(tmp_path, monkeypatch):
    monkeypatch.delenv("SLM_OUTPUTS_DIR", raising=False)
    monkeypatch.setenv("SLM_COURSE_ROOT", str(tmp_path))
    assert paths.outputs_dir() == tmp_path / "outputs" and paths.data_dir() == tmp_path / "data"
    monkeypatch.setenv("SLM_OUTPUTS_DIR", str(tmp_path / "elsewhere"))
    assert paths.outputs_dir() == tmp_path / "elsewhere" and paths.OUTPUTS_DIR == tmp_path / "elsewhere"
    assert paths.models_dir("given") == Path("given")  # an argument wins over the environment


def _functions(module):
    """The module's own functions and methods, through decorators such as functools.cache."""
    for obj in vars(module).values():
        for f in vars(obj).values() if inspect.isclass(obj) else [obj]:
            f = inspect.unwrap(f) if callable(f) else f
            if inspect.isfunction(f) and f.__module__ == module.__name__:
                yield f


def _folder_defaults(module) -> list[str]:
    folders = {paths.root(), paths.data_dir(), paths.models_dir(), paths.outputs_dir()}
    return [f"{f.__qualname__}({p.name}={p.default})" for f in _functions(module)
            for p in inspect.signature(f).parameters.values()
            if isinstance(p.default, Path) and (p.default in folders or folders & set(p.default.parents))]


@pytest.mark.parametrize("module", sorted(f"slmlib.{m.name}" for m in pkgutil.iter_modules(slmlib.__path__)
                                          if f"slmlib.{m.name}" not in NOT_YET))
def test_no_default_argument_freezes_a_folder_at_import(module):
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # an optional package (nbgrader, a browser) that this machine lacks
        pytest.skip(str(e))
    assert _folder_defaults(mod) == [], "use None and paths.models_dir(...) (etc.) inside the function"
