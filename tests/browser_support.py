"""Helpers for tests/test_browser.py: a throw-away JupyterLab server and a student's clicks in it.

Nothing here touches the user's Jupyter settings, models/ or outputs/ (apart from the
screenshots in outputs/browser/): Lab gets its own config, data, runtime and workspace folders,
and the notebooks it runs read SLM_MODELS_DIR / SLM_OUTPUTS_DIR from a temp folder.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "outputs" / "browser"
INSTALL_SCRIPT = ROOT / "scripts" / "install_browser.sh"
CHROMIUM = Path(os.environ.get("SLM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--disable-dev-shm-usage", "--no-default-browser-check"]
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"

# What a widget looks like when JupyterLab cannot render it: its Python repr as plain text.
WIDGET_TEXT_REPRS = ("IProgress not found", "IntSlider(", "FloatSlider(", "FloatProgress(", "HBox(children=",
                     "VBox(children=", "Button(description=")
TEXT_BAR = re.compile(r"\d+%\|[^|\n]*\|\s*\d+/\d+")


class InstallImpossible(RuntimeError):
    """This machine cannot get Chromium (no apt-get, not root): the only reason to skip."""


def install_browser(python: str = sys.executable) -> None:
    """scripts/install_browser.sh: Debian's chromium (apt-get) and the playwright package."""
    r = subprocess.run(["bash", str(INSTALL_SCRIPT), python], capture_output=True, text=True, timeout=900)
    if r.returncode == 2:
        raise InstallImpossible(r.stderr.strip())
    if r.returncode != 0:
        raise RuntimeError(f"{INSTALL_SCRIPT.name} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group started with start_new_session=True, then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def start_training(models_dir: Path, outputs_dir: Path, log: Path, max_iters: int = 5) -> subprocess.Popen:
    """Train ultra_tiny and tiny for a few steps (the playground needs saved models), in the background."""
    env = {**os.environ, "SLM_MODELS_DIR": str(models_dir), "SLM_OUTPUTS_DIR": str(outputs_dir),
           "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "slmlib", "train", "--level", "ultra_tiny,tiny",
           "--max-iters", str(max_iters), "--out", str(models_dir)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


class LabServer:
    """`jupyter lab` from the project's venv on a random loopback port, with its own settings."""

    def __init__(self, tmp: Path, models_dir: Path, outputs_dir: Path, disable_widgets: bool = False):
        self.tmp = tmp
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "jupyter-server.log"
        config, data, runtime = tmp / "config", tmp / "data", tmp / "runtime"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MPLBACKEND", "PYTEST_CURRENT_TEST", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH")}
        self.env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(data), JUPYTER_RUNTIME_DIR=str(runtime),
                        JUPYTER_PLATFORM_DIRS="0", SLM_SMOKE="1", SLM_MODELS_DIR=str(models_dir),
                        SLM_OUTPUTS_DIR=str(outputs_dir), PYTHONUNBUFFERED="1")
        self._write_settings(config / "lab" / "user-settings")
        self.jupyter = str(Path(sys.executable).with_name("jupyter"))
        if disable_widgets:  # the negative check: a Lab without the widget manager
            subprocess.run([self.jupyter, "labextension", "disable", "--level=user", WIDGET_MANAGER],
                           env=self.env, check=True, capture_output=True)
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def _write_settings(user_settings: Path) -> None:
        """No news or update checks, every cell in the DOM (no virtual scrolling), and no autosave:
        Lab serves the real lessons, and autosave wrote a test run's outputs into notebooks/ once."""
        settings = {
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"checkForUpdates": False, "fetchNews": "false"},
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
            "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
        }
        for rel, value in settings.items():
            p = user_settings / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(value))

    def start(self, timeout: float = 90.0) -> None:
        cmd = [self.jupyter, "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={ROOT}", "--ServerApp.open_browser=False", "--ServerApp.allow_root=True",
               "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}",
               f"--LabApp.user_settings_dir={self.tmp / 'config' / 'lab' / 'user-settings'}"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log_path.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer on {self.base} within {timeout:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, timeout: float = 5.0):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def url(self, path: str) -> str:
        # ?reset: start from an empty workspace, so an earlier test's notebook is not reopened.
        return f"{self.base}/lab/tree/{path}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        try:
            for s in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{s['id']}", timeout=15)
            for k in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout=15)
        except (urllib.error.URLError, OSError):
            pass

    def stop(self) -> None:
        if self.proc is None:
            return
        self.shutdown_kernels()
        try:
            self.api("POST", "/api/shutdown", timeout=5)
            self.proc.wait(timeout=15)
        except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
            pass
        stop_process_group(self.proc)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


# ---------------------------------------------------------------- in the page (playwright)

_CELLS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')].map(c => ({
    prompt: (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
    error: [...c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"],'
                                  + ' .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')]
           .map(e => e.innerText).join('\\n'),
}))"""


def open_notebook(page, lab: LabServer, path: str, timeout_ms: int = 60_000) -> None:
    """Open the notebook in Lab and wait until its kernel is idle."""
    page.goto(lab.url(path), wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=timeout_ms)
    # "<kernel name> | Idle" in the status bar: the kernel is started and connected. Running cells
    # before that makes Lab ask which kernel to start.
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\S \| Idle$")).first.wait_for(timeout=timeout_ms)
    prompts = [c["prompt"] for c in page.evaluate(_CELLS_JS)]
    assert prompts and all(re.fullmatch(r"\[\s*\]:", p.strip()) for p in prompts), (
        f"{path} should be saved without execution counts so the test can tell when it has run; prompts: {prompts}")


def run_all_cells(page, timeout: float = 120.0) -> None:
    """Run → Run All Cells, as a student would, and wait until every code cell has run."""
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu .lm-Menu-item", has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))).click()
    deadline = time.monotonic() + timeout
    cells = []
    while time.monotonic() < deadline:
        cells = page.evaluate(_CELLS_JS)
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            raise AssertionError(f"JupyterLab opened a dialog while running the cells: {dialog.first.inner_text()!r}")
        errors = [c["error"] for c in cells if c["error"]]
        if errors:
            raise AssertionError("a cell raised an error:\n" + errors[0][-3000:])
        if all(re.fullmatch(r"\[\d+\]:", c["prompt"].strip()) for c in cells):
            page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(timeout=30_000)
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"Run All did not finish in {timeout:.0f} s; prompts: {[c['prompt'] for c in cells]}")


def output_texts(page) -> str:
    """All the text shown in the open notebook's output areas."""
    return "\n".join(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").all_inner_texts())


def assert_no_widget_text_reprs(page, where: str) -> None:
    text = output_texts(page)
    found = [r for r in WIDGET_TEXT_REPRS if r in text]
    # tqdm's widget falls back to a frozen text bar ("desc:   0%|          | 0/30 [...]"); a working
    # widget shows the description and the count in separate HTML boxes, with no "|" bar.
    found += [f"text progress bar {m.group(0)!r}" for m in TEXT_BAR.finditer(text)]
    assert not found, (
        f"{where}: widgets are shown as plain text ({', '.join(found)}): JupyterLab is missing its widget "
        f"extension ({WIDGET_MANAGER} from jupyterlab_widgets). Output text:\n{text[:1500]}")


def wait_until(predicate, timeout: float, message, interval: float = 0.2):
    """Poll predicate() until truthy; fail with message() (a string or a callable) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


def screenshot(page, name: str, locator=None) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if locator is not None:  # scroll it to the top of the notebook panel
        locator.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(100)
    page.screenshot(path=str(path))
    return path
