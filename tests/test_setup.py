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

from slmlib import KERNEL_DISPLAY_NAME, KERNEL_NAME
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


def test_the_kernel_name_has_one_home():
    """slmlib.KERNEL_NAME is the home; setup_course.py (standard library only, run before slmlib is installed)
    and the Makefile (nbval's --nbval-kernel-name) repeat it, and must agree."""
    assert (setup_course.KERNEL_NAME, setup_course.KERNEL_DISPLAY_NAME) == (KERNEL_NAME, KERNEL_DISPLAY_NAME)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.findall(r"^KERNEL\s*:?=\s*(\S+)\s*$", makefile, re.M) == [KERNEL_NAME]
    assert "--nbval-kernel-name $(KERNEL)" in makefile


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


# -- lesson 00's checks (slmlib/tooling/checks.py): each problem gives its line and its fix -------------

import http.server  # noqa: E402
import threading  # noqa: E402
from collections import namedtuple  # noqa: E402

import torch  # noqa: E402

from slmlib.tooling import checks  # noqa: E402


def test_checks_use_the_projects_python_floor():
    assert checks.MIN_PYTHON == setup_course.MIN_PYTHON


def test_run_checks_prints_ok_warn_fix_and_stops_only_on_fix(monkeypatch, capsys):
    def warn():
        raise checks.SetupWarning("slow, do X")

    def fix():
        raise RuntimeError("broken, do Y")

    monkeypatch.setattr(checks, "CHECKS", {"a": lambda: "fine", "b": warn})
    checks.run_checks()
    out = capsys.readouterr().out
    assert "OK   a          fine\nWARN b          slow, do X\n" in out and "(1 warning(s): see the WARN lines)" in out
    monkeypatch.setattr(checks, "CHECKS", {"a": lambda: "fine", "b": warn, "c": fix})
    with pytest.raises(RuntimeError, match=r"1 check\(s\) failed \(c\)"):
        checks.run_checks()
    assert "FIX  c          broken, do Y" in capsys.readouterr().out


def test_old_python_wrong_environment_and_wrong_torch_need_a_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "version_info", (3, 9, 18))
    with pytest.raises(RuntimeError, match=r"too old: the course needs 3\.10 .* setup_course\.py --fresh"):
        checks._python()
    monkeypatch.undo()
    monkeypatch.setattr(checks, "course_environment", lambda: tmp_path / "other-venv")
    with pytest.raises(RuntimeError, match="not the course's environment .* 'Python 3 \\(SLM Course\\)'"):
        checks._kernel()
    monkeypatch.setattr(checks, "course_environment", lambda: None)
    with pytest.raises(RuntimeError, match="no 'slm-course' kernel is registered: run `python3 setup_course.py`"):
        checks._kernel()
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(RuntimeError, match="the course pins 2.13"):
        checks._torch()


def test_a_cuda_build_without_a_gpu_says_how_much_space_and_how_to_switch(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(checks, "_cuda_libraries_size", lambda: int(2.5 * 1024**3))
    with pytest.raises(checks.SetupWarning, match=r"CUDA build \(its NVIDIA libraries take 2\.5 GB here\).*"
                                                  r"`python3 setup_course.py --fresh --cpu-torch`"):
        checks._torch()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "CUDA 12.8 build" in checks._torch()


def test_few_cpus_little_memory_or_disk_warn_with_the_fix(monkeypatch):
    monkeypatch.setattr(checks, "_usable_cpus", lambda: 1)
    with pytest.raises(checks.SetupWarning, match="gives the course 1 CPU"):
        checks._cpu()
    monkeypatch.setattr(checks, "_usable_cpus", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(checks.SetupWarning, match=r"1 thread of 4 CPUs \(OMP_NUM_THREADS=1 is set\).*set_num_threads\(4\)"):
        checks._cpu()
    monkeypatch.setattr(checks, "_free_memory", lambda: 1024**3)
    with pytest.raises(checks.SetupWarning, match="only 1.0 GB of memory free .* close other programs"):
        checks._memory()
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: Usage(10, 9, int(0.5 * 1024**3)))
    with pytest.raises(checks.SetupWarning, match="only 0.5 GB free on the disk .* free some space"):
        checks._disk()


class FakeJupyter(http.server.BaseHTTPRequestHandler):
    """Answers like a Jupyter server: its kernels, and the JupyterLab page with its extensions."""
    kernels, extensions, disabled = [], [], []

    def do_GET(self):  # noqa: N802 (http.server's name)
        assert self.headers["Authorization"] == "token t0k"
        if self.path == "/api/kernels":
            body = json.dumps(self.kernels)
        else:
            config = {"federated_extensions": [{"name": n} for n in self.extensions],
                      "disabledExtensions": self.disabled}
            body = f'<script id="jupyter-config-data" type="application/json">{json.dumps(config)}</script>'
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_lab(tmp_path, monkeypatch):
    """A JupyterLab that runs this 'kernel' (id abc), found the way lesson 00 finds it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeJupyter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    (tmp_path / "jpserver-1.json").write_text(json.dumps({"url": url, "token": "t0k", "pid": 1}))
    (tmp_path / "jpserver-2.json").write_text(json.dumps({"url": "http://127.0.0.1:9/", "token": "x"}))  # stale
    import ipykernel.connect
    import jupyter_core.paths

    monkeypatch.setattr(ipykernel.connect, "get_connection_file", lambda: str(tmp_path / "kernel-abc.json"))
    monkeypatch.setattr(jupyter_core.paths, "jupyter_runtime_dir", lambda: str(tmp_path))
    FakeJupyter.kernels = [{"id": "zzz", "name": "python3"}, {"id": "abc", "name": "slm-course"}]
    FakeJupyter.extensions, FakeJupyter.disabled = ["@jupyter-widgets/jupyterlab-manager"], []
    checks.jupyter_server.cache_clear()
    yield url
    checks.jupyter_server.cache_clear()
    server.shutdown()


def test_widgets_are_checked_with_the_jupyterlab_that_runs_the_kernel(fake_lab):
    assert checks.jupyter_server()["kernel_name"] == "slm-course"
    assert checks._widgets().endswith(f"the JupyterLab at {fake_lab} loads the widget extension")
    FakeJupyter.disabled = ["@jupyter-widgets/jupyterlab-manager"]
    with pytest.raises(RuntimeError, match="widget extension disabled.*labextension enable"):
        checks._widgets()
    FakeJupyter.extensions = ["jupyterlab_pygments"]
    with pytest.raises(RuntimeError, match="has no widget extension, so sliders .* start the course's own: `make lab`"):
        checks._widgets()


def test_outside_jupyterlab_the_widget_line_says_it_could_not_ask(monkeypatch):
    monkeypatch.setattr(checks, "jupyter_server", lambda: None)
    assert "no JupyterLab runs this kernel to ask" in checks._widgets()


def test_lesson_00_shows_each_levels_device(capsys):
    rows = checks.device_plan("auto")
    assert [r["device"] for r in rows] == ["cpu"] * 5
    assert [r["parameters"] for r in rows] == sorted(r["parameters"] for r in rows)
    checks.print_device_plan("cpu")
    out = capsys.readouterr().out
    assert "5 large" in out and "you asked for device='cpu'" in out
