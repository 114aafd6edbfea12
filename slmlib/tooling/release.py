"""The student release: the folder a student gets, built by `python -m slmlib release DIR`.

It holds the lessons, the exercises (generated from `solutions/`, answers removed), the data, the
`slmlib` package and the set-up files, and never `solutions/`. Before it says "done" it reads back
every text file it wrote and looks for the answers: a line of any solution region in an exercise,
or a whole solution region anywhere. Anything found stops the build and the folder is removed.

With with_runs=True it also carries the instructor's finished small runs (lessons 04 and 08: the
remedies and the controlled experiment, JSON records in outputs/runs/): a student's lessons then
load those runs instead of training them, and train only the ladder (README, "A teacher's guide").
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from .. import paths
from ..errors import UsageError
from ..exercises import BEGIN, END

FILES = ("README.md", "Makefile", "setup_course.py", "requirements.txt", "environment.yml", "pyproject.toml")
FOLDERS = ("notebooks", "exercises", "data", "slmlib")
EMPTY = ("models", "outputs")  # kept, empty, so the lessons find them
SKIP_NAMES = {"__pycache__", ".ipynb_checkpoints", "tinystories"}  # data/tinystories: a user's download
SKIP_SUFFIXES = {".pyc", ".pyo"}
MIN_LINE = 8  # shorter solution lines (`else:`, `pass`) say nothing about the answer

NOTE = """> **Student release.** This folder is the course without its solutions. `make lab` sets
> everything up and opens JupyterLab on the course folder: the lessons are in `notebooks/`, the
> exercises in `exercises/` (each checks your answer after every task). The instructor's commands
> below (`make exercises`, `make test`, grading) need the full course repository.

"""


class ReleaseLeakError(UsageError):
    """Solution text found in the release."""


def solution_regions(solutions_dir: Path) -> dict[str, list[str]]:
    """{notebook name: [the text of each BEGIN/END SOLUTION region, dedented line by line]}."""
    regions: dict[str, list[str]] = {}
    for path in sorted(Path(solutions_dir).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        found = regions.setdefault(path.stem, [])
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            inside = None
            for line in cell.source.splitlines():
                if line.strip() == BEGIN:
                    inside = []
                elif line.strip() == END and inside is not None:
                    found.append("\n".join(inside))
                    inside = None
                elif inside is not None and line.strip():
                    inside.append(line.strip())
    return regions


def solution_lines(regions: dict[str, list[str]]) -> set[str]:
    """Every line of every region long enough to give something away."""
    return {line for texts in regions.values() for text in texts for line in text.splitlines()
            if len(line) >= MIN_LINE}


def notebook_sources(path: Path) -> str:
    """A notebook's cell sources and text outputs, one after another (what a student reads)."""
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") if isinstance(out.get("text", ""), str) else "")
            data = out.get("data", {})
            parts.append(data.get("text/plain", "") if isinstance(data.get("text/plain", ""), str) else "")
    return "\n".join(parts)


