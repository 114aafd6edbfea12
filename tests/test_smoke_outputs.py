"""`python -m slmlib course --smoke` writes only under outputs/smoke/: the real run's results, plots,
executed notebooks and models stay as they were."""
from __future__ import annotations

import os

import nbformat

import slmlib.tooling.course as course

# What the lessons do, in small: write through slmlib.paths, as lessons 03-08 and slmlib.experiments do.
LESSON = '''
from pathlib import Path
from slmlib.paths import MODELS_DIR, OUTPUTS_DIR
OUTPUTS_DIR.mkdir(parents=True, exist_ok=True)
(OUTPUTS_DIR / "ladder_results.json").write_text('{"levels": []}')
(OUTPUTS_DIR / "training_curves.png").write_bytes(b"smoke plot")
MODELS_DIR.mkdir(parents=True, exist_ok=True)
(MODELS_DIR / "model_ultra_tiny_100_stories.pt").write_bytes(b"smoke model")
print(OUTPUTS_DIR, MODELS_DIR)
'''


def test_a_smoke_course_writes_only_under_outputs_smoke(tmp_path, monkeypatch, capsys):
    outputs, models = tmp_path / "outputs", tmp_path / "models"
    real = {outputs / "ladder_results.json": "the real ladder", outputs / "training_curves.png": "the real plot",
            outputs / "executed" / "03_ultra_tiny.ipynb": "the real executed lesson",
            models / "model_ultra_tiny_100_stories.pt": "the real model"}
    for path, text in real.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    lesson = tmp_path / "notebooks" / "03_ultra_tiny.ipynb"
    lesson.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("smoke = None", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(LESSON)])
    nb.metadata["kernelspec"] = {"name": course.kernel_name(), "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lesson)
    monkeypatch.setattr(course, "lesson_paths", lambda only=None: [lesson])
    monkeypatch.setattr(course, "OUTPUTS_DIR", outputs)
    monkeypatch.setattr(course, "MODELS_DIR", models)
    monkeypatch.setattr(course, "SMOKE_DIR", outputs / "smoke")
    # were the kernels not pointed at outputs/smoke/, they would write here (never into the real outputs/)
    monkeypatch.setenv("SLM_OUTPUTS_DIR", str(tmp_path / "unrouted" / "outputs"))
    monkeypatch.setenv("SLM_MODELS_DIR", str(tmp_path / "unrouted" / "models"))
    env_before = {k: os.environ.get(k) for k in ("SLM_OUTPUTS_DIR", "SLM_MODELS_DIR")}

    assert course.run_course(smoke=True)

    for path, text in real.items():
        assert path.read_text() == text, f"{path} was replaced by the smoke run"
    smoke = outputs / "smoke"
    assert (smoke / "ladder_results.json").read_text() == '{"levels": []}'
    assert (smoke / "training_curves.png").is_file()
    assert (smoke / "models" / "model_ultra_tiny_100_stories.pt").read_bytes() == b"smoke model"
    assert (smoke / "executed" / "03_ultra_tiny.ipynb").is_file()
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {w for w in written if not w.startswith(("outputs/smoke/", "notebooks/"))} == \
        {p.relative_to(tmp_path).as_posix() for p in real}
    assert {k: os.environ.get(k) for k in env_before} == env_before  # the caller's environment is put back
    assert f"Results and plots go to {smoke}/" in capsys.readouterr().out


def test_a_full_course_keeps_its_folders():
    assert course.run_folders(False) == (course.OUTPUTS_DIR, course.MODELS_DIR)
    assert course.run_folders(True) == (course.OUTPUTS_DIR / "smoke", course.OUTPUTS_DIR / "smoke" / "models")
