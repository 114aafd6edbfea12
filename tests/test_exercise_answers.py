"""A plausible wrong answer fails its exercise's check.

The wrong answers and the probe cells that try them are in exercise_probes.py. Every solution notebook runs
once, with its probes, in the session's `exercise_runs` (tests/conftest.py, smoke mode, one kernel per
notebook); that same run shows the solution passing its own checks (test_exercises.py), and the untouched
exercise failing is tested there too.
"""
from __future__ import annotations

import json

import nbformat
import pytest
from exercise_probes import CONTROL, PROBE_MARK, WRONG, probe_notebook

from slmlib import exercises as ex


@pytest.fixture
def probed(exercise_runs):
    """{name: executed notebook} for the solution notebooks of the session's run (each read when asked)."""
    out, futures = exercise_runs

    def read(name: str) -> nbformat.NotebookNode:
        row = futures["solutions", f"{name}.ipynb"].result()
        assert row["status"] == "ok", f"the solution itself failed: {row['error']}"
        return nbformat.read(out / "solutions" / f"{name}.ipynb", as_version=4)

    return read


def test_every_exercise_has_wrong_answers_for_every_task():
    assert sorted(WRONG) == sorted(p.stem for p in ex.SOLUTIONS_DIR.glob("*.ipynb"))
    for name, wrongs in WRONG.items():
        nb = nbformat.read(ex.SOLUTIONS_DIR / f"{name}.ipynb", as_version=4)
        tasks = sum(ex.is_check_cell(c) for c in nb.cells)
        assert {w.task for w in wrongs} == set(range(1, tasks + 1)), f"{name}: a task without a wrong answer"
        probe_notebook(name)  # every patch applies


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answers_fail_their_checks(probed, name):
    nb = probed(name)
    errors = [f"cell {i}: {o.ename}: {o.evalue}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"the solution itself failed: {errors}"
    results = {}
    for cell in nb.cells:
        if "probe_task" in cell.metadata:
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            line = next(ln for ln in text.splitlines() if ln.startswith(PROBE_MARK))
            results[cell.metadata["probe_task"]] = json.loads(line[len(PROBE_MARK):])
    for task, cases in results.items():
        assert cases[CONTROL] == ["passed", ""], f"task {task}: the check fails on the solution's own variables: {cases[CONTROL]}"
    for wrong in WRONG[name]:
        kind, message = results[wrong.probed_at][wrong.what]
        assert kind != "passed", f"task {wrong.task}: the check passes a wrong answer ({wrong.what})"
        assert (kind, message.startswith("Hint:")) == ("AssertionError", True) and wrong.hint in message, \
            f"task {wrong.task}, {wrong.what}: expected the hint {wrong.hint!r}, got {kind}: {message}"
