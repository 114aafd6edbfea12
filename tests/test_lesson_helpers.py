"""slmlib.lesson: the verdict a summary prints, and the lessons' parameter checks."""
from __future__ import annotations

import pytest

from slmlib.history import History
from slmlib.lesson import summarize, verdict

FLOOR = 0.632


def _history(points, max_iters):
    h = History(config={"max_iters": max_iters}, status="completed", seconds=1.0)
    for it, train, val in points:
        h.record({"iter": it, "train_loss": train, "val_loss": val})
    train, val = points[-1][1:]
    h.final = {"train_loss": train, "val_loss": val, "gap": val - train}
    return h


# lesson 03 with `-p max_iters 100` (the README's old "too slow" advice), measured here: no U-turn,
# the training loss far above the floor, and a gap the old verdict called "clear overfitting"
UNDERFIT_100 = [(0, 7.672, 7.674), (20, 6.126, 6.260), (40, 5.671, 5.915), (60, 5.308, 5.611),
                (80, 4.928, 5.293), (100, 4.723, 5.125)]
# lesson 03 at its defaults (README's level table): best 4.038 at step 200 of 800, then up to 5.098
OVERFIT_800 = [(0, 7.67, 7.67), (200, 2.9, 4.038), (400, 1.2, 4.5), (600, 0.75, 4.9), (800, 0.628, 5.098)]


def test_an_underfit_run_is_not_called_overfit():
    h = _history(UNDERFIT_100, 100)
    assert h.final["gap"] > 0.3  # by the gap alone: "clear overfitting"
    text = summarize(h, floor=FLOOR)
    line = next(ln for ln in text.splitlines() if ln.startswith("verdict:"))
    assert "underfit: still learning" in line and "4.09 nats above the floor" in line
    assert "overfitting:" not in line and "clear" not in line


def test_an_overfit_run_is_still_called_overfit():
    text = summarize(_history(OVERFIT_800, 800), floor=FLOOR)
    assert "verdict: clear overfitting" in text and "turned up by +1.060" in text


def test_without_a_floor_the_curve_decides():
    # real TinyStories (no known floor): a validation loss still falling is still learning
    assert "underfit: still learning" in summarize(_history(UNDERFIT_100, 100))
    assert "clear overfitting" in summarize(_history(OVERFIT_800, 800))
    # a flat end with a gap and no floor: the gap speaks
    flat = [(0, 7.0, 7.0), (50, 3.0, 3.5), (100, 2.9, 3.5)]
    assert "clear overfitting" in summarize(_history(flat, 100))


def test_verdict_by_the_gap_alone_is_unchanged():
    assert "clear overfitting" in verdict(0.8) and "some overfitting" in verdict(0.2)
    assert "almost no gap" in verdict(0.02) and "noise" in verdict(-0.01)
    # a small gap with no U-turn is not called overfitting (lesson 03 defines it by the U-turn): small's run
    assert "no U-turn" in verdict(0.189, rise=0.0, train_above_floor=0.787)
    assert "overfitting" not in verdict(0.189, rise=0.0, train_above_floor=0.787).split(":")[0]
    assert "almost no gap" in verdict(0.032, rise=0.0, train_above_floor=0.386)


def test_a_level_lesson_refuses_another_level():
    from slmlib.lesson import ParameterError, check_parameters

    check_parameters(level="ultra_tiny", lesson_level="ultra_tiny")
    check_parameters(level=1, lesson_level="ultra_tiny")  # the same level by number
    with pytest.raises(ParameterError, match=r"about ultra_tiny .* run notebooks/04_tiny.ipynb instead") as err:
        check_parameters(smoke=True, level="tiny", lesson_level="ultra_tiny")
    assert "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="python -m slmlib train --level tinystories_gpu"):
        check_parameters(level="tinystories_gpu", lesson_level="large")


def test_papermill_sees_each_parameters_type():
    """`papermill --help-notebook` showed 'Unknown type' for every parameter: the cells are annotated."""
    import papermill

    from slmlib.tooling.course import lesson_paths

    lessons = lesson_paths()
    assert len(lessons) >= 11
    for path in lessons:
        params = papermill.inspect_notebook(str(path))
        assert {"smoke", "device", "seed"} <= set(params), path.name
        types = {name: p["inferred_type_name"] for name, p in params.items()}
        assert "None" not in types.values(), (path.name, types)
        assert types["smoke"] == "Optional[bool]" and types["seed"] == "int", (path.name, types)
        if "level" in params:
            assert types["level"] == "str" and types["max_iters"] == "Optional[int]", (path.name, types)


def test_compact_png_is_a_smaller_figure_that_looks_the_same():
    import io

    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from slmlib.plots import compact_png

    fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
    for k in range(5):
        ax.plot(np.linspace(0, 1, 200) ** (k + 1), label=f"curve {k}")
    ax.legend()
    full = io.BytesIO()
    fig.savefig(full, format="png", bbox_inches="tight")
    small = compact_png(fig)
    plt.close(fig)
    a, b = Image.open(io.BytesIO(full.getvalue())).convert("RGB"), Image.open(io.BytesIO(small))
    assert b.mode == "P" and b.size == a.size and len(small) < 0.6 * len(full.getvalue())
    diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b.convert("RGB"), dtype=int))
    assert diff.mean() < 2  # the same picture, to the eye
