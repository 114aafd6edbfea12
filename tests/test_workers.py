"""A worker ends with its parent, even when the parent is killed with SIGKILL."""
import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = r"""
import multiprocessing, sys, time
from slmlib.workers import end_with_parent

def child(path):
    end_with_parent()
    open(path, "w").write("started")
    time.sleep(120)

if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child, args=(sys.argv[1],))
    p.start()
    print(p.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGKILL on Windows")
def test_a_worker_ends_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    started = tmp_path / "started"
    parent = subprocess.Popen([sys.executable, str(script), str(started)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    for _ in range(200):
        if started.exists():
            break
        time.sleep(0.1)
    assert started.exists(), "the worker never started"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its killed parent")
