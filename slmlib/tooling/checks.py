"""Lesson 00's setup checks: each prints OK, WARN (works, but ...) or FIX, with the exact fix."""
from __future__ import annotations

import functools
import importlib.metadata as md
import json
import os
import re
import shutil
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .. import KERNEL_NAME
from ..paths import ROOT

MIN_PYTHON = (3, 10)  # pyproject.toml: requires-python = ">=3.10"
MIN_FREE_BYTES = 2 * 1024**3
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
LAB = ("`make lab`, or from the course folder `.venv/bin/python -m jupyter lab` "
       "(Windows: `.venv\\Scripts\\python -m jupyter lab`)")


def setup_command(flags: str = "") -> str:
    """The set-up command on each platform, for the fix lines (README: "Set up")."""
    flags = f" {flags}" if flags else ""
    return f"`python3 setup_course.py{flags}` (Windows: `py setup_course.py{flags}`)"


class SetupWarning(Exception):
    """Something that works, but wastes space or time: a WARN line with the fix, not a failure."""


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:.1f} GB"


def _python() -> str:
    version = sys.version.split()[0]
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"Python {version} is too old: the course needs {'.'.join(map(str, MIN_PYTHON))} or "
                           f"newer. Install Python 3.11, then run with it {setup_command('--fresh')}")
    return f"Python {version}"


# -- the Jupyter server this kernel belongs to (None under papermill, nbval or VS Code) --------

def _get(server: dict, path: str, timeout: float = 2.0) -> bytes:
    request = urllib.request.Request(server["url"] + path, headers={"Authorization": f"token {server.get('token', '')}"})
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local server: never a proxy
    with no_proxy.open(request, timeout=timeout) as response:
        return response.read()


@functools.lru_cache(maxsize=1)  # a kernel belongs to one server for life
def jupyter_server() -> dict | None:
    """The running Jupyter server that started this kernel, with `kernel_name` added; else None."""
    try:
        from ipykernel.connect import get_connection_file
        from jupyter_core.paths import jupyter_runtime_dir

        kernel_id = Path(get_connection_file()).stem.removeprefix("kernel-")
        files = sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json"))
    except Exception:  # not inside a kernel, or no Jupyter installed
        return None
    parent = f"jpserver-{os.environ.get('JPY_PARENT_PID')}.json"
    for file in sorted(files, key=lambda f: f.name != parent):  # the parent server first
        try:
            server = json.loads(file.read_text())
            kernels = json.loads(_get(server, "api/kernels"))
        except Exception:  # a stale file, a server that asks for a password, a socket server...
            continue
        for kernel in kernels:
            if kernel.get("id") == kernel_id:
                return server | {"kernel_name": kernel.get("name")}
    return None


def lab_extensions(server: dict) -> tuple[set[str], set[str]]:
    """(the extensions JupyterLab loads, those disabled), from the page config it sends the browser."""
    page = _get(server, "lab").decode("utf-8", "replace")
    found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)
    if not found:
        raise ValueError("no JupyterLab page config")
    config = json.loads(found.group(1))
    return {e["name"] for e in config.get("federated_extensions", [])}, set(config.get("disabledExtensions", []))


# -- the checks ---------------------------------------------------------------------------------

def course_environment() -> Path | None:
    """The course's environment: .venv, or else (conda) the one whose slm-course kernel is registered."""
    venv = ROOT / ".venv"
    if venv.is_dir():
        return venv
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        python = Path(KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0])
    except Exception:
        return None
    # environments, not interpreters: a venv's python is often a link to the system's
    return python.parent.parent if python.parent.name in ("bin", "Scripts") else python.parent


def _kernel() -> str:
    prefix = Path(sys.prefix).resolve()
    course = course_environment()
    if course is None:
        raise RuntimeError(f"no '{KERNEL_NAME}' kernel is registered: run {setup_command()} "
                           "(conda: `python setup_course.py --here`)")
    if course.resolve() != prefix:
        raise RuntimeError(f"this notebook runs in {prefix}, not the course's environment ({course}). "
                           f"Start JupyterLab with {LAB} and pick the kernel 'Python 3 (SLM Course)'")
    server = jupyter_server()
    name = f"kernel '{server['kernel_name']}'" if server else "kernel"
    root = ROOT.resolve()  # a .venv inside the course prints as .venv, not as this machine's folders
    return f"{name} runs in the course's environment {prefix.relative_to(root) if prefix.is_relative_to(root) else prefix}"


