"""Progress bars in a batch run (papermill, via the course runner) end on their last line as text."""
from slmlib.tooling.course import kernel_folders
from slmlib.progress import BATCH, progress_bar


def test_a_batch_run_bar_is_text_ending_at_100_percent(monkeypatch, capsys):
    monkeypatch.setenv(BATCH, "1")
    bar = progress_bar(total=40, desc="ultra_tiny", unit="step", mininterval=0.5, delay=0.1, dynamic_ncols=True)
    for _ in range(40):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "ultra_tiny: 100%" in err and "40/40" in err
    assert err.count("\r") <= 3  # redrawn rarely: a saved notebook keeps every redraw


def test_the_course_runner_marks_its_kernels_as_batch(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv(BATCH, raising=False)
    with kernel_folders(tmp_path / "outputs", tmp_path / "models"):
        assert os.environ[BATCH] == "1"
    assert BATCH not in os.environ
