"""Set up the SLM Course on Linux, macOS or Windows: one script, the standard library only.

    python3 setup_course.py              Linux / macOS (`make` calls this too)
    py setup_course.py                   Windows (PowerShell or cmd)
    python3 setup_course.py --cpu-torch  PyTorch's CPU-only wheel (Linux: avoids the CUDA build)
    python3 setup_course.py --dry-run --platform windows   print the commands, run nothing

It creates .venv, installs requirements.txt and the slmlib package (editable), and registers
the course's Jupyter kernel inside the venv, so nothing is installed system-wide. When the
venv is already up to date (its stamp file is newer than requirements.txt and pyproject.toml)
it does nothing, in well under a second.
"""
from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 10)  # pyproject.toml: requires-python = ">=3.10"
PLATFORMS = ("linux", "macos", "windows")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
KERNEL_NAME = "slm-course"
KERNEL_DISPLAY_NAME = "Python 3 (SLM Course)"
STAMP_NAME = ".installed"  # the Makefile's $(STAMP) is $(VENV)/.installed
INPUTS = ("requirements.txt", "pyproject.toml")  # a newer one of these means: install again


class SetupError(Exception):
    """A step failed or the input is wrong: reported as one line with the fix."""


def current_platform() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    return "macos" if sys.platform == "darwin" else "linux"


def venv_python(venv: str, platform: str) -> str:
    """The venv's interpreter: Scripts\\python.exe on Windows, bin/python elsewhere."""
    if platform == "windows":
        return str(PureWindowsPath(venv, "Scripts", "python.exe"))
    return str(PurePosixPath(venv, "bin", "python"))


def torch_requirement(requirements: Path = ROOT / "requirements.txt") -> str:
    """The torch line of requirements.txt (e.g. 'torch==2.13.*'): the pin lives in one place."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("torch") and not line[len("torch"):][:1].isalnum():
            return line
    raise SetupError(f"{requirements} has no torch line; restore it with `git checkout -- requirements.txt`")


def plan(python: str, venv: str | None, platform: str, cpu_torch: bool, torch_req: str) -> list[tuple[str, list[str]]]:
    """The set-up as (what, command) pairs. venv=None installs into `python`'s own environment."""
    env_python = python if venv is None else venv_python(venv, platform)
    pip = [env_python, "-m", "pip", "install"]
    steps = []
    if venv is not None:
        steps.append(("create the virtual environment", [python, "-m", "venv", venv]))
    steps.append(("upgrade pip", pip + ["--quiet", "--upgrade", "pip"]))
    if cpu_torch:
        # --no-deps: only torch comes from PyTorch's index; its dependencies, and everything
        # else, come from the configured index in the next step. --upgrade replaces a CUDA
        # build (2.13.0 < 2.13.0+cpu) and leaves an installed CPU build alone.
        steps.append(("PyTorch's CPU-only wheel, from PyTorch's CPU index",
                      pip + ["--upgrade", "--no-deps", torch_req, "--index-url", CPU_TORCH_INDEX]))
    # setuptools: the build backend the editable install below uses without build isolation
    # (isolation would fetch it again, which fails offline).
    steps.append(("install the pinned requirements", pip + ["-r", "requirements.txt", "setuptools>=64"]))
    steps.append(("install slmlib (editable)", pip + ["--quiet", "--no-deps", "--no-build-isolation", "-e", "."]))
    steps.append(("register the course's Jupyter kernel inside the environment",
                  [env_python, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
                   "--display-name", KERNEL_DISPLAY_NAME]))
    return steps


def format_command(cmd: list[str], platform: str) -> str:
    """A command as it is typed in the platform's shell (PowerShell and cmd on Windows)."""
    if platform != "windows":
        return shlex.join(cmd)
    # double quotes protect spaces and > < | & from both PowerShell and cmd
    return " ".join(a if re.fullmatch(r"[\w\\/:.=*+-]+", a) else f'"{a}"' for a in cmd)


def stamp_text(cpu_torch: bool) -> str:
    return f"torch={'cpu-index' if cpu_torch else 'configured-index'}\n"


def up_to_date(stamp: Path, env_python: Path, cpu_torch: bool) -> bool:
    """Set up already: the stamp is newer than the inputs, and torch came from where it is asked."""
    if not (stamp.is_file() and env_python.is_file()):
        return False
    if any(stamp.stat().st_mtime < (ROOT / name).stat().st_mtime for name in INPUTS):
        return False
    # an empty stamp is the Makefile's old `touch`: the configured index
    return not cpu_torch or "cpu-index" in stamp.read_text(encoding="utf-8")


def in_an_environment() -> bool:
    """True inside a venv or a conda environment (never install into the system's Python)."""
    return sys.prefix != sys.base_prefix or (Path(sys.prefix) / "conda-meta").is_dir()


