"""`make course` after an interruption: no half-run notebook left behind, and a rerun that skips
what already finished (and says so)."""
import nbformat
import pytest

import slmlib.tooling.course as course


def _lessons(tmp_path, names=("01_a.ipynb", "02_b.ipynb")):
    paths = []
    for name in names:
        path = tmp_path / "notebooks" / name
        path.parent.mkdir(exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), path)
        paths.append(path)
    return paths


def test_an_interrupted_notebook_leaves_no_executed_copy(tmp_path, monkeypatch):
    import papermill

    def run_then_ctrl_c(src, dst, **kwargs):
        open(dst, "w").write("half a notebook")
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", run_then_ctrl_c)
    src = _lessons(tmp_path)[0]
    with pytest.raises(KeyboardInterrupt):
        course.run_notebook(src, tmp_path / "out" / src.name, {})
    assert list((tmp_path / "out").iterdir()) == []


def test_a_rerun_skips_the_lessons_that_finished(tmp_path, monkeypatch, capsys):
    paths = _lessons(tmp_path)
    monkeypatch.setattr(course, "lesson_paths", lambda only=None: paths)
    ran, interrupt = [], {"at": "02_b.ipynb"}

    def fake_run(path, out_path, parameters, **kwargs):
        if path.name == interrupt["at"]:
            raise KeyboardInterrupt
        ran.append(path.name)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("{}")
        return {"notebook": path.name, "status": "ok", "error": "", "seconds": 0.1}

    monkeypatch.setattr(course, "run_notebook", fake_run)
    out = tmp_path / "executed"
    with pytest.raises(KeyboardInterrupt):
        course.run_course(only=["a", "b"], out_dir=out)
    interrupt["at"] = None
    assert course.run_course(only=["a", "b"], out_dir=out)
    assert ran == ["01_a.ipynb", "02_b.ipynb"]  # the first lesson was not run twice
    assert "01_a.ipynb: skipped" in capsys.readouterr().out
    paths[0].write_text(paths[0].read_text().replace("x = 1", "x = 2"))  # an edited lesson runs again
    assert course.run_course(only=["a", "b"], out_dir=out)
    assert ran[2:] == ["01_a.ipynb", "02_b.ipynb"]  # and so does every lesson after it
    assert course.run_course(only=["a", "b"], out_dir=out, fresh=True)
    assert ran[4:] == ["01_a.ipynb", "02_b.ipynb"]


def test_the_kernels_tcp_warning_is_dropped_and_its_other_stderr_kept(tmp_path, capfd):
    """ipykernel prints 'Kernel is running over TCP without encryption' at every start (eleven times
    in `make course`); run_notebook drops that line alone from the kernel's stderr."""
    import time

    src = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os\nos.write(2, b'a line the kernel wrote to its stderr\\n')")]), src)
    row = course.run_notebook(src, tmp_path / "out.ipynb", {})
    assert row["status"] == "ok", row
    time.sleep(0.5)  # the pipe is read by a thread: let it write the kernel's last lines
    err = capfd.readouterr().err
    assert "a line the kernel wrote to its stderr" in err
    assert course.KERNEL_NOISE.decode() not in err
