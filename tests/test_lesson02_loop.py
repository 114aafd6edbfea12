"""Lesson 02 says its hand-written training loop "ends with exactly the same weights" as `train()`
and prints True. If train() drifts (another optimiser setting, another order of the step), the lesson
would print False while every other test stays green: this runs the lesson's own cells and asserts it."""
import json

import pytest

from slmlib.config import LEVELS
from slmlib.tooling.course import NOTEBOOKS_DIR

LESSON = NOTEBOOKS_DIR / "02_the_model.ipynb"


def _cell(marker: str) -> str:
    cells = ["".join(c["source"]) for c in json.loads(LESSON.read_text())["cells"] if c["cell_type"] == "code"]
    found = [c for c in cells if marker in c]
    assert len(found) == 1, f"lesson 02 should have one code cell with {marker!r}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("weight_decay", [None, 0.1], ids=["level_settings", "with_weight_decay"])
def test_lesson_02s_hand_written_loop_ends_with_train_s_weights(weight_decay, capsys):
    namespace = {"smoke": True, "device": "cpu", "seed": 1337}
    exec(_cell("data = load_data("), namespace)  # the lesson's imports and data
    if weight_decay is not None:  # ultra_tiny has none: check that decay falls on the same weights too
        namespace["LEVELS"] = {**LEVELS, "ultra_tiny": LEVELS["ultra_tiny"].replace(weight_decay=weight_decay)}
    exec(_cell("the same starting weights as train()"), namespace)  # the hand-written loop
    exec(_cell("library = train("), namespace)  # train() with the same settings, and the comparison
    assert namespace["same"] is True, "the lesson's loop and train() no longer end with the same weights"
    assert "identical weights after 5 steps: True" in capsys.readouterr().out
