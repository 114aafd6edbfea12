"""The student release holds no answers, and the exercises give none away in their hints."""
from __future__ import annotations

import shutil
import subprocess
import sys

import nbformat
import pytest

from slmlib.tooling import release
from slmlib.errors import UsageError
from slmlib.exercises import BEGIN, END, EXERCISES_DIR, SOLUTIONS_DIR
from slmlib.paths import ROOT


def test_no_solution_line_appears_in_an_exercise():
    """Every line of every solution region, looked for in every exercise (hints, prose, code)."""
    lines = release.solution_lines(release.solution_regions(SOLUTIONS_DIR))
    assert len(lines) > 100  # the regions were found
    found = [f"{path.name}: {line}" for path in sorted(EXERCISES_DIR.glob("*.ipynb"))
             for text in [release.notebook_sources(path)] for line in sorted(lines) if line in text]
    assert not found, "solution lines in the exercises (rewrite the hint or the task's text):\n" + "\n".join(found)


@pytest.fixture(scope="module")
def student_release(tmp_path_factory):
    dest = tmp_path_factory.mktemp("release") / "slm-course"
    written = release.build_release(dest)
    return dest, written


def test_release_has_what_a_student_needs(student_release):
    dest, written = student_release
    for name in ("README.md", "Makefile", "setup_course.py", "requirements.txt", "environment.yml", "pyproject.toml",
                 "slmlib/__init__.py", "slmlib/__main__.py", "data/gpt2.tiktoken", "data/stories_train.txt",
                 "models/.gitkeep", "outputs/.gitkeep"):
        assert (dest / name).is_file(), name
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in (dest / "notebooks").glob("[0-9][0-9]_*.ipynb")) == lessons
    assert sorted(p.name for p in (dest / "exercises").glob("*.ipynb")) == \
        sorted(p.name for p in SOLUTIONS_DIR.glob("*.ipynb"))
    assert (dest / "README.md").read_text().startswith("> **Student release.**")
    assert len(written) == sum(1 for p in dest.rglob("*") if p.is_file() and p.name != ".gitkeep")


def test_release_holds_no_solution_text(student_release):
    dest, _ = student_release
    assert not (dest / "solutions").exists()
    assert not [p for p in dest.rglob("*") if "solution" in p.name.lower()]
    assert not [p for p in dest.rglob("*") if p.name in ("__pycache__", ".ipynb_checkpoints") or p.suffix == ".pyc"]
    # every region of solutions/, read independently of release.py: no region's lines, in order, anywhere
    regions = []
    for path in SOLUTIONS_DIR.glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            src = cell.source
            while BEGIN in src:
                start = src.index(BEGIN) + len(BEGIN)
                region, src = src[start:src.index(END, start)], src[src.index(END, start) + len(END):]
                regions.append([ln.strip() for ln in region.splitlines() if ln.strip()])
    assert len(regions) >= 30
    texts = {p: release.readable_text(p) for p in dest.rglob("*") if p.is_file()}
    for path, text in texts.items():
        if text is None:
            continue
        flat = "\n".join(ln.strip() for ln in text.splitlines() if ln.strip())
        for region in regions:
            if len(region) >= 2 or (path.parent.name == "exercises" and region and len(region[0]) >= 8):
                assert "\n".join(region) not in flat, f"{path.relative_to(dest)} holds the solution {region[0]!r}"
    assert release.find_leaks(dest, SOLUTIONS_DIR) == []


