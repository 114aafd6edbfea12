"""Exercises: built from solutions/, solutions run green, exercises stop at their first task, grading.

The notebooks run once per session, in the `exercise_runs` fixture of tests/conftest.py (the solutions with
test_exercise_answers.py's wrong-answer probes in them, which print and change nothing of their own).
"""
import csv
import hashlib
import re
from pathlib import Path

import nbformat
import pytest

from slmlib import exercises as ex
from slmlib.__main__ import main

SOLUTIONS = sorted(ex.SOLUTIONS_DIR.glob("*.ipynb"))
NAMES = [p.name for p in SOLUTIONS]
LESSON_NUMBERS = range(11)  # notebooks/00_setup_check ... 10_next_steps
PARAMETERS_LINE = 'smoke = os.environ.get("SLM_SMOKE", "0") == "1"'


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"
            and "injected-parameters" not in c.metadata.get("tags", [])]


# ---------------------------------------------------------------- one source

def test_committed_exercises_are_built_from_solutions(tmp_path):
    assert ex.build_exercises(check=True) == [], "run `python -m slmlib exercises build`"
    assert ex.build_exercises(exercises_dir=tmp_path) == NAMES
    for name in NAMES:
        assert (tmp_path / name).read_bytes() == (ex.EXERCISES_DIR / name).read_bytes(), name
    assert ex.build_exercises(exercises_dir=tmp_path) == [], "a second build changes nothing"
    assert main(["exercises", "build", "--check"]) == 0


def test_build_reports_and_repairs_stale_exercises(tmp_path):
    ex.build_exercises(exercises_dir=tmp_path)
    (tmp_path / NAMES[0]).write_text("edited by hand", encoding="utf-8")
    (tmp_path / "ex99_gone.ipynb").write_text("{}", encoding="utf-8")
    assert ex.build_exercises(check=True, exercises_dir=tmp_path) == [NAMES[0], "ex99_gone.ipynb"]
    assert (tmp_path / "ex99_gone.ipynb").exists(), "check mode writes nothing"
    assert ex.build_exercises(exercises_dir=tmp_path) == [NAMES[0], "ex99_gone.ipynb"]
    assert not (tmp_path / "ex99_gone.ipynb").exists()
    assert ex.build_exercises(check=True, exercises_dir=tmp_path) == []


def test_strip_solutions_keeps_indentation_and_code_around():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint(f(1))"
    assert ex.strip_solutions(src) == ("def f(x):\n    y = 1\n    # YOUR CODE HERE\n"
                                       "    raise NotImplementedError()\n\nprint(f(1))")
    assert ex.strip_solutions("a = 1") == "a = 1"
    for bad in ("### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION",
                "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"):
        with pytest.raises(ex.SolutionMarkerError):
            ex.strip_solutions(bad)


def test_there_are_enough_exercises_numbered_like_the_lessons():
    assert len(SOLUTIONS) >= 8
    for p in SOLUTIONS:
        m = re.fullmatch(r"ex(\d\d)b?_[a-z0-9_]+\.ipynb", p.name)
        assert m and int(m.group(1)) in LESSON_NUMBERS, p.name


@pytest.mark.parametrize("path", SOLUTIONS, ids=NAMES)
def test_solution_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec == ex.KERNELSPEC and "widgets" not in nb.metadata
    cells = code_cells(nb)
    assert all(not c.outputs and c.execution_count is None for c in cells), "commit solutions without outputs"
    assert "import" in cells[0].source and "parameters" not in cells[0].metadata.get("tags", [])
    assert cells[1].metadata.get("tags") == ["parameters"] and PARAMETERS_LINE in cells[1].source
    checks = [i for i, c in enumerate(cells) if ex.is_check_cell(c)]
    assert len(checks) >= 2, "at least two tasks"
    for task, i in enumerate(checks, 1):
        assert f'print("✓ Task {task} passed")' in cells[i].source
        assert "assert " in cells[i].source and "Hint:" in cells[i].source
        assert ex.BEGIN in cells[i - 1].source, f"task {task}: the cell before a check holds its solution"
        assert ex.BEGIN not in cells[i].source


# ---------------------------------------------------------------- running them

@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_solution_runs_green_in_smoke_mode(exercise_runs, name):
    out, futures = exercise_runs
    row = futures["solutions", name].result()
    assert row["status"] == "ok", row["error"]
    cells = code_cells(nbformat.read(out / "solutions" / name, as_version=4))
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in cells if ex.is_check_cell(c)]
    assert printed and all(f"✓ Task {i} passed" in text for i, text in enumerate(printed, 1)), printed


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_exercise_stops_at_its_first_task(exercise_runs, name):
    out, futures = exercise_runs
    row = futures["exercises", name].result()
    assert row["status"] == "failed", "an untouched exercise must not run through"
    cells = code_cells(nbformat.read(out / "exercises" / name, as_version=4))
    first_task = next(i for i, c in enumerate(cells) if ex.STUB[1] in c.source)
    errors = [(i, o) for i, c in enumerate(cells) for o in c.outputs if o.output_type == "error"]
    assert [(i, o.ename) for i, o in errors] == [(first_task, "NotImplementedError")], \
        [(i, o.ename, o.evalue) for i, o in errors]
    assert all(c.execution_count is not None for c in cells[: first_task + 1])