def _cuda_libraries_size() -> int:
    """Bytes of the NVIDIA libraries a CUDA build of torch brought along (pip's nvidia/ folder)."""
    import torch

    nvidia = Path(torch.__file__).resolve().parents[1] / "nvidia"
    return sum(f.stat().st_size for f in nvidia.rglob("*") if f.is_file()) if nvidia.is_dir() else 0


def _torch() -> str:
    import torch

    if not torch.__version__.startswith("2.13"):
        raise RuntimeError(f"torch {torch.__version__} found, the course pins 2.13.*: run {setup_command('--fresh')}")
    if torch.version.cuda and not torch.cuda.is_available():
        size = _cuda_libraries_size()
        raise SetupWarning(
            f"torch {torch.__version__} is a CUDA build{f' (its NVIDIA libraries take {_gb(size)} here)' if size else ''}, "
            "but this machine has no usable NVIDIA GPU. It works; to get the space back, close JupyterLab and run "
            f"{setup_command('--fresh --cpu-torch')} (the CPU-only wheel)")
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    return f"torch {torch.__version__} ({build})"


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # Linux: what this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


def _cpu() -> str:
    import torch

    threads, cpus = torch.get_num_threads(), _usable_cpus()
    if cpus < 2:
        raise SetupWarning(f"this machine gives the course {cpus} CPU: training works, but slower than the "
                           "README's times (measured with 2 cores). Use a machine with 2 or more cores if you can")
    if threads < 2:
        why = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} is set" if "OMP_NUM_THREADS" in os.environ else \
            "torch.set_num_threads(1) was called"
        raise SetupWarning(f"torch uses {threads} thread of {cpus} CPUs ({why}): training is slower than it "
                           f"could be. Unset OMP_NUM_THREADS and restart the kernel, or run torch.set_num_threads({cpus})")
    return f"{threads} torch threads on {cpus} CPUs"


def _free_memory() -> int | None:
    try:
        import psutil  # installed with Jupyter (ipython needs it)

        return psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        meminfo = Path("/proc/meminfo").read_text()
        return int(re.search(r"MemAvailable:\s+(\d+) kB", meminfo).group(1)) * 1024
    except (OSError, AttributeError):
        return None


def _memory() -> str:
    free = _free_memory()
    if free is None:
        return "free memory not measured on this system (no psutil)"
    if free < MIN_FREE_BYTES:
        raise SetupWarning(f"only {_gb(free)} of memory free (the course wants {_gb(MIN_FREE_BYTES)}): "
                           "close other programs (browser tabs, other notebooks' kernels) before training")
    return f"{_gb(free)} of memory free"


def _disk() -> str:
    free = shutil.disk_usage(ROOT).free
    if free < MIN_FREE_BYTES:
        raise SetupWarning(f"only {_gb(free)} free on the disk holding {ROOT} (the course wants "
                           f"{_gb(MIN_FREE_BYTES)}): free some space; models and outputs are written there")
    return f"{_gb(free)} free on the disk holding the course"


def _device() -> str:
    from ..device import GPU_MIN_PARAMS, available_gpu

    gpu = available_gpu()
    where = f"a {gpu} GPU is present" if gpu else "no GPU found"
    return (f"{where}; device='auto' trains the course's five levels on the CPU "
            f"(a GPU only from {GPU_MIN_PARAMS:,} parameters): see the table below")


def _tokenizer() -> str:
    from ..tokenizer import gpt2

    ids = gpt2().encode("Hello world")
    if ids != [15496, 995]:
        raise RuntimeError(f"GPT-2 tokenizer gives {ids}, expected [15496, 995]: `git checkout -- data/`")
    return "GPT-2 tokenizer works offline"


