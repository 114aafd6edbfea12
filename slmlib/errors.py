"""The one error type for anything a user can fix (a setting, a file, a command-line argument).

Every such error derives from `CourseError` and its message names the input and the fix, in
one line. The command line and the widgets catch `CourseError` once and show the message;
anything else is a bug and keeps its traceback. This module imports nothing from slmlib, so
every module can use it.
"""
from __future__ import annotations

import math
import numbers
import re


class CourseError(Exception):
    """Something the user can fix; the message says what and how."""


class UsageError(CourseError, ValueError):
    """A bad argument: a wrong value, or a combination that makes no sense."""


class WriteError(CourseError, OSError):
    """A file that cannot be written (a folder in the way, no permission, a full disk): names it.

    Also an OSError (with the original errno and strerror), so code that falls back on an OSError
    (a cache in a read-only folder, a model saved elsewhere) still does.
    """

    def __init__(self, path, error: OSError):
        if isinstance(error, IsADirectoryError):
            why, fix = "a folder of that name is in the way", "give a file name, not a folder"
        elif isinstance(error, (FileExistsError, NotADirectoryError)):
            why, fix = "a file is in the way of its folder", "choose another folder"
        else:
            why, fix = error.strerror or str(error), "choose a place you can write to (or free some space)"
        super().__init__(f"cannot write {path}: {why}; {fix}")
        self.errno, self.strerror, self.filename = error.errno, error.strerror, str(path)

    def __str__(self) -> str:
        return self.args[0]


def first_sentences(text: str, limit: int = 240) -> str:
    """The first line of a library's message, cut only at a sentence end (never mid-sentence).

    Long messages (PyTorch's run to a paragraph) are shortened to the sentences that fit in
    `limit` characters; if even the first sentence is longer, it is kept whole.
    """
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    if len(line) <= limit:
        return line
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", line)]
    fitting = [e for e in ends if e <= limit]
    return line[: fitting[-1]] if fitting else line[: ends[0]] if ends else line


def as_sentence(text: str) -> str:
    """text ending in a full stop, ready to be followed by another sentence."""
    text = str(text).strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def is_whole_number(value) -> bool:
    """An int that is not a bool (True is an int in Python, but `max_iters=True` is a mistake)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real_number(value) -> bool:
    """An int or float (not a bool) that is finite: not nan, not inf."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
