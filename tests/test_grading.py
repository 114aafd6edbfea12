"""Grading a class safely: working copies, resuming, Ctrl-C, bad --out, nested folders, empty notebooks.

The class with a good, a looping, a crashing and a memory-hungry notebook is graded in
test_exercises.py (test_grading_a_class), beside the exercise runs it shares the CPU with.
Most notebooks here hold no code, so they are graded without starting a kernel.
"""
import csv
import html
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import psutil
import pytest

from slmlib import exercises as ex
from slmlib.tooling import grade_report as reports
from slmlib.tooling import grading as gr
from slmlib.__main__ import main


def _notebook(path, *sources, markdown=(), exercise=None):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(m) for m in markdown]
                                  + [nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = dict(ex.KERNELSPEC)
    if exercise:
        nb.metadata["slm_course"] = {"exercise": exercise}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _rows(out):
    with open(out, newline="", encoding="utf-8") as f:
        return {r["notebook"]: r for r in csv.DictReader(f)}


def _hashes(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_bad_out_is_refused_before_anything_runs(tmp_path, capsys):
    ran = tmp_path / "ran"
    _notebook(tmp_path / "subs" / "alice.ipynb", f"open({str(ran)!r}, 'w').close()")
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    for out, message in ((tmp_path / "folder", "is a folder; give the CSV file to write"),
                         (tmp_path / "grades.md", "give a .csv file name"),
                         (tmp_path / "a-file" / "grades.csv", "cannot make the folder")):
        assert main(["grade", str(tmp_path / "subs"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and str(out) in err and "Traceback" not in err, err
    assert not ran.exists() and not (tmp_path / "graded").exists() and not (tmp_path / "folder" / "graded").exists()


def test_nested_folders_a_single_notebook_and_empty_notebooks(tmp_path, capsys):
    subs = tmp_path / "subs"
    _notebook(subs / "alice" / "week1" / "ex01_tokens.ipynb")  # one of ours, handed in empty
    _notebook(subs / "alice" / ".ipynb_checkpoints" / "ex01_tokens-checkpoint.ipynb", "1/0")
    _notebook(subs / "bob.ipynb", markdown=["nothing here"])  # not an exercise, and empty
    (subs / "readme.txt").write_text("", encoding="utf-8")
    out = tmp_path / "report" / "grades.csv"
    assert main(["grade", str(subs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "found 2 notebook(s) from 2 student(s)" in printed
    assert "alice/.ipynb_checkpoints/ (hidden)" in printed and "readme.txt (not a notebook)" in printed
    rows = _rows(out)
    assert list(rows) == ["alice/week1/ex01_tokens.ipynb", "bob.ipynb"]
    alice, bob = rows.values()
    assert (alice["student"], alice["exercise"], alice["passed"], alice["total"]) == ("alice", "ex01_tokens", "0", "3")
    assert "empty notebook: no code cells to run" in alice["error"] and "3 check cell(s) edited or deleted" in alice["error"]
    assert (bob["passed"], bob["total"]) == ("0", "0")
    assert "empty notebook" in bob["error"] and "not one of the exercises" in bob["error"]
    assert (tmp_path / "report" / "graded" / "alice" / "week1" / "ex01_tokens.ipynb").is_file()

    one = tmp_path / "one" / "grades.csv"
    assert main(["grade", str(subs / "bob.ipynb"), "--out", str(one)]) == 0
    assert list(_rows(one)) == ["bob.ipynb"]
    assert main(["grade", str(subs / "readme.txt"), "--out", str(one)]) == 2
    assert "readme.txt is not a notebook" in capsys.readouterr().err


@pytest.mark.slow
def test_copies_without_solutions_ctrl_c_keeps_the_graded_and_a_rerun_resumes(tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "grades.csv"
    _notebook(subs / "a.ipynb")  # empty: graded at once
    _notebook(subs / "gina" / "ex01_tokens.ipynb",
              'import os, sys\nprint([p for p in sys.path if "solutions" in p], os.getcwd())',
              'import os\nfor f in os.listdir("."):\n    os.remove(f)')
    (subs / "gina" / "data.txt").write_text("data", encoding="utf-8")
    _notebook(subs / "zoe.ipynb", "while True:\n    pass", exercise="ex01_tokens")
    before = _hashes(subs)
    path = os.pathsep.join(filter(None, [str(ex.SOLUTIONS_DIR), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "slmlib", "grade", str(subs), "--out", str(out), "--timeout", "120",
                             "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": path})
    deadline, kernels = time.monotonic() + 90, []
    while time.monotonic() < deadline and not kernels:  # a and gina are graded, and zoe's kernel runs
        time.sleep(0.2)
        if out.is_file() and len(_rows(out)) == 2:
            kernels = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if "ipykernel" in " ".join(p.cmdline())]
    assert kernels, f"zoe's kernel never started: {proc.poll()}"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted: 2 of 3 notebook(s) graded and kept in" in err and "Traceback" not in err, err
    assert list(_rows(out)) == ["a.ipynb", "gina/ex01_tokens.ipynb"]
    gone, alive = psutil.wait_procs(kernels, timeout=10)
    assert not alive, "no kernel is left running"

    assert _hashes(subs) == before, "deleting files in its folder deleted only its copy"
    gina = _rows(out)["gina/ex01_tokens.ipynb"]
    assert (gina["passed"], gina["total"]) == ("0", "3"), "the reference's checks ran, and failed"
    assert "deleted 2 file(s) in its working folder" in gina["error"]
    printed = nbformat.read(tmp_path / "graded" / "gina" / "ex01_tokens.ipynb", as_version=4).cells[1].outputs[0].text
    assert printed.startswith("[] ") and str(subs) not in printed, "no solutions/ on the path; the cwd is a copy"

    _notebook(subs / "zoe.ipynb", markdown=["gave up"])  # handed in again: graded, the other two skipped
    assert main(["grade", str(subs), "--out", str(out), "--timeout", "120"]) == 0
    printed = capsys.readouterr().out
    assert "already holds 2 of these notebook(s), unchanged since they were graded: skipping them" in printed
    assert list(_rows(out)) == ["a.ipynb", "gina/ex01_tokens.ipynb", "zoe.ipynb"]
    assert _rows(out)["gina/ex01_tokens.ipynb"] == gina
    _notebook(subs / "a.ipynb", markdown=["changed"])
    assert main(["grade", str(subs), "--out", str(out), "--timeout", "120"]) == 0
    assert "grading again 1 notebook(s) changed since they were graded: a.ipynb" in capsys.readouterr().out


# ---------------------------------------------------------------- issue 24: the grade must be earned

def _reference_copy(tmp_path):
    """A copy of exercises/ to grade against (a forgery may write to it; the course's own stays intact)."""
    ref = tmp_path / "reference"
    ref.mkdir()
    for p in ex.EXERCISES_DIR.glob("*.ipynb"):
        (ref / p.name).write_bytes(p.read_bytes())
    return ref


def _ex02(done=False, first=(), extra_checks=()):
    """ex02 as handed out, or with the solutions filled in; `first`: cells put before everything."""
    exercise = nbformat.read(ex.EXERCISES_DIR / "ex02_causal_mask.ipynb", as_version=4)
    solution = nbformat.read(ex.SOLUTIONS_DIR / "ex02_causal_mask.ipynb", as_version=4)
    nb = nbformat.from_dict(exercise)
    if done:
        for i, c in enumerate(nb.cells):
            if c.cell_type == "code" and ex.STUB[1] in c.source:
                c.source = solution.cells[i].source
    nb.cells[:0] = [nbformat.v4.new_code_cell(s) for s in first]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in extra_checks]
    return nb


TRANSFORMER = ("def _pass(lines):\n    return ['pass\\n'] if lines and lines[0].startswith('# CHECK') else lines\n"
               "get_ipython().input_transformers_cleanup.append(_pass)")
CUSTOM_EXC = "get_ipython().set_custom_exc((Exception,), lambda *a, **k: None)"
SILENT_TRACEBACK = ("import IPython\nIPython.core.interactiveshell.InteractiveShell.showtraceback = "
                    "lambda *a, **k: None")


@pytest.mark.slow
def test_forged_checks_score_nothing_and_honest_work_still_scores(tmp_path, capsys):
    subs, ref = tmp_path / "subs", _reference_copy(tmp_path)
    subs.mkdir()
    planted = tmp_path / "planted.ipynb"  # a "reference" the forger writes and points its metadata at
    sabotage = ("import nbformat\n"
                f"p = {str(ref / 'ex02_causal_mask.ipynb')!r}\n"
                "nb = nbformat.read(p, as_version=4)\n"
                "for c in nb.cells:\n"
                "    if c.source.startswith('# CHECK'):\n"
                "        c.source = '# CHECK\\npass'\n"
                "nbformat.write(nb, p)")
    nbformat.write(_ex02(first=[TRANSFORMER]), subs / "a_transformer.ipynb")
    nbformat.write(_ex02(first=[CUSTOM_EXC]), subs / "b_custom_exc.ipynb")
    nbformat.write(_ex02(first=[SILENT_TRACEBACK]), subs / "c_showtraceback.ipynb")
    nbformat.write(_ex02(first=[sabotage]), subs / "d_saboteur.ipynb")
    nbformat.write(_ex02(done=True), subs / "e_honest.ipynb")  # graded after the saboteur (jobs=1)
    own = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# CHECK\nassert True") for _ in range(5)])
    nbformat.write(own, subs / "f_no_metadata.ipynb")  # its own five checks
    (subs / "g_bonus").mkdir()
    nbformat.write(_ex02(), subs / "g_bonus" / "ex02_causal_mask.ipynb")  # the stub
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# CHECK\npass") for _ in range(10)]),
                   subs / "g_bonus" / "bonus.ipynb")
    pointing = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import nbformat\nnbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('# CHECK')]), "
        f"{str(planted)!r})"), nbformat.v4.new_code_cell("# CHECK\npass")])
    pointing.metadata["slm_course"] = {"exercise": str(planted.with_suffix(""))}
    nbformat.write(pointing, subs / "h_abspath.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# CHECK\npass")]), planted)
    before = (ref / "ex02_causal_mask.ipynb").read_bytes()

    rows = {r["notebook"]: r for r in gr.grade_submissions(subs, tmp_path / "out" / "grades.csv", timeout=120,
                                                             exercises_dir=ref, jobs=1)}
    got = {k: (r["exercise"], r["passed"], r["total"]) for k, r in rows.items()}
    assert got == {"a_transformer.ipynb": ("ex02_causal_mask", 0, 3), "b_custom_exc.ipynb": ("ex02_causal_mask", 0, 3),
                   "c_showtraceback.ipynb": ("ex02_causal_mask", 0, 3), "d_saboteur.ipynb": ("ex02_causal_mask", 0, 3),
                   "e_honest.ipynb": ("ex02_causal_mask", 3, 3), "f_no_metadata.ipynb": ("", 0, 0),
                   "g_bonus/ex02_causal_mask.ipynb": ("ex02_causal_mask", 0, 3), "g_bonus/bonus.ipynb": ("", 0, 0),
                   "h_abspath.ipynb": ("", 0, 0)}, got
    assert "not one of the exercises" in rows["f_no_metadata.ipynb"]["error"]
    assert "not one of the exercises" in rows["h_abspath.ipynb"]["error"]
    assert "InteractiveShell.showtraceback" in rows["c_showtraceback.ipynb"]["error"]
    report = (tmp_path / "out" / "grades.md").read_text(encoding="utf-8")
    assert "| g_bonus | 2 | 0 | 3 | 0% |" in report and "| e_honest | 1 | 3 | 3 | 100% |" in report
    assert json.loads(rows["e_honest.ipynb"]["checks"]) == [["passed", ""]] * 3
    assert [s for s, _ in json.loads(rows["a_transformer.ipynb"]["checks"])] == ["failed"] * 3
    bonus = (tmp_path / "out" / "feedback" / "g_bonus.md").read_text(encoding="utf-8")
    assert "✗ Task 1: the mask: NotImplementedError: not done yet" in bonus, bonus
    if gr.Run(1, bwrap="x").bwrap and __import__("slmlib.tooling.sandbox").tooling.sandbox.probe()[0]:
        assert (ref / "ex02_causal_mask.ipynb").read_bytes() == before, "the reference is out of reach"