def remove_venv(venv: Path) -> None:
    if not venv.exists():
        return
    if not (venv / "pyvenv.cfg").is_file():
        raise SetupError(f"--fresh would delete {venv}, which is not a virtual environment (no pyvenv.cfg); "
                         "delete it yourself or pick another --venv")
    print(f"==> remove {venv} (--fresh)", flush=True)
    shutil.rmtree(venv)


def run_steps(steps: list[tuple[str, list[str]]], platform: str) -> None:
    for what, cmd in steps:
        print(f"==> {what}\n    {format_command(cmd, platform)}", flush=True)
        try:
            code = subprocess.run(cmd, cwd=ROOT).returncode
        except FileNotFoundError:
            raise SetupError(f"{what}: {cmd[0]} not found") from None
        if code != 0:
            hint = (f" Offline or behind a proxy? {CPU_TORCH_INDEX} must be reachable for --cpu-torch; "
                    "without --cpu-torch the configured index is used" if CPU_TORCH_INDEX in cmd else
                    " See pip's message above; nothing is lost, run this script again once it is fixed")
            raise SetupError(f"step '{what}' failed (exit code {code}).{hint}")


def next_steps(venv: str | None, platform: str) -> str:
    py = "python" if venv is None else venv_python(venv, platform)
    steps = (f"Set up. Open the course:    {py} -m jupyter lab   (lessons: notebooks/, exercises: exercises/)\n"
             f"Check the course quickly:   {py} -m slmlib course --smoke")
    if (ROOT / "tests").is_dir():  # the instructor's repository; a student release has no tests/
        steps += (f"\nRun all the tests:          {py} -m pytest tests notebooks --nbval-lax "
                  f"--nbval-kernel-name {KERNEL_NAME} -p no:cacheprovider")
    return steps


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Set up the SLM Course: .venv, requirements, slmlib, Jupyter kernel.")
    p.add_argument("--venv", default=".venv", help="where to create the virtual environment (default: .venv)")
    p.add_argument("--cpu-torch", action="store_true",
                   help=f"install PyTorch's CPU-only wheel from {CPU_TORCH_INDEX} (needs the internet); "
                        "the default uses your configured package index, as pip would")
    p.add_argument("--here", action="store_true",
                   help="install into the Python running this script (an activated conda env) instead of a venv")
    p.add_argument("--fresh", action="store_true", help="delete the venv first and build it again")
    p.add_argument("--dry-run", action="store_true", help="print the commands and run nothing")
    p.add_argument("--platform", choices=PLATFORMS, default=current_platform(),
                   help="with --dry-run: the platform to print the commands for (default: this one)")
    args = p.parse_args(argv)
    if args.platform != current_platform() and not args.dry_run:
        p.error(f"--platform {args.platform} only works with --dry-run (this machine is {current_platform()})")
    if args.here and args.fresh:
        p.error("--fresh deletes a venv; it cannot be combined with --here")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        torch_req = torch_requirement()
        if args.dry_run:
            here = args.platform == current_platform()
            python = sys.executable if here else ("py" if args.platform == "windows" else "python3")
            for what, cmd in plan(python, None if args.here else args.venv, args.platform, args.cpu_torch, torch_req):
                print(f"# {what}\n{format_command(cmd, args.platform)}")
            return 0
        if sys.version_info < MIN_PYTHON:
            raise SetupError(f"Python {sys.version.split()[0]} is too old: the course needs "
                             f"{'.'.join(map(str, MIN_PYTHON))} or newer; install Python 3.11 and run this again")
        if args.here:
            if not in_an_environment():
                raise SetupError("--here installs into the running Python, but that is the system's Python; "
                                 "activate a conda environment first, or leave out --here to make a venv")
            venv, env_python, stamp = None, Path(sys.executable), Path(sys.prefix) / ".slm-course-installed"
        else:
            venv = args.venv
            venv_dir = ROOT / venv
            if args.fresh:
                remove_venv(venv_dir)
            env_python, stamp = ROOT / venv_python(venv, args.platform), venv_dir / STAMP_NAME
        if up_to_date(stamp, env_python, args.cpu_torch):
            print(f"Already set up ({stamp} is newer than {' and '.join(INPUTS)}); nothing to do.")
            return 0
        steps = plan(sys.executable, venv, args.platform, args.cpu_torch, torch_req)
        if venv is not None and env_python.is_file():
            steps = steps[1:]  # the venv exists: keep it, install into it
        run_steps(steps, args.platform)
        stamp.write_text(stamp_text(args.cpu_torch), encoding="utf-8")
        print("\n" + next_steps(venv, args.platform))
        return 0
    except SetupError as e:
        print(f"setup_course.py: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
