"""nbgrader: the source `python -m slmlib exercises nbgrader DIR` writes, and a round trip through nbgrader.

The round trip needs nbgrader, which the course itself does not (requirements-nbgrader.txt says why): its
set-up installs it into this venv with pip, or skips the test with the reason.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from slmlib import exercises as ex
from slmlib.__main__ import main
from slmlib.tooling.nbgrader_export import nbgrader_notebook, write_nbgrader_source

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = "ex02_causal_mask"  # no training: the quickest to run twice under nbgrader


def _solutions():
    return sorted(ex.SOLUTIONS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", _solutions(), ids=lambda p: p.stem)
def test_each_solution_region_is_a_solution_cell_and_each_check_a_locked_grade_cell(path):
    """Catches what nbgrader 0.9.6 refused ("Solution region detected in a non-solution cell") or scored 0."""
    solution = nbformat.read(path, as_version=4)
    nb = nbgrader_notebook(solution, path.stem)
    checks = [c for c in nb.cells if ex.is_check_cell(c)]
    answers = [c for c in nb.cells if c.cell_type == "code" and ex.BEGIN in c.source]
    assert checks and answers
    for cell in checks:
        meta = cell.metadata["nbgrader"]
        assert (meta["grade"], meta["locked"], meta["solution"], meta["points"]) == (True, True, False, 1)
    for cell in answers:
        meta = cell.metadata["nbgrader"]
        assert (meta["grade"], meta["locked"], meta["solution"]) == (False, False, True)
        assert "points" not in meta
    marked = [c for c in nb.cells if "nbgrader" in c.metadata]
    assert len(marked) == len(checks) + len(answers), "no other cell is locked or graded"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in marked]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids), ids
    assert all(c.metadata["nbgrader"]["schema_version"] == 3 for c in marked)
    assert nb.metadata["kernelspec"]["name"] == ex.KERNELSPEC["name"]
    assert nb.metadata["slm_course"] == {"exercise": path.stem}
    # What nbgrader hands out (solution regions cut) is what exercises/ holds, cell for cell.
    cut = [ex.strip_solutions(c.source) if c.cell_type == "code" else c.source for c in nb.cells]
    assert cut == [c.source for c in ex.make_exercise(solution, path.stem).cells]
    assert solution == nbformat.read(path, as_version=4), "the solution notebook is not modified"


def test_the_command_writes_one_assignment_per_exercise_and_keeps_an_edited_config(tmp_path, capsys):
    dest = tmp_path / "course"
    assert main(["exercises", "nbgrader", str(dest)]) == 0
    assert "nbgrader source:" in capsys.readouterr().out
    for path in _solutions():
        assert (dest / "source" / path.stem / path.name).is_file()
    config = dest / "nbgrader_config.py"
    assert "c.Execute.timeout = 600" in config.read_text(encoding="utf-8")
    config.write_text("c = get_config()\n# mine\n", encoding="utf-8")
    assert main(["exercises", "nbgrader", str(dest)]) == 0
    assert config.read_text(encoding="utf-8") == "c = get_config()\n# mine\n", "the instructor's config is kept"
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    for argv, message in ((["exercises", "nbgrader"], "give the folder to write"),
                          (["exercises", "nbgrader", str(tmp_path / "a-file")], "is a file"),
                          (["exercises", "build", str(dest)], "takes no folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


# ---------------------------------------------------------------- the round trip through nbgrader

def _nbgrader_installed() -> str:
    """"" when nbgrader can be run from this venv (installed now if need be), else why not."""
    check = [sys.executable, "-c", "import nbgrader"]
    if subprocess.run(check, capture_output=True).returncode == 0:
        return ""
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r",
                               str(ROOT / "requirements-nbgrader.txt")], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "pip install -r requirements-nbgrader.txt took over 10 minutes"
    if done.returncode != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"pip install -r requirements-nbgrader.txt failed: {lines[-1] if lines else done.returncode}"
    return ""


def _nbgrader(course: Path, *args: str) -> None:
    # nbgrader runs `alembic` by name, so the venv's bin goes on PATH; smoke mode as `grade` uses.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "SLM_SMOKE": "1"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_nbgrader_scores_the_solution_full_and_an_untouched_exercise_zero(tmp_path):
    why = _nbgrader_installed()
    if why:
        print(f"nbgrader round trip skipped: {why}")
        pytest.skip(why)
    course = tmp_path / "course"
    write_nbgrader_source(course)
    _nbgrader(course, "generate_assignment", EXERCISE, "--force")
    released = nbformat.read(course / "release" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)
    assert ex.BEGIN not in nbformat.writes(released), "nbgrader cut every answer"
    source = nbformat.read(course / "source" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)
    done = nbformat.from_dict(released)  # the released notebook with each answer cell filled in
    for mine, answer in zip(done.cells, source.cells):
        if mine.metadata.get("nbgrader", {}).get("solution"):
            mine.source = answer.source
    for student, nb in (("solved", done), ("untouched", released)):
        folder = course / "submitted" / student / EXERCISE
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{EXERCISE}.ipynb")
    _nbgrader(course, "autograde", EXERCISE, "--create", "--force")
    read = ("import json; from nbgrader.api import Gradebook\n"
            "with Gradebook('sqlite:///gradebook.db') as gb:\n"
            f"    print(json.dumps({{s: [gb.find_submission({EXERCISE!r}, s).score, "
            f"gb.find_submission({EXERCISE!r}, s).max_score] for s in ('solved', 'untouched')}}))")
    scores = json.loads(subprocess.run([sys.executable, "-c", read], cwd=course, capture_output=True, text=True,
                                       check=True).stdout)
    checks = sum(ex.is_check_cell(c) for c in source.cells)
    assert scores == {"solved": [checks, checks], "untouched": [0, checks]}, scores