def test_unrelated_out_files_are_never_overwritten(tmp_path, capsys):
    _notebook(tmp_path / "subs" / "alice.ipynb", markdown=["empty"])
    book = tmp_path / "gradebook.csv"
    book.write_text("name,grade\nalice,A\n", encoding="utf-8")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(book)]) == 2
    err = capsys.readouterr().err
    assert f"{book} exists and is not a grade table" in err and "--force" in err and "Traceback" not in err
    assert book.read_text(encoding="utf-8") == "name,grade\nalice,A\n"
    notes = tmp_path / "grades.md"
    notes.write_text("my notes\n", encoding="utf-8")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "grades.csv")]) == 2
    assert f"{notes} exists" in capsys.readouterr().err and notes.read_text(encoding="utf-8") == "my notes\n"
    assert main(["grade", str(tmp_path / "subs"), "--out", str(book), "--force"]) == 0
    assert "alice.ipynb" in book.read_text(encoding="utf-8")
    assert main(["grade", str(tmp_path / "subs"), "--out", str(book)]) == 0, "our own table is ours to replace"


def test_a_row_is_reused_only_when_nothing_it_depends_on_changed(tmp_path, capsys):
    subs, ref, out = tmp_path / "subs", _reference_copy(tmp_path), tmp_path / "grades.csv"
    _notebook(subs / "alice" / "ex01_tokens.ipynb", markdown=["empty"])  # graded at once: no kernel
    _notebook(subs / "bob.ipynb", markdown=["empty"], exercise="ex01_tokens")

    def grade(**kw):
        gr.grade_submissions(subs, out, exercises_dir=ref, **{"timeout": 60, "memory_mb": 2048, **kw})
        return capsys.readouterr().out

    grade()
    assert "already holds 2" in grade()
    assert "grading again 2 notebook(s) graded with other settings" in grade(timeout=61)
    assert "grading again 2 notebook(s) graded with other settings" in grade(memory_mb=1024)
    grade()
    text = out.read_text(encoding="utf-8")
    out.write_text(text.replace("bob,ex01_tokens,0,3", "bob,ex01_tokens,3,3"), encoding="utf-8")
    printed = grade()
    assert "grading again 1 notebook(s) edited after grading: bob.ipynb" in printed
    assert _rows(out)["bob.ipynb"]["passed"] == "0"
    nb = nbformat.read(ref / "ex01_tokens.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("# CHECK\nassert False"))
    nbformat.write(nb, ref / "ex01_tokens.ipynb")
    printed = grade()
    assert "grading again 2 notebook(s) graded against another version of the exercise" in printed
    assert _rows(out)["bob.ipynb"]["total"] == "4"
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    rows[0]["grader_failure"] = "1"
    rows[0]["row_check"] = gr._row_check(rows[0])
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=reports.GRADE_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    assert "grading again 1 notebook(s) not graded last time (the grader's failure)" in grade()
    rows[0]["course"] = "0.0.1+old"
    rows[0]["grader_failure"] = ""
    rows[0]["row_check"] = gr._row_check(rows[0])
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=reports.GRADE_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    assert "grading again 1 notebook(s) graded by another version of the course" in grade()


def test_duplicate_students_empty_folders_and_odd_names_are_reported_and_escaped(tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "grades.csv"
    _notebook(subs / "dave.ipynb", markdown=["one"], exercise="ex01_tokens")
    _notebook(subs / "dave" / "dave.ipynb", markdown=["two"], exercise="ex01_tokens")
    (subs / "carol").mkdir()
    _notebook(subs / "a|b.ipynb", markdown=["pipe"])
    _notebook(subs / "new\nline" / "x.ipynb", markdown=["newline"])
    assert main(["grade", str(subs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "student dave handed in both dave.ipynb and a folder dave/" in printed
    assert "carol/ (student folder without a notebook: nothing graded)" in printed
    graded = tmp_path / "graded"
    assert (graded / "dave.ipynb").is_file() and (graded / "dave" / "dave.ipynb").is_file(), "neither overwrote"
    report = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "carol/ (student folder without a notebook" in report
    assert "a\\|b" in report and "new\\nline" in report
    per_notebook = report.split("## Per notebook")[1].split("## Problems")[0]
    lines = [ln for ln in per_notebook.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 4 and all(ln.replace("\\|", "").count("|") == 8 for ln in lines), lines
    assert len(_rows(out)) == 4


@pytest.mark.slow
def test_a_notebook_that_kills_its_grading_process_is_recorded_and_the_batch_goes_on(tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "grades.csv"
    _notebook(subs / "a_killer.ipynb", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
              exercise="ex01_tokens")
    _notebook(subs / "b_next.ipynb", "x = 1", exercise="ex01_tokens")
    try:
        gr.grade_submissions(subs, out, timeout=60, sandbox=False)
        raise AssertionError("the batch reports the notebook it could not grade")
    except gr.GradingError as e:
        assert "a_killer.ipynb: the grading process died while it ran this notebook" in str(e)
    rows = _rows(out)
    assert rows["a_killer.ipynb"]["grader_failure"] == "1" and "not graded: the grading process died" in \
        rows["a_killer.ipynb"]["error"]
    assert rows["b_next.ipynb"]["grader_failure"] == "" and rows["b_next.ipynb"]["total"] == "3"


@pytest.mark.slow
def test_each_escape_is_stopped_by_the_sandbox(tmp_path, monkeypatch):
    from slmlib.tooling.sandbox import probe

    bwrap, why = probe()
    if not bwrap:
        import pytest
        pytest.skip(f"no sandbox here: {why}")
    monkeypatch.setenv("SLM_INSTRUCTOR_SECRET", "s3cret")
    subs = tmp_path / "subs"
    _notebook(subs / "victim.ipynb", markdown=["my work"], exercise="ex01_tokens")
    victim = (subs / "victim.ipynb").read_bytes()
    escapes = {
        "network": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=3)",
        "other submission": f"open({str(subs / 'victim.ipynb')!r}, 'w').write('{{}}')",
        "grader's command line": "print(open(f'/proc/{os.getppid()}/cmdline').read())",
        "course": f"open({str(ex.ROOT / 'README.md')!r}, 'a').write('x')",
        "solutions": f"print(os.listdir({str(ex.SOLUTIONS_DIR)!r}))",
        "environment": "print(sorted(k for k in os.environ if 'SECRET' in k))",
        "left running": "import subprocess\nsubprocess.Popen(['sleep', '6123'], start_new_session=True)",
        "own copy": "open('mine.txt', 'w').write('ok')\nprint(open('mine.txt').read())",
    }
    _notebook(subs / "eve.ipynb", "import os", *escapes.values(), exercise="ex01_tokens")
    hog = "import subprocess, sys\nps = [subprocess.Popen([sys.executable, '-c', " \
          "'b = bytearray(500 * 2**20); import time; time.sleep(60)']) for _ in range(4)]\nimport time\ntime.sleep(30)"
    _notebook(subs / "hog.ipynb", hog, exercise="ex01_tokens")
    out = tmp_path / "grades.csv"
    start = time.monotonic()
    rows = {r["notebook"]: r for r in gr.grade_submissions(subs, out, timeout=60, memory_mb=1500, jobs=2)}
    assert time.monotonic() - start < 120, "the memory cap stops the hog at once, not at its deadline (240 s)"
    assert (subs / "victim.ipynb").read_bytes() == victim
    cells = nbformat.read(tmp_path / "graded" / "eve" / "eve.ipynb", as_version=4).cells[2:2 + len(escapes)]
    seen = {}
    for what, cell in zip(escapes, cells):
        seen[what] = "".join(o.get("text", "") or f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs)
    assert "Network is unreachable" in seen["network"] or "OSError" in seen["network"], seen
    assert "Error" in seen["other submission"], seen
    assert str(subs) not in seen["grader's command line"], seen
    assert "Read-only file system" in seen["course"], seen
    assert seen["solutions"].strip() in ("[]", "") or "Error" in seen["solutions"], seen
    assert seen["environment"].strip() == "[]", seen
    assert seen["own copy"].strip() == "ok", seen
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "6123"]], \
        "every process the notebook started is gone"
    assert "its processes together used" in rows["hog.ipynb"]["error"], rows["hog.ipynb"]


# ---------------------------------------------------------------- issue 25: a report an instructor uses

def _row(student, exercise, checks, notebook=None, error="", seconds=5.0):
    return {"student": student, "exercise": exercise, "passed": sum(s == "passed" for s, _ in checks),
            "total": len(checks), "seconds": seconds, "error": error, "notebook": notebook or f"{student}.ipynb",
            "checks": json.dumps(checks)}


def test_the_report_has_a_row_per_student_a_column_per_task_feedback_pages_and_one_line_per_problem(tmp_path):
    refs = gr.read_references()
    stub = [["failed", "NotImplementedError"]] * 3
    hint = "Hint: add one <|endoftext|> token per story"
    rows = [_row(f"s{i:02}", "ex01_tokens", stub, error="first error in cell 4: NotImplementedError")
            for i in range(30)]
    rows += [_row("alice", "ex01_tokens", [["passed", ""], ["failed", hint], ["passed", ""]]),
             _row("alice", "ex02_causal_mask", [["passed", ""], ["not run", "the notebook stopped before this check"
                                                                 " (timed out)"], ["not run", "x"]],
                  notebook="alice/ex02_causal_mask.ipynb", error="timed out: cell 7 still running after 8 s"),
             _row("<script>alert(1)</script>", "ex01_tokens", [["passed", ""]] * 3, seconds=12.5)]
    out = tmp_path / "grades.csv"
    reports.write_results(out, rows, gr.Run(600), ["a note"], refs, {"jobs": 1, "cores": 2, "started": time.monotonic()})

    with open(tmp_path / "grades_by_student.csv", newline="", encoding="utf-8") as f:
        students = {r["student"]: r for r in csv.DictReader(f)}
    assert len(students) == 32, "one row per student"
    columns = [reports.task_column(name, k) for name, ref in sorted(refs.items()) for k in range(len(ref.checks))]
    assert list(students["alice"])[5:] == columns, "a column per exercise x task, every exercise"
    assert [students["alice"][c] for c in columns[:6]] == ["passed", "failed", "passed", "passed", "not run",
                                                           "not run"]
    assert students["alice"][reports.task_column("ex03_first_model", 0)] == "", "blank: not handed in"

    report = (tmp_path / "grades.md").read_text(encoding="utf-8")
    problems = report.split("## Problems")[1]
    assert problems.count("NotImplementedError") == 1, "30 identical problems make one line"
    assert "- 30 notebooks: first error in cell 4: NotImplementedError (s00.ipynb, s01.ipynb" in problems
    assert "- alice/ex02_causal_mask.ipynb: timed out" in problems and "- a note" in problems
    assert "| ex01_tokens | Task 2: how much text does level 1 train on? | 1 of 32 | NotImplementedError (30 of 32) |" \
        in report, "the class summary per task: passed, and the commonest failure with its count"
    assert "| alice | 2 | 3 | 6 | 50% | ✓✗✓ | ✓·· |" in report
    assert "median 5.0 s, slowest 12.5 s (<script>alert(1)</script>.ipynb)" in report, "time per notebook"
    assert "1 at a time on 2 core(s)" in report

    page = (tmp_path / "grades.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, "every text escaped"
    assert page.startswith(reports.HTML_FIRST) and "<style>" in page and "<th colspan=\"3\">ex01_tokens</th>" in page
    assert f'title="{html.escape(hint)}"' in page, "a failed mark carries the check's hint"
    assert 'href="feedback/alice.md"' in page and "median 5.0 s" in page

    feedback = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "feedback").iterdir()}
    assert len(feedback) == 32 and "script_alert_1_script.md" in feedback, "a page per student, safe file names"
    alice = feedback["alice.md"]
    assert "## ex01_tokens: 2 of 3" in alice and f"✗ Task 2: how much text does level 1 train on?: {hint}" in alice
    assert "· Task 2: masked attention: the notebook stopped before this check (timed out)" in alice
    assert "About the notebook: timed out" in alice and "## Not handed in" in alice and "ex03_first_model" in alice
    assert "s00" not in alice, "a student's page holds only their own work"

    reports.write_results(out, rows[30:], gr.Run(600), [], refs)
    assert sorted(p.name for p in (tmp_path / "feedback").iterdir()) == ["alice.md", "script_alert_1_script.md"], \
        "pages of students no longer handed in are removed"


def test_each_check_is_passed_failed_with_its_hint_or_not_run_with_the_reason():
    cells = [nbformat.v4.new_code_cell("# CHECK", metadata={gr.GRADER_KEY: {"check": k}}) for k in range(5)]
    cells[1].outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="Hint: \x1b[31mlook\x1b[0m "
                                               "again\nsecond line", traceback=[])]
    cells[2].outputs = [nbformat.v4.new_output("error", ename="NotImplementedError", evalue="", traceback=[])]
    nb = nbformat.v4.new_notebook(cells=cells)
    got = gr.check_results(nb, {0: True, 1: False, 2: False, 3: False}, {3: "the notebook replaced x"}, 6,
                           "timed out: cell 9 still running after 8 s")
    assert got == [["passed", ""], ["failed", "Hint: look again"],
                   ["failed", "NotImplementedError: not done yet (the task's `raise NotImplementedError()` is still "
                              "there)"],
                   ["failed", "the check did not run: the notebook replaced x"],
                   ["not run", "the notebook stopped before this check (timed out: cell 9 still running after 8 s)"],
                   ["not run", "the notebook stopped before this check (timed out: cell 9 still running after 8 s)"]]


def test_jobs_default_to_one_per_two_cores_as_memory_allows(monkeypatch):
    """Catches a default of one job per core: 2 jobs on 2 cores were measured slower than 1."""
    import psutil

    free = {"bytes": 64 * 2**30}
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": free["bytes"]})())
    for n, jobs in ((1, 1), (2, 1), (3, 1), (4, 2), (16, 8)):
        monkeypatch.setattr(gr, "cores", lambda n=n: n)
        assert gr.default_jobs() == jobs, n
    free["bytes"] = 10 * 2**30  # two 4 GB kernels fit, not eight
    assert gr.default_jobs(4096) == 2 and gr.default_jobs(0) == 2 and gr.default_jobs(1024) == 8
    assert gr.default_jobs(smoke=False) == 1, "in full mode a kernel uses every core"


def test_the_command_writes_every_report_and_refuses_to_overwrite_a_foreign_one(tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "grades.csv"
    _notebook(subs / "alice" / "ex01_tokens.ipynb", markdown=["empty"])  # graded at once: no kernel
    _notebook(subs / "bob.ipynb", markdown=["empty"], exercise="ex02_causal_mask")
    assert main(["grade", str(subs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "at a time (the default for" in printed and "feedback" in printed
    for name in ("grades.md", "grades.html", "grades_by_student.csv", "feedback/alice.md", "feedback/bob.md"):
        assert (tmp_path / name).is_file(), name
    bob = (tmp_path / "feedback" / "bob.md").read_text(encoding="utf-8")
    assert "## ex02_causal_mask: 0 of 3" in bob and "· Task 1: the mask: empty notebook: no code cells to run" in bob
    assert json.loads(_rows(out)["bob.ipynb"]["checks"])[0] == ["not run", "empty notebook: no code cells to run"]
    assert main(["grade", str(subs), "--out", str(out)]) == 0, "its own reports are its to replace"
    (tmp_path / "grades.html").write_text("<html>my page</html>\n", encoding="utf-8")
    assert main(["grade", str(subs), "--out", str(out)]) == 2
    assert "grades.html exists and is not a grade table" in capsys.readouterr().err
    assert (tmp_path / "grades.html").read_text(encoding="utf-8") == "<html>my page</html>\n"