# ---------------------------------------------------------------- grading

def _hashes(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _class_of(subs):
    """alice: one complete notebook, one that is not JSON; bob: task 1 done, check 3 gutted; dave: loops
    forever; erin: crashes the kernel; frank: asks for 8 GiB (never touched), then finishes."""
    solution = nbformat.read(ex.SOLUTIONS_DIR / "ex02_causal_mask.ipynb", as_version=4)
    exercise = nbformat.read(ex.EXERCISES_DIR / "ex02_causal_mask.ipynb", as_version=4)
    tasks = [i for i, c in enumerate(exercise.cells) if c.cell_type == "code" and ex.STUB[1] in c.source]
    checks = [i for i, c in enumerate(exercise.cells) if ex.is_check_cell(c)]
    where = nbformat.v4.new_code_cell('import os\nprint("cwd:", os.getcwd())')
    done = nbformat.from_dict(exercise)
    for i in tasks:
        done.cells[i].source = solution.cells[i].source

    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / "ex01_tokens.ipynb").write_text('{"cells": [', encoding="utf-8")
    (subs / "alice" / "notes.txt").write_text("my notes", encoding="utf-8")
    alice = nbformat.from_dict(done)
    alice.cells.append(nbformat.v4.new_code_cell('import os\nprint("cwd:", os.getcwd(), sorted(os.listdir(".")))'))
    nbformat.write(alice, subs / "alice" / "ex02_causal_mask.ipynb")

    bob = nbformat.from_dict(exercise)
    bob.cells[tasks[0]].source = solution.cells[tasks[0]].source
    bob.cells[checks[2]].source = '# CHECK\nprint("✓ Task 3 passed")'
    bob.cells.append(where)
    nbformat.write(bob, subs / "bob.ipynb")

    dave = nbformat.from_dict(exercise)
    dave.cells[tasks[0]].source = "while True:\n    pass"
    (subs / "dave").mkdir()
    nbformat.write(dave, subs / "dave" / "ex02_causal_mask.ipynb")

    erin = nbformat.from_dict(done)
    erin.cells[tasks[1]].source = "import os\nos._exit(1)"
    nbformat.write(erin, subs / "erin.ipynb")

    frank = nbformat.from_dict(done)
    frank.cells.insert(tasks[0], nbformat.v4.new_code_cell("hog = torch.empty(8 * 2**30, dtype=torch.uint8)"))
    nbformat.write(frank, subs / "frank.ipynb")


@pytest.mark.slow
def test_grading_a_class(tmp_path, capsys):
    subs = tmp_path / "submissions"
    _class_of(subs)
    before = _hashes(subs)
    out = tmp_path / "report" / "grades.csv"
    args = ["grade", str(subs), "--out", str(out), "--timeout", "8", "--jobs", "2", "--memory-mb", "3072"]
    assert main(args) == 0
    assert _hashes(subs) == before, "submitted files must never change"
    printed = capsys.readouterr().out
    assert "found 6 notebook(s) from 5 student(s)" in printed and "alice/notes.txt (not a notebook)" in printed

    table = {(r["student"], r["exercise"]): r for r in csv.DictReader(out.open(encoding="utf-8"))}
    got = {k: (int(r["passed"]), int(r["total"])) for k, r in table.items()}
    assert got == {("alice", "ex01_tokens"): (0, 3), ("alice", "ex02_causal_mask"): (3, 3),
                   ("bob", "ex02_causal_mask"): (1, 3), ("dave", "ex02_causal_mask"): (0, 3),
                   ("erin", "ex02_causal_mask"): (1, 3), ("frank", "ex02_causal_mask"): (3, 3)}
    assert [r["notebook"] for r in table.values()] == ["alice/ex01_tokens.ipynb", "alice/ex02_causal_mask.ipynb",
                                                       "bob.ipynb", "dave/ex02_causal_mask.ipynb", "erin.ipynb",
                                                       "frank.ipynb"], "rows in submission order"
    assert table["alice", "ex02_causal_mask"]["error"] == ""
    assert "edited or deleted" in table["bob", "ex02_causal_mask"]["error"]
    assert "unreadable notebook" in table["alice", "ex01_tokens"]["error"]
    assert "timed out" in table["dave", "ex02_causal_mask"]["error"]
    assert float(table["dave", "ex02_causal_mask"]["seconds"]) >= 8
    assert "the kernel died in cell" in table["erin", "ex02_causal_mask"]["error"]
    assert "can't allocate memory" in table["frank", "ex02_causal_mask"]["error"]
    assert "at most 3072 MB" in table["frank", "ex02_causal_mask"]["error"]

    report = (tmp_path / "report" / "grades.md").read_text(encoding="utf-8")
    assert "| alice | 2 | 3 | 6 | 50% |" in report and "| bob | 1 | 1 | 3 | 33% |" in report
    assert "alice/ex01_tokens.ipynb: unreadable notebook" in report

    graded = tmp_path / "report" / "graded"
    alice = nbformat.read(graded / "alice" / "ex02_causal_mask.ipynb", as_version=4)
    cwd, listing = alice.cells[-1].outputs[0].text.split(" ", 2)[1:]
    assert subs not in Path(cwd).parents and Path(cwd).name == "alice", "runs in a copy of the student's folder"
    assert "'notes.txt'" in listing and "'ex01_tokens.ipynb'" in listing
    bob = nbformat.read(graded / "bob" / "bob.ipynb", as_version=4)
    assert "cwd: " in bob.cells[-1].outputs[0].text, "allow errors: cells after a failure still run"
    assert (graded / "dave" / "ex02_causal_mask.ipynb").is_file()
    assert not (graded / "alice" / "ex01_tokens.ipynb").exists()


