"""Keep freed memory for the next training step: glibc's allocator, on Linux.

glibc hands every large block (over 128 KB by default: the logits and their gradients are megabytes)
straight back to the system when it is freed, and at the next step gets it again, as fresh pages
the kernel must zero. A training step of these small models spent 30-40% of its time there.
Raising the thresholds keeps such blocks in the process: measured on one core, a step of
ultra-tiny's model 61 -> 43 ms of CPU, tiny's 88 -> 70 (same losses: where a tensor lives does not
change its values). Elsewhere (macOS, Windows, musl) this does nothing.
"""
from __future__ import annotations

import sys

MMAP_THRESHOLD = 256 << 20  # blocks up to 256 MB come from the heap and go back to it
TRIM_THRESHOLD = 512 << 20  # the heap keeps up to 512 MB of free memory before giving it back
_done = False


def keep_freed_blocks() -> bool:
    """Set glibc's thresholds for this process (once); True if they were set."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
