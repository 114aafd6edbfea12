"""Where the course keeps its files. Everything is relative to the project folder."""
from __future__ import annotations

import os
from pathlib import Path

# SLM_COURSE_ROOT lets tests (and users with an unusual layout) point elsewhere.
ROOT = Path(os.environ.get("SLM_COURSE_ROOT", Path(__file__).resolve().parents[1]))
DATA_DIR = ROOT / "data"
MODELS_DIR = Path(os.environ.get("SLM_MODELS_DIR", ROOT / "models"))
OUTPUTS_DIR = Path(os.environ.get("SLM_OUTPUTS_DIR", ROOT / "outputs"))


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