def _data() -> str:
    from ..data import load_stats, read_stories, split_path, verify_split

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
            raise RuntimeError(f"{pkg} is not installed: run {setup_command()} (it installs requirements.txt)") from None
    if not versions["ipywidgets"].startswith("8") or not versions["jupyterlab_widgets"].startswith("3"):
        raise RuntimeError(f"ipywidgets {versions['ipywidgets']} needs jupyterlab_widgets 3.x "
                           f"(found {versions['jupyterlab_widgets']}): `pip install -r requirements.txt`")
    found = f"ipywidgets {versions['ipywidgets']} + jupyterlab_widgets {versions['jupyterlab_widgets']}"
    server = jupyter_server()
    if server is None:
        return f"{found} (no JupyterLab runs this kernel to ask; the slider below shows whether widgets render)"
    try:
        loaded, disabled = lab_extensions(server)
    except Exception:  # Notebook 6, a JupyterLab without /lab, ...
        return f"{found} (could not ask the Jupyter at {server['url']} which extensions it loads)"
    if WIDGETS_EXTENSION not in loaded:
        raise RuntimeError(f"the JupyterLab at {server['url']} has no widget extension, so sliders and progress "
                           f"bars show as text. Stop it and start the course's own: {LAB}")
    if WIDGETS_EXTENSION in disabled:
        raise RuntimeError(f"the JupyterLab at {server['url']} has its widget extension disabled, so sliders and "
                           f"progress bars show as text. Enable it (`jupyter labextension enable {WIDGETS_EXTENSION}` "
                           "in the environment that runs JupyterLab) and reload the page")
    return f"{found}; the JupyterLab at {server['url']} loads the widget extension"


CHECKS: dict[str, Callable[[], str]] = {
    "python": _python, "kernel": _kernel, "torch": _torch, "cpu": _cpu, "memory": _memory, "disk": _disk,
    "device": _device, "tokenizer": _tokenizer, "data": _data, "widgets": _widgets,
}


def run_checks() -> None:
    """Print one line per check: OK, WARN (works, with a fix worth making) or FIX.

    Raises at the end if any line says FIX, so papermill stops here.
    """
    status = {}
    for name, check in CHECKS.items():
        try:
            line, status[name] = check(), "OK"
        except SetupWarning as e:
            line, status[name] = str(e), "WARN"
        except Exception as e:  # every failure becomes a FIX line, not a traceback
            line, status[name] = str(e), "FIX"
        print(f"{status[name]:<5}{name:<10} {line}")
    failed = [n for n, s in status.items() if s == "FIX"]
    if failed:
        raise RuntimeError(f"{len(failed)} check(s) failed ({', '.join(failed)}): see the FIX lines above")
    warned = [n for n, s in status.items() if s == "WARN"]
    print(f"\nAll checks passed{f' ({len(warned)} warning(s): see the WARN lines)' if warned else ''}. On to lesson 01!")


def device_plan(device: str = "auto") -> list[dict]:
    """Which device trains each level, and why (the lesson's `device` parameter, default "auto")."""
    from ..config import LEVELS
    from ..data import load_stats
    from ..device import auto_device, pick_device
    from ..model import TinyGPT

    vocab_size = load_stats()["compact_vocab_size"]
    rows = []
    for cfg in LEVELS.values():
        # built on the CPU: 0.2 s for all five; torch's "meta" device takes seconds to start
        n_params = TinyGPT.from_config(cfg, vocab_size).num_params()
        if device == "auto":
            dev, why = auto_device(n_params)
        else:
            dev, why = pick_device(device), f"you asked for device={device!r}"
        rows.append({"level": f"{cfg.number} {cfg.name}", "parameters": n_params, "device": dev.type, "why": why})
    return rows


def print_device_plan(device: str = "auto") -> None:
    rows = device_plan(device)  # device="cuda" without a GPU stops here with the fix
    print(f"{'level':<13} {'parameters':>10}  device ({device=})")
    for r in rows:
        print(f"{r['level']:<13} {r['parameters']:>10,}  {r['device']}")
    reasons = dict.fromkeys(r["why"] for r in rows)
    print("why:", *reasons, sep="\n  ")
