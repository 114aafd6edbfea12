"""Lesson 00's setup checks: each prints OK, or what to do."""
from __future__ import annotations

import importlib.metadata as md
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .paths import ROOT


def _python() -> str:
    if sys.version_info < (3, 10):
        raise RuntimeError(f"Python {sys.version.split()[0]} is too old; install Python 3.11 and run `make lab`")
    return f"Python {sys.version.split()[0]}"


def _kernel() -> str:
    venv = ROOT / ".venv"
    prefix = Path(sys.prefix).resolve()
    if venv.is_dir() and prefix != venv.resolve():
        raise RuntimeError(f"this notebook runs in {prefix}, not the course's environment. Start JupyterLab "
                           "with `make lab` and pick the kernel 'Python 3 (SLM Course)'")
    return f"kernel runs in {prefix}"


def _torch() -> str:
    import torch

    if not torch.__version__.startswith("2.13"):
        raise RuntimeError(f"torch {torch.__version__} found, the course pins 2.13.*: run `make clean && make lab`")
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} CPU cores"


def _tokenizer() -> str:
    from .tokenizer import gpt2

    ids = gpt2().encode("Hello world")
    if ids != [15496, 995]:
        raise RuntimeError(f"GPT-2 tokenizer gives {ids}, expected [15496, 995]: `git checkout -- data/`")
    return "GPT-2 tokenizer works offline"


def _data() -> str:
    from .data import load_stats, read_stories, split_path, verify_split

    stats = load_stats()
    for split in ("train", "val", "test"):
        verify_split(split_path(split), split)  # the file data/stats.json describes, byte for byte
        read_stories(split_path(split), limit=1)
    return f"story data present ({stats['splits']['train']['stories']:,} training stories)"


def _widgets() -> str:
    versions = {}
    for pkg in ("ipywidgets", "jupyterlab_widgets"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            raise RuntimeError(f"{pkg} is not installed: run `make lab` (it installs requirements.txt)") from None
    if not versions["ipywidgets"].startswith("8") or not versions["jupyterlab_widgets"].startswith("3"):
        raise RuntimeError(f"ipywidgets {versions['ipywidgets']} needs jupyterlab_widgets 3.x "
                           f"(found {versions['jupyterlab_widgets']}): `pip install -r requirements.txt`")
    return f"ipywidgets {versions['ipywidgets']} + jupyterlab_widgets {versions['jupyterlab_widgets']}"


CHECKS: dict[str, Callable[[], str]] = {
    "python": _python, "kernel": _kernel, "torch": _torch, "tokenizer": _tokenizer,
    "data": _data, "widgets": _widgets,
}


def run_checks() -> None:
    """Print one line per check; raise at the end if any failed (so papermill stops here)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            print(f"OK   {name:<10} {check()}")
            results[name] = True
        except Exception as e:  # every failure becomes a FIX line, not a traceback
            print(f"FIX  {name:<10} {e}")
            results[name] = False
    failed = [n for n, ok in results.items() if not ok]
    if failed:
        raise RuntimeError(f"{len(failed)} check(s) failed ({', '.join(failed)}): see the FIX lines above")
    print("\nAll checks passed. On to lesson 01!")
