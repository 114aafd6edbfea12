"""Progress bars: one helper for every long loop in the course.

In a live notebook tqdm draws a widget, which a saved notebook cannot replay: papermill's copies
showed "0%| | 0/1400" for a finished run. So where nobody watches (SLM_BATCH=1, set by the course
runner for the kernels it starts) the bar is plain text on stderr, redrawn at most every 20 s:
the saved copy ends on its last line, "100%| ... | 1400/1400", at a few hundred bytes.
"""
from __future__ import annotations

import os
import sys

BATCH = "SLM_BATCH"


def progress_bar(**kw):
    """tqdm(**kw): a widget in a live notebook, plain text in a batch run or a terminal."""
    if os.environ.get(BATCH) == "1":
        from tqdm.std import tqdm

        kw = {k: v for k, v in kw.items() if k not in ("mininterval", "delay", "dynamic_ncols")}
        return tqdm(file=sys.stderr, mininterval=20, ncols=100, **kw)
    from tqdm.auto import tqdm

    return tqdm(**kw)
