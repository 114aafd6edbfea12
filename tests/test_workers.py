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


def test_a_stopped_run_stops_the_runs_after_it(monkeypatch, tiny_config):
    """train() turns SIGTERM/Ctrl-C into an interrupted run; the sweep must then stop, not train the next."""
    from slmlib import sweep
    from slmlib.history import History

    def interrupted(cfg, **kw):
        return History(config=cfg.to_dict(), status="interrupted")

    monkeypatch.setattr("slmlib.train.train", interrupted)
    with pytest.raises(KeyboardInterrupt, match="finished runs are kept"):
        sweep.train_many([tiny_config.replace(seed=s) for s in (1, 2)], jobs=1, progress=False, runs_dir=None)


def test_sigterm_stops_the_course_as_ctrl_c_does():
    from slmlib.tooling.course import _sigterm_as_ctrl_c

    with pytest.raises(KeyboardInterrupt):
        with _sigterm_as_ctrl_c():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is not None