def test_grade_command(tmp_path, capsys):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "erin.ipynb").write_text("not a notebook", encoding="utf-8")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "g.csv"), "--timeout", "5"]) == 0
    assert "unreadable notebook" in (tmp_path / "g.csv").read_text(encoding="utf-8")
    assert (tmp_path / "g.md").is_file()
    assert main(["grade", str(tmp_path / "nowhere")]) == 2
    assert "submissions folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("typo", ["## BEGIN SOLUTION", "x = 1  ### BEGIN SOLUTION", "### begin solution",
                                  "#### END SOLUTION", "y = 2 # END SOLUTION"])
def test_a_mistyped_marker_stops_the_build_before_the_answer_is_published(tmp_path, typo):
    solution = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{typo}\nanswer = 42\n### END SOLUTION"
                                                                         if "BEGIN" in typo.upper() else
                                                                         f"### BEGIN SOLUTION\nanswer = 42\n{typo}")])
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution, tmp_path / "solutions" / "ex01_x.ipynb")
    with pytest.raises(ex.SolutionMarkerError) as e:
        ex.build_exercises(solutions_dir=tmp_path / "solutions", exercises_dir=tmp_path / "exercises")
    message = str(e.value)
    assert "ex01_x.ipynb, cell 0" in message and "alone on its line" in message and "\n" not in message
    assert not (tmp_path / "exercises").exists(), "nothing written"


# ---------------------------------------------------------------- helpers the check cells use

def test_shortcuts_in_finds_a_library_call_in_the_code_not_in_the_text():
    namespace = {}
    exec("from slmlib.model import TinyGPT\n"
         "def helper(cfg, V):\n    return TinyGPT.from_config(cfg, V).num_params()\n"
         "def by_helper(cfg, V):\n    return helper(cfg, V)\n"
         "def by_numel(model):\n    return sum(p.numel() for p in model.parameters())\n"
         "def by_hand(cfg, V):\n    parameters = V * cfg.n_embd  # not num_params(), not TinyGPT\n    return parameters\n",
         namespace)
    names = ["TinyGPT", "num_params", "parameters", "numel"]
    assert ex.shortcuts_in(namespace["by_helper"], names) == ["TinyGPT", "num_params"], "through the notebook's own helper"
    assert ex.shortcuts_in(namespace["by_numel"], names) == ["numel", "parameters"], "inside a generator expression"
    assert ex.shortcuts_in(namespace["by_hand"], names) == [], "a comment or a local variable is not a call"
    assert ex.shortcuts_in(len, names) == [], "a builtin has no code to read"
    exec("def numel(t):\n    return 3\ndef own(t):\n    return numel(t)\n", namespace)
    assert ex.shortcuts_in(namespace["own"], names) == [], "the notebook's own function of that name is its own work"


def test_turned_history_tells_the_final_gap_from_the_best_one():
    h = ex.turned_history()
    assert h.status == "completed" and h.best["iter"] < h.iters[-1] and h.overfit_by > 0
    assert h.final["val_loss"] == h.val_loss[-1] and h.final["train_loss"] == h.train_loss[-1]
    assert abs(h.gap - (h.best["val_loss"] - h.final["train_loss"])) > 0.1
