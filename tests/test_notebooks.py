"""The lessons: structure of the committed files, and a smoke run of each with papermill (in the session's
background pool, tests/conftest.py)."""
import re

import nbformat
import pytest

from slmlib import KERNEL_NAME
from slmlib.tooling.course import is_nbval_checked, lesson_paths

LESSONS = lesson_paths()


def test_there_are_eleven_lessons_in_order():
    assert [p.name[:2] for p in LESSONS] == [f"{i:02d}" for i in range(11)]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_committed_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "strip metadata.widgets"
    assert nb.metadata.kernelspec.name == KERNEL_NAME
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    for name in ("smoke", "device", "seed"):  # each assigned, with or without a type for papermill
        assert re.search(rf"^{name}(: [^=]+)? = ", params[0].source, re.M), f"parameter {name} missing"
    for cell in nb.cells:
        if cell.cell_type == "code" and not is_nbval_checked(cell):
            assert not cell.outputs and cell.execution_count is None, (
                f"stale output in a cell nbval does not check:\n{cell.source[:80]}")


def test_checked_cells_hold_their_expected_outputs():
    checked = [c for p in LESSONS for c in nbformat.read(p, as_version=4).cells if is_nbval_checked(c)]
    assert len(checked) >= 8
    assert all(c.outputs for c in checked), "run `python -m slmlib notebooks refresh` to record them"


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_runs_in_smoke_mode(path, lesson_runs, request):
    """Each lesson runs in the session's background pool, in order (tests/conftest.py, lesson_runs)."""
    if path.name in getattr(request.config, "nbval_lessons", ()):  # the root conftest.py fills it
        pytest.skip("nbval runs this lesson in this session (smoke mode, any error fails it) and compares "
                    "its checked cells: one run is enough")
    executed, runs = lesson_runs
    row = runs[path.name].result()
    assert row["status"] == "ok", row["error"]
    nb = nbformat.read(executed / path.name, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # every figure is a 256-colour PNG (slmlib.plots.compact_png): executed lessons stay small
    pngs = [o.data["image/png"] for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert all(_png_mode(png) == "P" for png in pngs), f"{path.name}: a figure bypassed compact_png"


def _png_mode(encoded: str) -> str:
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(encoded))).mode


# The three tests below read runs made side by side in the session's pool (tests/conftest.py, papermill_runs).

@pytest.mark.slow
def test_bad_papermill_parameters_fail_clearly(papermill_runs):
    row = papermill_runs["bad level"][1].result()  # lesson 03 with {"smoke": True, "level": "huge"}
    assert row["status"] == "failed" and "unknown level 'huge'; valid levels" in row["error"]
    row = papermill_runs["bad max_iters"][1].result()  # {"smoke": True, "max_iters": "ten"}
    assert "max_iters must be a whole number" in row["error"]
    row = papermill_runs["bad smoke"][1].result()  # {"smoke": "yes"}
    assert "smoke must be True or False" in row["error"]
    row = papermill_runs["bad lesson"][1].result()  # {"smoke": True, "level": "tiny"}: ultra-tiny's text, tiny's run
    assert row["status"] == "failed" and "this lesson is about ultra_tiny" in row["error"] \
        and "notebooks/04_tiny.ipynb" in row["error"]


@pytest.mark.slow
def test_comparison_before_training_says_what_to_run(papermill_runs):
    row = papermill_runs["08 before training"][1].result()  # lesson 08 with SLM_MODELS_DIR an empty folder
    assert row["status"] == "failed"
    assert "03_ultra_tiny.ipynb" in row["error"] and "python -m slmlib train --level ultra_tiny" in row["error"]


@pytest.mark.slow
def test_a_students_quick_try_never_replaces_a_levels_model(papermill_runs):
    """The papermill run from issue 14, a few steps of medium (now in medium's own lesson: lesson 03 refuses
    another level, as its text describes ultra-tiny's run): lesson 06 with {"smoke": True, "level": "medium",
    "max_iters": 3}, its models folder holding medium's own model before the run."""
    folder, future = papermill_runs["quick try"]
    models = folder / "models"
    own = models / "model_medium_3000_stories.pt"
    row = future.result()
    assert row["status"] == "ok", row["error"]
    assert own.read_bytes() == b"medium's trained model"
    assert len(list((models / "experiments").glob("model_medium_3000_stories__*max_iters=3*.pt"))) == 1
