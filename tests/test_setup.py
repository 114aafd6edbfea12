"""setup_course.py: the commands it would run on each platform, its up-to-date check, and the
environment it made (under `make test` this very interpreter runs in the venv the script built)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slmlib.paths import ROOT

_spec = importlib.util.spec_from_file_location("setup_course", ROOT / "setup_course.py")
setup_course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(setup_course)

EXPECTED = {  # platform -> (the interpreter that makes the venv, the venv's interpreter)
    "linux": ("python3", ".venv/bin/python"),
    "macos": ("python3", ".venv/bin/python"),
    "windows": ("py", r".venv\Scripts\python.exe"),
}


def dry_run(capsys, *args) -> list[str]:
    assert setup_course.main(["--dry-run", *args]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_dry_run_prints_each_platforms_commands(platform, capsys):
    maker, py = EXPECTED[platform]
    lines = dry_run(capsys, "--platform", platform)
    q = '"' if platform == "windows" else "'"  # how each shell quotes 'setuptools>=64'
    expected = [
        f"{py} -m pip install --quiet --upgrade pip",
        f"{py} -m pip install -r requirements.txt {q}setuptools>=64{q}",
        f"{py} -m pip install --quiet --no-deps --no-build-isolation -e .",
        f"{py} -m ipykernel install --sys-prefix --name slm-course --display-name {q}Python 3 (SLM Course){q}",
    ]
    assert lines[1:] == expected
    if platform != setup_course.current_platform():  # on its own platform it names this interpreter
        assert lines[0] == f"{maker} -m venv .venv"
    assert lines[0].endswith(" -m venv .venv")
    assert not any("download.pytorch.org" in line for line in lines), "the default uses the configured index"


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_cpu_torch_takes_only_torch_from_pytorchs_cpu_index(platform, capsys):
    py = EXPECTED[platform][1]
    lines = dry_run(capsys, "--platform", platform, "--cpu-torch")
    torch_lines = [line for line in lines if "download.pytorch.org" in line]
    pin = "torch==2.13.*" if platform == "windows" else "'torch==2.13.*'"
    assert torch_lines == [f"{py} -m pip install --upgrade --no-deps {pin} "
                           "--index-url https://download.pytorch.org/whl/cpu"]
    # before the requirements, which then bring torch's own dependencies from the configured index
    assert lines.index(torch_lines[0]) < next(i for i, line in enumerate(lines) if "-r requirements.txt" in line)


def test_other_venv_folders_and_conda_environments(capsys):
    lines = dry_run(capsys, "--platform", "windows", "--venv", "C:/work/my env")
    assert lines[0] == 'py -m venv "C:/work/my env"'
    assert lines[1].startswith(r'"C:\work\my env\Scripts\python.exe" -m pip install')
    here = dry_run(capsys, "--platform", "linux", "--here")  # conda: install into the running Python
    assert len(here) == 4 and not any(" -m venv " in line for line in here)


def test_the_torch_pin_and_the_python_floor_come_from_the_project_files():
    assert setup_course.torch_requirement() == "torch==2.13.*"
    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert setup_course.MIN_PYTHON == tuple(map(int, requires.groups()))
    recipe = (ROOT / "Makefile").read_text()
    assert "\t$(PYTHON) setup_course.py --venv $(VENV) $(CPU_TORCH_FLAG)\n" in recipe, "make builds through it"


def test_an_up_to_date_venv_is_left_alone(tmp_path, capsys):
    venv = tmp_path / "venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    python.parent.mkdir(parents=True)
    python.write_text("")  # never run: the up-to-date check must return before any step
    stamp = venv / ".installed"
    stamp.write_text("")  # the Makefile's old `touch`: torch from the configured index
    newest_input = max((ROOT / n).stat().st_mtime for n in setup_course.INPUTS)
    os.utime(stamp, (newest_input + 1, newest_input + 1))
    assert setup_course.main(["--venv", str(venv)]) == 0
    assert "Already set up" in capsys.readouterr().out
    up_to_date = setup_course.up_to_date
    assert not up_to_date(stamp, python, cpu_torch=True), "CPU_TORCH=1 on a default venv installs the CPU wheel"
    stamp.write_text(setup_course.stamp_text(cpu_torch=True))
    os.utime(stamp, (newest_input + 1, newest_input + 1))
    assert up_to_date(stamp, python, cpu_torch=True) and up_to_date(stamp, python, cpu_torch=False)
    os.utime(stamp, (newest_input - 1, newest_input - 1))  # requirements.txt changed since
    assert not up_to_date(stamp, python, cpu_torch=False)


def test_bad_requests_fail_in_one_line(tmp_path, capsys):
    other = "linux" if setup_course.current_platform() == "windows" else "windows"
    with pytest.raises(SystemExit):
        setup_course.main(["--platform", other])
    assert f"--platform {other} only works with --dry-run" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    assert setup_course.main(["--venv", str(tmp_path / "notes"), "--fresh"]) == 1
    assert "not a virtual environment (no pyvenv.cfg)" in capsys.readouterr().err
    assert (tmp_path / "notes").is_dir(), "nothing deleted"


def test_this_environment_has_the_course_kernel_and_runs_slmlib():
    """The environment the tests run in (make test: the venv the script made) works as set up."""
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "slm-course" / "kernel.json"
    assert spec.is_file(), f"no slm-course kernel in {sys.prefix}: run setup_course.py"
    argv0 = Path(json.loads(spec.read_text())["argv"][0])
    assert argv0.resolve() == Path(sys.executable).resolve()
    out = subprocess.run([sys.executable, "-m", "slmlib", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "5 large" in out.stdout and "compact vocabulary" in out.stdout