def readable_text(path: Path) -> str | None:
    if path.suffix == ".ipynb":
        return notebook_sources(path)
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary (the tokenizer file is text, but a user's extra file may not be)


def _stripped_lines(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def find_leaks(folder: Path, solutions_dir: Path) -> list[str]:
    """Where solution text appears under folder: 'path: line' for each hit.

    In an exercise notebook, any solution line (of MIN_LINE characters or more) is a leak. Elsewhere
    (lessons, library, README) short lines such as `ax.legend()` are ordinary code, so only a whole
    solution region of two lines or more counts, compared line by line without indentation.
    """
    regions = solution_regions(solutions_dir)
    lines = solution_lines(regions)
    blocks = {text for texts in regions.values() for text in texts if text.count("\n") >= 1}
    leaks = []
    folder = Path(folder)
    if (folder / "solutions").exists():
        leaks.append("solutions/: the folder itself")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = readable_text(path)
        if text is None:
            continue
        rel = path.relative_to(folder).as_posix()
        if rel.startswith("exercises/"):
            leaks += [f"{rel}: {line}" for line in sorted(lines) if line in text]
        flat = _stripped_lines(text)
        leaks += [f"{rel}: a whole solution region starting {block.splitlines()[0]!r}"
                  for block in sorted(blocks) if block in flat]
    return leaks


def _wanted(root: Path) -> list[Path]:
    files = [root / name for name in FILES if (root / name).is_file()]
    for name in FOLDERS:
        for path in sorted((root / name).rglob("*")):
            rel = path.relative_to(root)
            if (path.is_file() and not any(part in SKIP_NAMES or part.startswith(".") for part in rel.parts)
                    and path.suffix not in SKIP_SUFFIXES):
                files.append(path)
    return files


class MissingRunsError(UsageError):
    """with_runs asked for the instructor's small runs, and some are not in outputs/runs/ yet."""


def shared_runs(runs_dir: Path | None = None) -> list[Path]:
    """The kept record of every small run lessons 04 and 08 use, from runs_dir (outputs/runs/).

    Only finished runs with the current settings, data and training code count (sweep.load_run
    checks each); any other is missing, and the error says how to make it.
    """
    from ..sweep import load_run, run_file
    from .course import runs_beside_the_lessons

    runs_dir = Path(runs_dir) if runs_dir is not None else paths.outputs_dir() / "runs"
    configs = runs_beside_the_lessons()
    missing = [c for c in configs if load_run(c, runs_dir) is None]
    if missing:
        raise MissingRunsError(
            f"{len(missing)} of the {len(configs)} small runs of lessons 04 and 08 are not finished in {runs_dir} "
            f"(e.g. {missing[0].stories:,} stories, seed {missing[0].seed}); run `make course` (or lessons 04 and "
            "08) first, or build the release without --with-runs")
    return [run_file(c, runs_dir) for c in configs]


def build_release(dest: Path, root: Path | None = None, force: bool = False, with_runs: bool = False,
                  runs_dir: Path | None = None) -> list[Path]:
    """Write the student release into dest (new or empty; force=True replaces an earlier release).

    Refuses when exercises/ is out of date with solutions/ (it would ship old exercises) and when
    any solution text is found in what it wrote; returns the files written. with_runs: also copy
    the finished small runs of lessons 04 and 08 from runs_dir (default outputs/runs/) into the
    release's outputs/runs/, so a student's lessons load them (refused when any is missing).
    """
    from ..exercises import build_exercises

    root, dest = paths.root(root).resolve(), Path(dest).resolve()
    if dest == root or dest in root.parents or any(dest == root / n or root / n in dest.parents
                                                   for n in (*FOLDERS, "solutions", "models", "outputs")):
        raise UsageError(f"{dest}: the release needs a folder of its own, outside the course's own folders "
                         "(e.g. build/student-release)")
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise UsageError(f"{dest} is not empty; choose a new folder or add --force to replace it")
        if not (dest / "exercises").is_dir() or (dest / ".git").exists():
            raise UsageError(f"{dest} is not empty and does not look like an earlier release; "
                             "not replacing it, even with --force")
        shutil.rmtree(dest)
    stale = build_exercises(check=True, solutions_dir=root / "solutions", exercises_dir=root / "exercises")
    if stale:
        raise UsageError(f"exercises/ is out of date with solutions/ ({', '.join(stale)}); "
                         "run `python -m slmlib exercises build` first")
    runs = shared_runs(runs_dir) if with_runs else []  # before writing anything: a refusal leaves nothing
    written = []
    try:
        for path in runs:
            target = dest / "outputs" / "runs" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            written.append(target)
        for path in _wanted(root):
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.name == "README.md" and path.parent == root:
                target.write_text(NOTE + path.read_text(encoding="utf-8"), encoding="utf-8")
            else:
                shutil.copy2(path, target)
            written.append(target)
        for name in EMPTY:
            (dest / name).mkdir(parents=True, exist_ok=True)
            (dest / name / ".gitkeep").touch()
        leaks = find_leaks(dest, root / "solutions")
        if leaks:
            raise ReleaseLeakError(f"solution text found in the release, so it was removed ({len(leaks)} "
                                   "place(s)):\n  " + "\n  ".join(leaks[:20]))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return written
