"""Running a student's kernel in a bubblewrap sandbox (Linux), for grading.

bubblewrap (`bwrap`, Debian/Ubuntu package `bubblewrap`) builds the sandbox from Linux namespaces;
nothing here re-implements it. Inside a sandbox a kernel sees:
- no network (a namespace with only loopback): it talks to the grader over Unix sockets in a folder
  bound in for it (jupyter_client's `ipc` transport);
- the system's programs and the Python installation, read-only; the course read-only, with
  `solutions/` and the grader's own folders (submissions, grades, scratch) hidden; no home folder;
- its own working copy, its scratch outputs/models folders and a private /tmp, writable;
- a clean environment: only the variables the grader sets;
- its own process namespace: when the kernel ends, every process it started is killed with it.
The grader caps the memory of all the sandbox's processes together (see `MemoryWatch`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from functools import lru_cache
from pathlib import Path

from jupyter_client import AsyncKernelManager

from ..paths import ROOT

# What a Python kernel needs from /etc: the loader's cache, users, time zone, certificates, fonts.
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime",
       "hosts", "ssl", "ca-certificates", "fonts", "alternatives", "mime.types")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")


@lru_cache(maxsize=1)
def probe() -> tuple[str, str]:
    """(path of a working bwrap or "", why there is none). Tried once: bwrap may exist but be refused
    (no user namespaces in a container, or an AppArmor rule)."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "", "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if not sys.platform.startswith("linux"):
        return "", "the sandbox needs Linux"
    try:
        done = subprocess.run([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "", f"bwrap could not run ({e})"
    if done.returncode:
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return "", f"bwrap cannot create a sandbox here ({why})"
    return bwrap, ""


def _python_dirs() -> list[Path]:
    """The folders the kernel's Python runs from (the venv, the base installation, site-packages)."""
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    dirs |= {Path(p) for p in sys.path if p and Path(p).is_dir()}
    return sorted(d.resolve() for d in dirs if d.is_dir() and d.resolve() != Path("/"))


def sandbox_args(bwrap: str, work: Path, writable: list[Path], hidden: list[Path], env: dict[str, str],
                 cwd: Path | None = None) -> list[str]:
    """The bwrap command line that runs a command in `cwd` with only `work` and `writable` writable."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp"]
    for path in SYSTEM:
        if Path(path).exists():
            args += ["--ro-bind", path, path] if not Path(path).is_symlink() else ["--symlink", os.readlink(path), path]
    for name in ETC:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    bound = [*_python_dirs(), ROOT.resolve()]
    for path in bound:
        args += ["--ro-bind", str(path), str(path)]
    for path in hidden:  # inside what was bound above: a folder becomes empty, a file empty
        path = path.resolve()
        if not any(path == b or b in path.parents for b in bound):
            continue  # not visible anyway
        if path.is_dir():
            args += ["--tmpfs", str(path)]
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    for path in [work, *writable]:
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(cwd or work), "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--"]


class SandboxedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernel command runs inside `prefix` (a bwrap command line).

    Async, as nbclient expects: its client waits for messages without blocking nbclient's event loop,
    so a cell's timeout, the kernel's death and SIGTERM are noticed while a cell runs. (A blocking
    client waits for output forever: a looping or dead kernel was never stopped.)
    """

    prefix: list[str] = []

    def format_kernel_cmd(self, extra_arguments=None):
        return [*self.prefix, *super().format_kernel_cmd(extra_arguments)]


class MemoryWatch:
    """Kills a process and all its descendants when their resident memory together passes `limit_mb`.

    RLIMIT_AS caps each process alone; a notebook that starts eight worker processes would get eight
    times the cap. This thread polls (psutil) and records why it killed, for the grade's message.
    """

    def __init__(self, pid_of, limit_mb: int, interval: float = 0.25):
        self.pid_of, self.limit, self.interval = pid_of, limit_mb * 2**20, interval
        self.killed_at_mb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.limit:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            pid = self.pid_of()
            if not pid:
                continue
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            used = 0
            for p in tree:
                try:
                    used += p.memory_info().rss
                except psutil.Error:
                    pass
            if used > self.limit:
                self.killed_at_mb = used // 2**20
                kill_tree(pid)
                return


def kill_tree(pid) -> None:
    """Kill a process (a pid, or a psutil.Process taken while it ran) and every descendant it has
    (all at once, children first found). Killing a sandbox's outer bwrap kills all of it: its inner
    bwrap is the sandbox's init (`--unshare-pid`) and dies with it (`--die-with-parent`), and with the
    init every process in the sandbox."""
    import psutil

    try:
        root = pid if isinstance(pid, psutil.Process) else psutil.Process(pid)
        if not root.is_running():  # ended, and its pid perhaps reused: nothing of ours to kill
            return
        tree = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for p in tree:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(tree, timeout=5)
