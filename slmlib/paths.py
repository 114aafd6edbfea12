"""Where the course keeps its files. Everything is relative to the project folder.

The folders are read from the environment each time they are asked for, so setting
SLM_MODELS_DIR, SLM_OUTPUTS_DIR or SLM_COURSE_ROOT after slmlib is imported still takes effect
(tests and lessons point them at temporary folders). Functions take `models_dir=None` and the
like and call these at run time: a default argument `= MODELS_DIR` would freeze the folder at import.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]  # the folder that holds slmlib/


def root(given: Path | str | None = None) -> Path:
    """`given` as a Path, or (None) the project folder: SLM_COURSE_ROOT (tests, an unusual layout), else
    the folder that holds slmlib/. The other three work the same way, so a caller writes
    `models_dir = paths.models_dir(models_dir)` for an argument that defaults to None."""
    return Path(given) if given is not None else Path(os.environ.get("SLM_COURSE_ROOT", PROJECT))


def data_dir(given: Path | str | None = None) -> Path:
    """The course's stories, their statistics and the tokenizer's file: data/ in the project."""
    return Path(given) if given is not None else root() / "data"


def models_dir(given: Path | str | None = None) -> Path:
    """Trained models: SLM_MODELS_DIR, else models/ in the project."""
    return Path(given) if given is not None else Path(os.environ.get("SLM_MODELS_DIR", root() / "models"))


def outputs_dir(given: Path | str | None = None) -> Path:
    """Results, plots and caches: SLM_OUTPUTS_DIR, else outputs/ in the project."""
    return Path(given) if given is not None else Path(os.environ.get("SLM_OUTPUTS_DIR", root() / "outputs"))


_FOLDERS = {"ROOT": root, "DATA_DIR": data_dir, "MODELS_DIR": models_dir, "OUTPUTS_DIR": outputs_dir}


def __getattr__(name: str) -> Path:
    """`paths.MODELS_DIR` and the like, read now. `from .paths import MODELS_DIR` still binds the value
    once, at import: code in slmlib calls models_dir() instead."""
    if name in _FOLDERS:
        return _FOLDERS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def atomic_write(path: Path, write) -> None:
    """Call write(temp_path), then rename the temp file into place.

    An interrupted or failed write never leaves half a file, and the old file survives. Any OSError
    (a folder in the way, no permission, a full disk) becomes one WriteError naming the path.
    """
    import tempfile

    from .errors import WriteError

    path = Path(path)
    tmp = None
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary project files
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, WriteError):
            raise
        raise WriteError(path, e) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