def test_release_refuses_a_folder_in_use_and_the_course_itself(student_release, tmp_path):
    dest, _ = student_release
    with pytest.raises(UsageError, match="not empty"):
        release.build_release(dest)
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="does not look like an earlier release"):
        release.build_release(tmp_path, force=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    for inside in (ROOT, ROOT / "notebooks" / "x", ROOT / "solutions"):
        with pytest.raises(UsageError, match="folder of its own"):
            release.build_release(inside)


def _mini_course(root, hint: str):
    """A course with one exercise whose check cell says `hint`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"{BEGIN}\nanswer = 6 * 7\n{END}"),
                nbformat.v4.new_code_cell(f"# CHECK\nassert answer == 42, {hint!r}")]
    for name in ("solutions", "notebooks", "data", "slmlib"):
        (root / name).mkdir(parents=True)
    nbformat.write(nb, root / "solutions" / "ex01_x.ipynb")
    (root / "README.md").write_text("# a course\n")
    from slmlib.exercises import build_exercises

    build_exercises(solutions_dir=root / "solutions", exercises_dir=root / "exercises")


def test_a_hint_that_gives_the_answer_stops_the_release(tmp_path):
    _mini_course(tmp_path / "course", "Hint: answer = 6 * 7")
    with pytest.raises(release.ReleaseLeakError, match=r"ex01_x.ipynb: answer = 6 \* 7"):
        release.build_release(tmp_path / "out", root=tmp_path / "course")
    assert not (tmp_path / "out").exists()  # nothing half-checked is left for someone to hand out
    shutil.rmtree(tmp_path / "course")
    _mini_course(tmp_path / "course", "Hint: the answer is six times seven")
    release.build_release(tmp_path / "out", root=tmp_path / "course")
    assert (tmp_path / "out" / "exercises" / "ex01_x.ipynb").is_file()


def test_stale_exercises_are_not_released(tmp_path):
    _mini_course(tmp_path / "course", "Hint: multiply")
    nb = nbformat.read(tmp_path / "course" / "solutions" / "ex01_x.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("a new task"))
    nbformat.write(nb, tmp_path / "course" / "solutions" / "ex01_x.ipynb")
    with pytest.raises(UsageError, match="out of date"):
        release.build_release(tmp_path / "out", root=tmp_path / "course")


def test_release_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "slmlib", "release", str(tmp_path / "rel")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "student release" in out.stdout and (tmp_path / "rel" / "exercises").is_dir()
    again = subprocess.run([sys.executable, "-m", "slmlib", "release", str(tmp_path / "rel")],
                           capture_output=True, text=True, cwd=ROOT)
    assert again.returncode != 0 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_lab_serves_the_course_folder():
    """`make lab` and the README's other ways in start JupyterLab on the course folder, not notebooks/,
    so exercises/ is reachable too (served from notebooks/, it was a 404)."""
    import re

    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert recipe.strip() == "$(BIN)/jupyter lab", recipe
    for name in ("README.md", "setup_course.py", "slmlib/tooling/checks.py", "notebooks/00_setup_check.ipynb"):
        text = (ROOT / name).read_text()
        assert "jupyter lab notebooks" not in text, name
    assert "jupyter lab" in (ROOT / "README.md").read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_reset_outputs_keeps_the_venv_and_the_models(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("outputs/.gitkeep", "outputs/ladder_results.json", "outputs/executed/03_ultra_tiny.ipynb",
                 "outputs/smoke/ladder_results.json", "models/model_tiny_200_stories.pt", "models/.gitkeep",
                 ".venv/.installed", ".venv/bin/python"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    out = subprocess.run(["make", "reset-outputs"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == [".venv/.installed", ".venv/bin/python", "Makefile", "models/.gitkeep",
                    "models/model_tiny_200_stories.pt", "outputs/.gitkeep"]


def test_release_with_runs_carries_every_small_run_or_none(tmp_path):
    """The classroom set-up: the instructor's finished runs of lessons 04 and 08 travel with the release,
    where the lessons' run cache finds them (same settings, data and code); a missing one stops the build."""
    from slmlib import sweep
    from slmlib.tooling.course import runs_beside_the_lessons

    _mini_course(tmp_path / "course", "Hint: multiply")
    kept = tmp_path / "runs"
    configs = runs_beside_the_lessons()
    for cfg in configs:
        sweep.save_run(cfg, {"status": "completed", "records": [{"iter": 1}]}, kept)
    missing = sweep.run_file(configs[-1], kept)
    held = missing.read_text()
    missing.unlink()
    with pytest.raises(release.MissingRunsError, match=f"1 of the {len(configs)} small runs.*make course"):
        release.build_release(tmp_path / "out", root=tmp_path / "course", with_runs=True, runs_dir=kept)
    assert not (tmp_path / "out").exists()
    missing.write_text(held)
    written = release.build_release(tmp_path / "out", root=tmp_path / "course", with_runs=True, runs_dir=kept)
    shipped = tmp_path / "out" / "outputs" / "runs"
    assert len([p for p in written if p.parent == shipped]) == len(configs)
    assert all(sweep.load_run(cfg, shipped) is not None for cfg in configs)
