"""Worker processes that end with the process that started them.

A pool worker (the sweep's runs, the course's worker beside the lessons, a grading worker) is a
process of its own: if its parent is killed, with SIGTERM or SIGKILL, it would otherwise train or
grade on alone, holding a core for nobody. Each worker calls end_with_parent() first.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time


def end_with_parent() -> None:
    """Send this process SIGTERM when its parent dies (training then stops at the next step)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the line above
                os.kill(os.getpid(), signal.SIGTERM)
            return
    if sys.platform == "win32":  # a killed parent's pipes break; the worker's next send ends it
        return

    def watch() -> None:  # macOS and others: an orphan is adopted by another process
        while os.getppid() == parent:
            time.sleep(2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
