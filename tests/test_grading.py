"""Grading a class safely: working copies, resuming, Ctrl-C, bad --out, nested folders, empty notebooks.

The class with a good, a looping, a crashing and a memory-hungry notebook is graded in
test_exercises.py (test_grading_a_class), beside the exercise runs it shares the CPU with.
Most notebooks here hold no code, so they are graded without starting a kernel.
"""
import csv
import hashlib
import os
import signal
import subprocess
import sys
import time

import nbformat
import psutil

from slmlib import exercises as ex
from slmlib.__main__ import main


def _notebook(path, *sources, markdown=()):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(m) for m in markdown]
                                  + [nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = dict(ex.KERNELSPEC)
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


def test_copies_without_solutions_ctrl_c_keeps_the_graded_and_a_rerun_resumes(tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "grades.csv"
    _notebook(subs / "a.ipynb")  # empty: graded at once
    _notebook(subs / "gina" / "ex99_free.ipynb",
              'import os, sys\nprint([p for p in sys.path if "solutions" in p], os.getcwd())',
              '# CHECK\nimport os\nfor f in os.listdir("."):\n    os.remove(f)\nprint("✓ Task 1 passed")')
    (subs / "gina" / "data.txt").write_text("data", encoding="utf-8")
    _notebook(subs / "zoe.ipynb", "while True:\n    pass")
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
    assert list(_rows(out)) == ["a.ipynb", "gina/ex99_free.ipynb"]
    gone, alive = psutil.wait_procs(kernels, timeout=10)
    assert not alive, "no kernel is left running"

    assert _hashes(subs) == before, "deleting files in its folder deleted only its copy"
    gina = _rows(out)["gina/ex99_free.ipynb"]
    assert (gina["passed"], gina["total"]) == ("1", "1")
    assert "deleted 2 file(s) in its working folder" in gina["error"]
    printed = nbformat.read(tmp_path / "graded" / "gina" / "ex99_free.ipynb", as_version=4).cells[1].outputs[0].text
    assert printed.startswith("[] ") and str(subs) not in printed, "no solutions/ on the path; the cwd is a copy"

    _notebook(subs / "zoe.ipynb", markdown=["gave up"])  # handed in again: graded, the other two skipped
    assert main(["grade", str(subs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "already holds 2 of these notebook(s), unchanged since they were graded: skipping them" in printed
    assert list(_rows(out)) == ["a.ipynb", "gina/ex99_free.ipynb", "zoe.ipynb"]
    assert _rows(out)["gina/ex99_free.ipynb"] == gina
    _notebook(subs / "a.ipynb", markdown=["changed"])
    assert main(["grade", str(subs), "--out", str(out)]) == 0
    assert "grading again 1 notebook(s) changed since they were graded: a.ipynb" in capsys.readouterr().out
